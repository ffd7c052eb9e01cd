// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

/*
Package rdsproxy is a database/sql driver for PostgreSQL behind Amazon RDS
Proxy, built on pgx v5. It makes the proxy-safe choice the default: a fresh
IAM token for each new connection, statements that leave no server-side state,
a small pool with jittered lifetimes, and a check that warns when a statement
would pin a proxy session.

The README lists every connection-string key with its accepted values, its
default and the reason for it, and every metric:
https://github.com/rdsproxy/rdsproxy#connection-string.

# Opening a database

[Open] returns a *sql.DB whose own limits (SetMaxOpenConns and the rest)
agree with the driver's pool. Nothing is dialed until the first query.

	db, err := rdsproxy.Open("postgres://app@my-proxy.proxy-abc.us-east-1.rds.amazonaws.com:5432/appdb?iam=true")
	if err != nil {
		return err
	}
	defer db.Close()

The connection string is anything pgx accepts (URL or keyword/value) plus
rdsproxy's keys: iam, aws_region, pin_check and five pool_* keys that mean
what pgxpool's keys of the same names mean. They are validated up front and never sent to the server; a bad value is a
[ConfigError] that names the key and the accepted values, never the password.
An [Option] such as [WithMaxConns] wins over the DSN. [ParseConfig] returns
the parsed [Config].

sql.Open("rdsproxy", dsn) works too, and [NewConnector] returns a [Connector]
for sql.OpenDB; there, set database/sql's limits yourself, as the
NewConnector example does. Either way database/sql gets pgx's own
*stdlib.Conn, unwrapped: (*sql.Conn).Raw yields *stdlib.Conn, so CopyFrom,
notifications and every optional driver interface keep working.

# IAM authentication

With iam=true every new physical connection authenticates with an RDS IAM
token signed by the AWS SDK for that connection's host, port and user; the
token never enters a DSN. The credentials come from the SDK's default chain,
loaded at the first dial under its context, unless [WithAWSConfig],
[WithCredentialsProvider] or [WithTokenFunc] says otherwise. The region is
aws_region, then WithAWSConfig's, then AWS_REGION, AWS_DEFAULT_REGION and
last the RDS host name; with none, Open fails with [ErrNoRegion]. iam=true
accepts only sslmode=verify-full, the default ([ErrInsecureIAM]).

A [TokenSource] caches one token per region, host, port and user, reuses it
while more than 3 minutes of its 15 are left and the credentials that signed
it do not expire sooner, and lets concurrent dials that miss share one
signing. Connectors in one process can share a source:

	tokens := rdsproxy.NewTokenSource(rdsproxy.TokenSourceOptions{})
	orders, err := rdsproxy.Open(ordersDSN, rdsproxy.WithTokenSource(tokens))
	...
	billing, err := rdsproxy.Open(billingDSN, rdsproxy.WithTokenSource(tokens))

When the proxy rejects a cached token, the driver drops it and retries the
dial once with a fresh one; a fresh token rejected gives an error wrapping
[ErrIAMAuth] that says what to check. A token is checked only when a
connection is established, so an open connection outlives it.

# Pinning

With pin_check=warn (the default), every statement the driver runs, in
queries, Exec, transactions, pgx batches and named prepares, is checked
against RDS Proxy's pinning rules. The first time a distinct statement would
pin, the driver logs one warning through log/slog (or [WithLogger]) with the
reason, the remedy and a fingerprint with literals replaced by ?, at most 10
a minute per connector, and calls the [WithPinHandler] handler, which is not
rate-limited. A test can fail on it:

	db, err := rdsproxy.Open(dsn, rdsproxy.WithPinHandler(func(e rdsproxy.PinEvent) {
		t.Errorf("pins the RDS Proxy session: %v: %s", e.Reasons, e.Fingerprint)
	}))

[AnalyzePinning] runs the same analysis on any SQL text, without a
database; a [PinReport] lists each finding with its [PinReason]. Parameter
values are never read. The analyzer is pg_query_go (the PostgreSQL parser)
behind a lexical prefilter, so ordinary statements never reach the parser,
and a verdict is cached per statement text. Built with CGO_ENABLED=0, the
lexical classifier decides alone, with the same verdicts on the test corpus.
The rules, including the cases AWS leaves open, are in the repository's
internal/pinning/POLICY.md. pin_check=off or [WithPinCheck] turns the check
off.

# Telemetry

The driver records OpenTelemetry metrics and spans through the global
MeterProvider and TracerProvider, so a provider installed after Open still
gets the data, or through [WithMeterProvider] and [WithTracerProvider]. With
no provider installed, the cost is OpenTelemetry's no-op: no allocation on
the query path.

	otel.SetMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	db, err := rdsproxy.Open(dsn, rdsproxy.WithPoolName("orders"))

The instruments are the semantic conventions' db.client.connection.* pool
metrics and db.client.operation.duration, plus rdsproxy.* counters for
pinning, retirements and IAM tokens; every one carries
db.client.connection.pool.name ([WithPoolName]). Each physical connection
gets an rdsproxy.connect span, with the token acquisition and signing as
children. Query spans are off unless [WithQuerySpans], so otelsql or otelpgx
users get no duplicates. No password, token, parameter value or SQL text is
ever recorded; statement fingerprints only with
[WithQueryFingerprintAttribute]. The README's Metrics section lists every
instrument and attribute.

# Native pgx

[NewPgxpoolConfig] takes the same DSN and options and returns a
*pgxpool.Config with the IAM token hook, the pinning check (as
ConnConfig.Tracer: chain your own with [WithTracer] rather than replace it)
and the proxy-tuned pool limits, which pgxpool enforces itself:

	cfg, err := rdsproxy.NewPgxpoolConfig(dsn)
	if err != nil {
		return err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)

pgxpool cannot retry a dial, so a rejected cached token fails that one
Acquire; the token is dropped and the next dial signs a fresh one. On this
path the only metric is the pinning counter and there are no connect spans;
query spans ([WithQuerySpans]) work as on the database/sql path.

# Failures

A COMMIT that fails because the session ended (FATAL, EOF, a broken socket)
may have committed: [IsAmbiguousCommit] says so, and such an error is never
driver.ErrBadConn, so database/sql does not retry it. When no database
connection frees up within the proxy's ConnectionBorrowTimeout, the error
matches [ErrBorrowTimeout] when opening a connection and [IsBorrowTimeout]
on an open one. [RetryRead] retries a read the caller declares idempotent,
with bounded exponential backoff and jitter:

	var name string
	err := rdsproxy.RetryRead(ctx, rdsproxy.RetryPolicy{}, func(ctx context.Context) error {
		return db.QueryRowContext(ctx, "SELECT name FROM users WHERE id = $1", id).Scan(&name)
	})

# RDS Proxy

RDS Proxy sits between many client connections and a few database
connections, and hands a database connection to a client only for the
length of a transaction. A statement that leaves session state behind (SET
in any form, set_config, SQL PREPARE, temporary objects, cursors, LISTEN,
sequences, session-level advisory locks, a statement over 16384 bytes) pins
the client to its database connection until the client disconnects, and
multiplexing silently stops. The proxy authenticates clients with IAM tokens
or Secrets Manager passwords, requires TLS for IAM, closes client
connections idle past its IdleClientTimeout (30 minutes by default) and
every client connection after 24 hours, and fails a client that waits longer
than its ConnectionBorrowTimeout for a database connection. rdsproxy's
defaults follow from that.

Statements leave no server state. pgx's default exec mode prepares a named
statement per query and connection, and behind a transaction pooler such
as PgBouncer those names collide ("prepared statement ... already exists"). rdsproxy defaults to
cache_describe ([DefaultQueryExecMode]): the unnamed statement, parameter
types cached on the client so values go in binary. A type round-trip matrix
through PgBouncer in transaction mode supports the choice: cache_describe
and describe_exec pass every case, while exec and simple_protocol mis-encode
jsonb from []byte or a struct and uuid from [16]byte; describe_exec also
relies on the unnamed statement surviving between round trips, which a
pooler does not promise. The caveat: a cached description goes stale when
a query's result types change (ALTER TABLE ... TYPE) until the connection is
retired; set default_query_exec_mode=exec while a schema is in flux.
db.Prepare, GORM's PrepareStmt and sqlc's emit_prepared_queries always make
named server-side statements; the pinning check reports each one. Session
settings belong in the DSN (application_name, search_path, TimeZone and the
other startup parameters the proxy accepts), not in a SET; the proxy refuses
options=-c.

The pool is small and short-lived. Every in-flight statement holds a
database connection behind the proxy and an autoscaled fleet multiplies the
cap, so it is 5, or 2 in AWS Lambda, where an environment runs one
invocation at a time. Each connection lives 30 minutes plus up to 5 minutes
of its own jitter, so a fleet neither reconnects nor signs tokens in
lockstep, well inside the proxy's 24 hours, and is retired after 5 minutes
idle (1 minute in Lambda, whose frozen environments keep connections the
proxy is timing out), before the proxy drops it. The README gives each
key's default and reason.

Connections are checked at reuse. A connection idle for 1 ms or more gets a
one-system-call socket probe (MSG_PEEK, no round trip) for a close the proxy
or the server sent; one idle for over a second also gets pgx's ping. A
connection that answered less than 1 ms ago is not probed: a close in that
window is the same race as one during the next statement. Failover, an
administrator's kill or a pooler restart ends sibling connections one after
another, so a sibling can look healthy, even answer a ping, and die during
the caller's next statement. Therefore, after a connection dies at the
server's hand, every connection opened before that death is retired at its
next checkout, and database/sql transparently takes a new one: the cost is up
to one reconnect per pooled connection (with a cached token), the gain one
caller error per event instead of one per dying sibling. A caller's own
cancellation, a second failure of the same connection and PostgreSQL's
per-session timeouts (idle_in_transaction_session_timeout,
idle_session_timeout, transaction_timeout) are not deaths.

TLS verifies the server. When neither the DSN nor PGSSLMODE names an
sslmode, rdsproxy uses verify-full against the system roots, which hold
the Amazon roots RDS Proxy's certificates chain to, instead of pgx's
prefer, which falls back to plaintext. With iam=true nothing else is
accepted: disable, allow and prefer can connect without TLS, and require and
verify-ca do not check the server's name, so each could hand the token, a
bearer credential for 15 minutes, to a server that is not the proxy.
*/
package rdsproxy
