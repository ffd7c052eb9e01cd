// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

/*
Package rdsproxy is a database/sql driver for PostgreSQL behind Amazon RDS
Proxy, built on pgx v5. It makes the proxy-safe choice the default: a fresh
IAM token for each new connection, statements that leave no server-side state,
a small pool with jittered lifetimes, and a check that warns when a statement
would pin a proxy session.

The README lists every connection-string key with its accepted values,
default and reason, and every metric:
https://github.com/rdsproxy/rdsproxy#connection-string.

# Opening a database

[Open] returns a *sql.DB whose own limits (SetMaxOpenConns and the rest)
agree with the driver's pool. Nothing is dialed until the first query.

	db, err := rdsproxy.Open("postgres://app@my-proxy.proxy-abc.us-east-1.rds.amazonaws.com:5432/appdb?iam=true")
	if err != nil {
		return err
	}
	defer db.Close()

The connection string is anything pgx accepts plus rdsproxy's keys (iam,
aws_region, pin_check, five of pgxpool's pool_* keys, and read_host and
read_fallback for [OpenCluster]), validated up front
and never sent to the server: a bad value is a [ConfigError] naming the key
and the accepted values, never the password. An [Option] such as
[WithMaxConns] wins over the DSN.

sql.Open("rdsproxy", dsn) works too, and [NewConnector] returns a [Connector]
for sql.OpenDB; there, set database/sql's limits yourself, as the
NewConnector example does. Without db.SetMaxOpenConns, database/sql keeps
idle connections the driver cannot reclaim: a caller left waiting at the cap
behind them is served by an overflow connection (at most 2, each retired at
its first reuse, the first logged as a warning), and any wait at the cap ends
after 30 seconds with [ErrPoolWaitTimeout]. database/sql gets pgx's own *stdlib.Conn,
unwrapped: (*sql.Conn).Raw yields *stdlib.Conn, so CopyFrom, notifications
and every optional driver interface keep working.

# Reader endpoint

[OpenCluster] opens the proxy's default endpoint and its read-only endpoint
(DSN key read_host) as two pools, [Cluster.Writer] and [Cluster.Reader], that
share the token source, the pinning check and the telemetry providers. The
application picks the pool for each statement; a write on the reader fails
with SQLSTATE 25006, which [IsReadOnlyViolation] recognises. With
read_fallback=writer, reads are served by the writer pool while the
read-only endpoint takes no connection.

# IAM authentication

With iam=true every new physical connection authenticates with an RDS IAM
token signed by the AWS SDK for its host, port and user, with credentials
from the SDK's default chain unless [WithAWSConfig], [WithCredentialsProvider]
or [WithTokenFunc] says otherwise. A [TokenSource] caches the token, reuses it
while more than 3 minutes of its 15 are left and its credentials do not
expire sooner, and lets concurrent dials that miss share one signing. Every
connector on the default chain shares one process-wide source,
[DefaultTokenSource]: one load of the AWS configuration per process, at the
first dial, and one signing per endpoint and user per refresh window, however
many *sql.DB values are open. Connectors given credentials can share a source
explicitly:

	tokens := rdsproxy.NewTokenSource(rdsproxy.TokenSourceOptions{Credentials: creds})
	orders, err := rdsproxy.Open(ordersDSN, rdsproxy.WithTokenSource(tokens))
	...
	billing, err := rdsproxy.Open(billingDSN, rdsproxy.WithTokenSource(tokens))

A cached token the proxy rejects is dropped and the dial retried once; a
fresh token rejected gives an error wrapping [ErrIAMAuth] that says what to
check. Without a region, Open fails with [ErrNoRegion]; with an sslmode other
than verify-full (the default), with [ErrInsecureIAM].

# Pinning

With pin_check=warn (the default), every statement the driver runs
(queries, Exec, transactions, pgx batches, named prepares) is checked against
RDS Proxy's pinning rules. The first time a distinct statement would pin, the
driver logs a warning through log/slog ([WithLogger]) with the reason, the
remedy and a fingerprint, at most 10 a minute per connector, and calls the
[WithPinHandler] handler without a rate limit. A test can fail on it:

	db, err := rdsproxy.Open(dsn, rdsproxy.WithPinHandler(func(e rdsproxy.PinEvent) {
		t.Errorf("pins the RDS Proxy session: %v: %s", e.Reasons, e.Fingerprint)
	}))

pin_check=retire also retires the connection that ran a pinning statement:
its holder keeps the session state until it lets go, and no later checkout
gets that connection. pin_check=error, for tests and CI, refuses a pinning
statement before it is sent, with an error matching [ErrPinning].
session_audit=on, for staging and CI, runs one read-only catalog query before
each reuse of a connection and reports state that functions or DO blocks left
(a [PinEvent] of kind audit), then retires the connection.

Statements sent below pgx's tracer, through (*sql.Conn).Raw → *stdlib.Conn →
Conn().PgConn() (pgconn's Exec, ExecParams, Prepare, CopyFrom and the rest),
are neither checked nor traced.

[AnalyzePinning] runs the same analysis on any SQL text and returns a
[PinReport]. The analyzer is the PostgreSQL parser (pg_query_go, cgo) behind
a lexical prefilter, with each verdict cached per statement text; built with
CGO_ENABLED=0, the lexical classifier decides alone. Both are compared on
the test corpus and on generated and fuzzed statements; their verdicts
differ only in the cases the repository's internal/pinning/POLICY.md lists
(such as FROM t nextval(a), a column alias list the lexical classifier takes
for a call). POLICY.md also holds the rules, including the cases AWS leaves
open.

# Telemetry

The driver records OpenTelemetry metrics and spans through the global
providers, so one installed after Open still gets the data, or through
[WithMeterProvider] and [WithTracerProvider]. With no provider installed,
the cost is OpenTelemetry's no-op, with no allocation.

	otel.SetMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	db, err := rdsproxy.Open(dsn, rdsproxy.WithPoolName("orders"))

Under plain sql.Open or sql.OpenDB, call [ObserveDB] once so that the
connection count tells connections the application holds (used) from those
idle in database/sql's own list; [Open] does it itself.

The instruments are the semantic conventions' db.client.connection.* and
db.client.operation.duration, plus rdsproxy.* counters for pinning,
retirements and IAM tokens; each physical connection gets an rdsproxy.connect
span. Query spans are off unless [WithQuerySpans], so otelsql or otelpgx
users get no duplicates. No password, token, parameter value or SQL text is
recorded; fingerprints only with [WithQueryFingerprintAttribute].

# Native pgx

[NewPgxpoolConfig] takes the same DSN and options and returns a
*pgxpool.Config with the IAM token hook, the pinning check (as
ConnConfig.Tracer: chain yours with [WithTracer]) and the proxy-tuned pool
limits, which pgxpool enforces itself:

	cfg, err := rdsproxy.NewPgxpoolConfig(dsn)
	if err != nil {
		return err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)

pgxpool cannot retry a dial, so a rejected cached token fails that one
Acquire, and the next dial signs a fresh one. On this path the only metric is
the pinning counter and there are no connect spans.

# Failures

A COMMIT that fails because the session ended (FATAL, EOF, a broken socket)
may have committed: [IsAmbiguousCommit] says so, and such an error is never
driver.ErrBadConn, so database/sql does not retry it. The proxy's borrow
timeout matches [ErrBorrowTimeout] when opening a connection and
[IsBorrowTimeout] on an open one. [RetryRead] retries a read the caller
declares idempotent, with bounded exponential backoff and jitter:

	var name string
	err := rdsproxy.RetryRead(ctx, rdsproxy.RetryPolicy{}, func(ctx context.Context) error {
		return db.QueryRowContext(ctx, "SELECT name FROM users WHERE id = $1", id).Scan(&name)
	})

# RDS Proxy

RDS Proxy shares a few database connections among many client connections,
handing one to a client for the length of a transaction. A statement that
leaves session state behind (SET in any form, set_config, SQL PREPARE,
temporary objects, cursors, LISTEN, sequences, session-level advisory locks,
a statement over 16384 bytes) pins the client to its database connection
until it disconnects, and multiplexing silently stops. The proxy requires
TLS for IAM, closes client connections idle past its IdleClientTimeout (30
minutes by default) and every client connection after 24 hours, and fails a
client that waits longer than its ConnectionBorrowTimeout. rdsproxy's
defaults follow from that.

Statements leave no server state. pgx's default exec mode prepares a named
statement per query and connection, and behind a transaction pooler such as
PgBouncer those names collide ("prepared statement ... already exists").
rdsproxy defaults to cache_describe ([DefaultQueryExecMode]): the unnamed
statement, with parameter types cached on the client so values go in
binary. A type round-trip matrix through PgBouncer in transaction mode backs
the choice: cache_describe and describe_exec pass every case, exec and
simple_protocol mis-encode jsonb from []byte or a struct and uuid from
[16]byte, and describe_exec relies on the unnamed statement surviving
between round trips, which a pooler does not promise. A cached description
goes stale when a query's result types change (ALTER TABLE ... TYPE) until
its connection is retired; use default_query_exec_mode=exec while a schema
is in flux. db.Prepare, GORM's PrepareStmt and sqlc's emit_prepared_queries
always make named statements, and the pinning check reports each. Session
settings belong in the DSN as startup parameters (application_name,
search_path, TimeZone and the others the proxy accepts), not in a SET; the
proxy refuses options=-c.

The pool is small and short-lived. Behind the proxy every in-flight
statement holds a database connection and an autoscaled fleet multiplies the
cap, so it is 5, or 2 in AWS Lambda, where an environment runs one
invocation at a time. A connection lives 30 minutes plus up to 5 minutes of
its own jitter, so a fleet does not reconnect, or sign tokens, in lockstep,
and is retired after 5 minutes idle (1 minute in Lambda, whose frozen
environments keep connections the proxy is timing out), before the proxy
drops it.

Connections are checked at reuse. One idle for 1 ms or more gets a socket
probe (one MSG_PEEK system call, no round trip) for a close the proxy or the
server sent; one idle for over a second also gets pgx's ping. Within 1 ms of
the server's last answer, a close is the same race as one during the next
statement, so no probe is spent. Failover, an administrator's kill or a
pooler restart ends sibling connections one after another: a sibling can
look healthy, even answer a ping, and die during the caller's next
statement. So after a connection dies at the server's hand, every connection
opened before that death is retired at its next checkout and database/sql
transparently takes a new one. The cost is up to one reconnect per pooled
connection (with a cached token); the gain is one caller error per event
instead of one per dying sibling. A caller's own cancellation, a second
failure of the same connection and PostgreSQL's per-session timeouts
(idle_in_transaction_session_timeout, idle_session_timeout,
transaction_timeout) are not deaths.

TLS verifies the server. When neither the DSN nor PGSSLMODE names an
sslmode, rdsproxy uses verify-full against the system roots, which hold the
Amazon roots RDS Proxy's certificates chain to, instead of pgx's prefer,
which can fall back to plaintext. With iam=true only verify-full is
accepted: any other mode could hand the token, a bearer credential for 15
minutes, to a server that did not prove it is the proxy.
*/
package rdsproxy
