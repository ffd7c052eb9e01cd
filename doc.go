// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

/*
Package rdsproxy is a database/sql driver for PostgreSQL behind Amazon RDS
Proxy. It wraps pgx v5 and makes the proxy-safe choice the default: a fresh
IAM token for each new connection (cached, deduplicated, never logged),
statement execution that leaves no server-side state, a small connection pool
with jittered lifetimes, and a check that warns when a statement would pin a
proxy session.

	db, err := rdsproxy.Open("postgres://app@my-proxy.proxy-abc.us-east-1.rds.amazonaws.com:5432/appdb?iam=true")

sql.Open("rdsproxy", dsn) works too, and [NewConnector] gives a
[driver.Connector] for sql.OpenDB. Nothing is dialed until the first query.

# Connection strings

Anything pgx accepts (URL or keyword/value) plus these keys, which are read,
validated and removed before pgx sends the rest to the server as startup
parameters. The pool_* keys mean what they mean in pgxpool.

	iam                            true|false   authenticate with RDS IAM tokens (default false)
	aws_region                     us-east-1    signing region (default: AWS_REGION, AWS_DEFAULT_REGION, the RDS host name)
	pin_check                      warn|off     warn about statements that pin a proxy session (default warn)
	pool_max_conns                 5            physical connection cap (default 5; 2 in AWS Lambda)
	pool_max_conn_lifetime         30m          lifetime before retirement (default 30m; below 24h)
	pool_max_conn_lifetime_jitter  5m           random extra lifetime per connection (default 5m)
	pool_max_conn_idle_time        5m           idle time before retirement (default 5m; 1m in AWS Lambda)
	pool_health_check_period       1m           how often parked connections are checked (default 1m)

An unknown key that starts with iam, aws_, pin_, pool_ or rdsproxy is an
error naming the key and the accepted keys. Errors never contain the password.
Options ([WithMaxConns], [WithPinCheck], [WithCredentialsProvider], ...) are
applied after the DSN and win over it.

When the DSN names no sslmode (and PGSSLMODE is unset), rdsproxy uses
sslmode=verify-full against the system roots, instead of pgx's prefer, which
silently falls back to plaintext. RDS Proxy presents certificates that chain
to Amazon's public roots, which system trust stores have. With iam=true,
only verify-full is accepted ([ErrInsecureIAM]): disable, allow and prefer can
connect without TLS, and require and verify-ca do not check the server's name,
so each could hand the token, a bearer credential for 15 minutes, to a server
that is not the proxy.

# The pool

A [Connector] owns a pgxpool.Pool and hands database/sql pgx's own
*stdlib.Conn, unwrapped, so (*sql.Conn).Raw yields *stdlib.Conn, CopyFrom and
notifications work, and no optional driver interface is lost. The pool caps
physical connections even under plain sql.Open, which gives no chance to call
SetMaxOpenConns: a checkout past the cap waits under the caller's context.

Each physical connection gets one deadline, its lifetime plus its own random
jitter, and an idle limit; both are checked whenever the connection changes
hands (database/sql reusing it, pgxpool handing it out or taking it back), so
a fleet does not reconnect in lockstep. At every reuse of a connection idle
for 1 ms or more, a one-syscall probe (MSG_PEEK, no round trip, no
allocation) looks for an EOF or a message the server sent before closing:
connections the proxy dropped, backends killed by failover, and connections
that outlived a Lambda freeze are replaced without the caller seeing an
error. (A connection that answered less than 1 ms ago is handed out as is: a
close inside that window is the same race as one during the next statement,
which no check can prevent, and the system call is 1-2% of a loopback query.)
A connection idle for over a second also gets pgx's ping. After any
connection of the pool dies at the server's hand, every connection opened
before that death is retired at its next checkout and database/sql
transparently takes a new one: failover, an administrator's kill or a
pooler restart takes siblings too but not all at the same instant, and a
sibling can show nothing on its socket, or even answer a ping, and then die
during the caller's statement. The cost is up to one reconnect per pooled
connection per death (tokens are cached); the gain is one caller error per
event instead of one per dying sibling. Not deaths: a statement ended by the
caller's own context (cancel or deadline), a second failure on a connection
already counted, and the timeouts PostgreSQL aims at one session
(idle_in_transaction_session_timeout, idle_session_timeout,
transaction_timeout). Idle time counts from the last checkout or statement
on the wall clock, so connections used only for pings are not retired as
idle and a frozen Lambda's connections are, even if the monotonic clock
stood still; the probe window counts from the server's last answer on the
monotonic clock, so a wall clock stepped back cannot skip it.

[Open] also sets database/sql's own limits to match (SetMaxOpenConns,
SetMaxIdleConns, SetConnMaxIdleTime, SetConnMaxLifetime), so db.Stats()
reports them. Under plain sql.Open or sql.OpenDB, database/sql keeps up to 2
idle connections of its own that a driver cannot reclaim; a default cap is
therefore never below 3 there, or a third concurrent caller could wait forever.
An explicit pool_max_conns is honoured; set db.SetMaxOpenConns to the same
value when it is below 3. While a caller waits in the connector at the cap, a
reuse of one of database/sql's idle connections hands it to the waiter instead,
so no caller is starved by others that keep querying.

# RDS Proxy

RDS Proxy multiplexes client connections over a few database connections at
transaction boundaries. A statement that leaves session state behind pins the
client to one database connection until it disconnects, and multiplexing
silently collapses. The documented PostgreSQL conditions: SET and RESET in
every form and set_config; SQL PREPARE, EXECUTE, DEALLOCATE and DISCARD;
temporary tables, views and sequences; DECLARE; LISTEN; LOAD; nextval and
setval; session-level advisory locks; and any statement over 16384 bytes.

Query exec mode. pgx's default mode (cache_statement) prepares a named
statement per query on each connection; behind a transaction pooler 95% of
such queries failed in our test ("prepared statement already exists").
rdsproxy defaults to pgx's cache_describe ([DefaultQueryExecMode]): the
unnamed statement, one round trip (two the first time), no server state, and
parameter types known to the client so values are encoded in binary. The
choice rests on a type round-trip matrix run through PgBouncer in transaction
mode (TestTypeMatrixThroughPgBouncer): cache_describe and describe_exec pass
all 29 cases; exec and simple_protocol fail jsonb from []byte, jsonb from a
struct and uuid from [16]byte. describe_exec also leans on the unnamed
statement surviving between round trips, which a pooler does not promise.
cache_describe's one caveat: cached descriptions go stale if a query's result
types change (ALTER TABLE ... TYPE); connections are recycled by lifetime, and
default_query_exec_mode=exec is the alternative for schemas in flux.

Prepared statements. db.Prepare and tx.Prepare always create a named
server-side statement in pgx's stdlib, whatever the exec mode, and so do GORM's
PrepareStmt and sqlc's emit_prepared_queries. Through RDS Proxy they work, but
they are session state; rdsproxy's pinning check sees every named prepare
through pgx's PrepareTracer and reports it.

Startup parameters. RDS Proxy accepts application_name, client_encoding,
DateStyle, TimeZone, extra_float_digits and search_path at startup; set them as
DSN keys instead of with SET, which pins. It refuses options=-c ...

Pinning policy. Where no AWS source settles a case, rdsproxy's analyzer
follows these rules (each is tested; the oracle test runs every statement on
PostgreSQL and checks the session state it leaves):

  - pins: SET LOCAL, SET TRANSACTION, SET CONSTRAINTS (every SET form is a SET
    to the proxy); set_config however written (schema-qualified, any case, in
    a CTE or subquery, is_local true or false); EXPLAIN EXECUTE; temporary
    tables with ON COMMIT DROP, GLOBAL TEMPORARY, SELECT ... INTO TEMP and
    pg_temp.x; every CREATE VIEW (PostgreSQL silently makes a view temporary
    when it reads a temporary table, which a static check cannot rule out);
    UNLISTEN; nextval quoted or schema-qualified, also under EXPLAIN (the proxy
    matches text); the advisory unlock functions.
  - does not pin: COPY, LOCK TABLE, SHOW, FETCH, MOVE, CLOSE, NOTIFY and
    pg_notify, currval and lastval (use INSERT ... RETURNING: AWS notes lastval
    may be wrong through the proxy), DO blocks and CALL (not inspected by the
    proxy, though they can leak state silently), CREATE FUNCTION bodies and
    their SET clauses, ALTER ROLE/DATABASE ... SET.
  - a multi-statement string pins if any statement in it pins.

At run time (pin_check=warn, the default) rdsproxy's pgx tracer checks every
statement: queries, Exec, statements in transactions, batches and named
prepares. The first time a distinct statement (by fingerprint, literals
replaced by ?) would pin, it logs one warning with the reasons and a remedy,
rate-limited to 10 a minute per connector, and calls the [WithPinHandler]
handler, without a rate limit. Verdicts are cached per statement text, so the
check is a map lookup on the hot path. Parameter values are never read.

The analyzer uses pg_query_go (the PostgreSQL 17 parser) behind a pure-Go
lexical prefilter, so ordinary statements never reach the parser. Built with
CGO_ENABLED=0 (common for Lambda), the lexical classifier decides alone; both
paths pass the same corpus and are compared on generated and fuzzed
statements. Their verdicts differ only in the cases internal/pinning/POLICY.md
lists (such as FROM t nextval(a), a column alias list the lexical classifier
takes for a call). If the parser rejects a statement, [AnalyzePinning]
returns the lexical verdict and an error.

# IAM authentication

With iam=true every new physical connection authenticates with an RDS IAM
token signed by aws-sdk-go-v2 (feature/rds/auth) for that connection's
host:port and user, which must be the proxy endpoint and a user the proxy
knows. The token goes into the connection's password at dial time, never into
a DSN. Tokens are valid for 15 minutes and checked only when a connection is
established: an open connection outlives its token, so pool_max_conn_lifetime
has nothing to do with token expiry.

A [TokenSource] caches one token per region, host, port and user and reuses it
while more than 3 minutes of its life are left and the credentials that signed
it do not expire within those 3 minutes; concurrent dials that miss share one
signing. AWS credentials come from config.LoadDefaultConfig, loaded once per
token source at the first dial, under that dial's context. [WithTokenSource]
shares one source between connectors. When the proxy rejects a cached token,
the driver drops it and retries the dial once with a fresh one; a fresh token
rejected gives [ErrIAMAuth] with what to check.

# Telemetry

rdsproxy records OpenTelemetry metrics and spans through the global
MeterProvider and TracerProvider (resolved through OpenTelemetry's delegate,
so a provider installed after Open still gets the data), or the ones given
with [WithMeterProvider] and [WithTracerProvider]. With no provider installed
the cost is OpenTelemetry's no-op: no allocation on the query path.

Standard instruments (semantic conventions): db.client.connection.count
(state used: checked out to database/sql, running a statement or idle in
database/sql's own list; state idle: parked in the connector's pool),
db.client.connection.max, .idle.max, .idle.min, .create_time (a dial, token
included), .wait_time and .timeouts (checkouts that reach the connector), and
the stable db.client.operation.duration (db.system.name=postgresql,
db.operation.name from a fixed set of first keywords, error.type as the
SQLSTATE on failure). db.client.connection.use_time and .pending_requests are
not emitted: the driver is not told when database/sql stops using a
connection, nor who waits in database/sql's queue. Every instrument carries
db.client.connection.pool.name, by default server.address:server.port/db.namespace
([WithPoolName] overrides it).

rdsproxy's own: rdsproxy.pinning.statements (every execution of a pinning
statement, per reason and kind), rdsproxy.pool.connections.retired (lifetime,
idle, broken, sibling), rdsproxy.pool.checkouts.waited (checkouts that found the pool
at its cap), rdsproxy.iam.token.signings, .cache_hits, .signing.duration,
rdsproxy.iam.auth.failures and .retries.

Spans: rdsproxy.connect per physical connection, with the token acquisition
(rdsproxy.iam.token, cache hit or miss) and a signing (rdsproxy.iam.sign) as
children. Query spans are off unless [WithQuerySpans], so otelsql or otelpgx
users get no duplicates. Statement text is never an attribute, except as a
fingerprint with literals replaced by ?, with [WithQueryFingerprintAttribute].

# Native pgx

[NewPgxpoolConfig] returns a *pgxpool.Config with the same DSN keys, options,
IAM token hook, pinning check and proxy-tuned pool limits, for code that uses
pgxpool directly. pgxpool enforces the lifetime, jitter and idle limits itself
there. pgxpool cannot retry a dial, so a rejected cached token fails that one
Acquire; it is dropped from the cache and the next dial signs a fresh one. Of
the telemetry, only the pinning counter is recorded on this path: the pool
metrics, connect spans and operation durations belong to the [Connector].

# Failures

A COMMIT that fails because the session ended (FATAL, EOF, a broken socket)
may have committed: [IsAmbiguousCommit] says so, and driver.ErrBadConn is
never returned for it. When no database connection is free within the proxy's
ConnectionBorrowTimeout, RDS Proxy answers "Timed-out waiting to acquire
database connection."; it matches [ErrBorrowTimeout] when opening a connection
and [IsBorrowTimeout] on an open one. [RetryRead] retries a read the caller
declares idempotent, with bounded exponential backoff and jitter.

# Secrets

No token, password or AWS secret appears in an error, a log record, a metric
attribute, a panic or a String method; the tests search everything they
capture for them.
*/
package rdsproxy
