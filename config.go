// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

package rdsproxy

import (
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// PinCheckMode says what the driver does with statements that would pin an RDS
// Proxy session. Set it with the pin_check DSN key or [WithPinCheck].
type PinCheckMode string

// Values for [PinCheckMode].
const (
	// PinCheckWarn checks every statement and logs one warning per distinct
	// pinning statement. The default.
	PinCheckWarn PinCheckMode = "warn"
	// PinCheckOff skips the check entirely.
	PinCheckOff PinCheckMode = "off"
	// PinCheckRetire reports like PinCheckWarn and retires the connection
	// that ran the pinning statement: inside the *sql.Conn, transaction or
	// pgxpool connection that ran it the session state keeps working, and
	// the connection is never handed to a later checkout. A client session
	// RDS Proxy pinned stays pinned until it closes, so closing it is the
	// only way to give the proxy its database connection back (pinmode_retire.go).
	PinCheckRetire PinCheckMode = "retire"
	// PinCheckError refuses a pinning statement before it is sent: it fails
	// with an error matching [ErrPinning]. For tests and CI.
	PinCheckError PinCheckMode = "error"
)

// Config is a parsed rdsproxy connection string plus options. Create it with
// [ParseConfig]; a zero Config is not usable. Every field documents its
// default; the defaults and their reasons are the named constants in pool.go.
// A field set directly (then passed to [NewConnectorConfig]) is accepted or
// refused exactly like the same value given by its DSN key or option.
//
// A Config, by value or by pointer, prints as its String with fmt (every
// verb), log/slog and encoding/json: never the password or the credentials
// of an option. That holds in any field of any struct, where fmt prints by
// reflection without calling methods: the connection string's password and
// the options' credentials are kept out of the fields (see ConnConfig for a
// password set there by hand).
type Config struct {
	// ConnConfig is pgx's connection configuration, with rdsproxy's own keys
	// already removed from RuntimeParams so they are never sent to the server.
	// Its DefaultQueryExecMode is [DefaultQueryExecMode] unless the DSN set
	// default_query_exec_mode. Its Password is empty and its ConnString is
	// not the one parsed: the connection string's password is kept apart, so
	// that no way of printing a Config can show it, and set on each dial. A
	// Password set here by the caller wins over it, and is the caller's to
	// keep out of prints: fmt can reach this field by reflection.
	ConnConfig *pgx.ConnConfig

	// IAM makes every new physical connection authenticate with a fresh RDS IAM
	// token instead of a password. DSN key iam. Default: false.
	IAM bool

	// AWSRegion is the region IAM tokens are signed for. DSN key aws_region.
	// Default: AWS_REGION, then AWS_DEFAULT_REGION, then the region in an RDS
	// host name.
	AWSRegion string

	// PinCheck is what to do with statements that would pin a proxy session.
	// DSN key pin_check. Default: [PinCheckWarn].
	PinCheck PinCheckMode
	// SessionAudit runs one read-only catalog query before each reuse of a
	// connection and reports session state left on the backend (audit.go).
	// DSN key session_audit (on or off). Default: off.
	SessionAudit bool

	// MaxConns caps the physical connections this connector keeps open; a
	// checkout beyond it waits under the caller's context. DSN key
	// pool_max_conns. Default: [DefaultMaxConns], or [DefaultLambdaMaxConns]
	// inside AWS Lambda (see [NewConnector] for the plain sql.Open case).
	MaxConns int32

	// MaxConnLifetime is how long a physical connection may live before it is
	// retired at its next checkout or release. DSN key pool_max_conn_lifetime.
	// Default: [DefaultMaxConnLifetime]. Must be below 24h, RDS Proxy's fixed
	// client connection life.
	MaxConnLifetime time.Duration

	// MaxConnLifetimeJitter adds a random extra lifetime in [0, jitter) per
	// connection, so a fleet does not reconnect in lockstep. DSN key
	// pool_max_conn_lifetime_jitter. Default: [DefaultMaxConnLifetimeJitter].
	MaxConnLifetimeJitter time.Duration

	// MaxConnIdleTime retires a connection this long after its last checkout
	// or statement end (wall clock). DSN key
	// pool_max_conn_idle_time. Default: [DefaultMaxConnIdleTime], or
	// [DefaultLambdaMaxConnIdleTime] inside AWS Lambda.
	MaxConnIdleTime time.Duration

	// HealthCheckPeriod is how often idle connections parked in the pool are
	// checked for lifetime and idle time. DSN key pool_health_check_period.
	// Default: [DefaultHealthCheckPeriod].
	HealthCheckPeriod time.Duration

	// Logger receives the driver's warnings (pinning). Default: slog.Default().
	Logger *slog.Logger

	// PinHandler, if set, is called once per distinct statement that pins the
	// proxy session (any pin_check but off), and once per distinct cause the
	// session audit finds (session_audit=on). Set it with [WithPinHandler].
	// Default: none.
	PinHandler func(PinEvent)

	// Tracer is the caller's own pgx tracer, if any; rdsproxy chains it with its
	// own. Default: none.
	Tracer pgx.QueryTracer

	// InLambda is true when AWS_LAMBDA_FUNCTION_NAME was set when the config
	// was parsed; it selects the Lambda defaults.
	InLambda bool

	// ReadHost is the proxy's read-only endpoint, host or host:port, for
	// the reader pool of [OpenCluster]. DSN key read_host. Default: none
	// (Cluster.Reader is the writer pool). Open, NewConnector and
	// NewPgxpoolConfig refuse it.
	ReadHost string

	// ReadFallback is what reads on Cluster.Reader do when the read-only
	// endpoint takes no connection. DSN key read_fallback. Default:
	// [ReadFallbackOff]. Open, NewConnector and NewPgxpoolConfig refuse
	// [ReadFallbackWriter].
	ReadFallback ReadFallbackMode

	// sharedPins is the pinning check of another pool of the same Cluster,
	// used instead of a new one (OpenCluster sets it on the reader's Config).
	sharedPins *pinChecker

	iamOpts    hidden[*iamOptions] // nil until an IAM option is given; see editIAM
	password   hidden[string]      // the connection string's password, set at each dial (installAuth)
	parsedPool *pgxpool.Config     // made by pgxpool.ParseConfig in ParseConfig, which is the only way to make one: buildPool copies it

	// MeterProvider receives the driver's metrics (see the package
	// documentation, Telemetry). Set it with [WithMeterProvider]. Default:
	// OpenTelemetry's global provider, resolved through its delegate, so a
	// provider installed after Open still gets the data.
	MeterProvider metric.MeterProvider

	// TracerProvider receives the connect spans, and the query spans when
	// QuerySpans is set. Set it with [WithTracerProvider]. Default:
	// OpenTelemetry's global provider.
	TracerProvider trace.TracerProvider

	// PoolName is the db.client.connection.pool.name attribute of every
	// instrument. Set it with [WithPoolName]. Default:
	// server.address:server.port/db.namespace, e.g.
	// my-proxy.proxy-abc.us-east-1.rds.amazonaws.com:5432/appdb.
	PoolName string

	// QuerySpans makes the driver start a span for each statement and batch.
	// Set it with [WithQuerySpans]. Default: false, so users of otelsql or
	// otelpgx do not get every statement twice.
	QuerySpans bool

	// QueryFingerprintAttribute adds the statement's fingerprint (comments
	// removed, literals replaced by ?, at most about 200 bytes) to the
	// pinning counter (rdsproxy.query.fingerprint) and to query spans
	// (db.query.text). Set it with [WithQueryFingerprintAttribute]. Default:
	// false: statement text never appears otherwise, and fingerprints raise
	// the counter's cardinality.
	QueryFingerprintAttribute bool
}

// validate checks the whole config after the DSN and every option were applied.
// Each error names the key and the accepted values.
func (c *Config) validate() error {
	if c.ConnConfig == nil || c.parsedPool == nil {
		return &ConfigError{Key: "Config", Value: "zero value", Accepted: "a Config returned by ParseConfig"}
	}
	if err := c.checkSettings(); err != nil {
		return err
	}
	if err := checkSearchPath(c.ConnConfig.RuntimeParams); err != nil {
		return err
	}
	// A token from WithTokenFunc is as much a bearer credential as one
	// signed for iam=true, whatever the DSN says about IAM.
	if (c.IAM || c.iam().tokenFunc != nil) && !serverVerified(&c.ConnConfig.Config) {
		return ErrInsecureIAM
	}
	return nil
}

// serverVerified reports whether every connection attempt pgx would make uses
// TLS with full verification of the server (sslmode=verify-full). It looks at
// the effect of sslmode rather than its spelling: disable has no TLS config,
// allow tries plaintext first, prefer falls back to plaintext, and require and
// verify-ca skip the host name check (pgx sets InsecureSkipVerify for them). An
// IAM token is a bearer credential for 15 minutes, and a [TokenFunc]'s token
// is treated the same: it must only go to a server that proved it is the
// proxy.
func serverVerified(cc *pgconn.Config) bool {
	if cc.TLSConfig == nil || cc.TLSConfig.InsecureSkipVerify {
		return false
	}
	for _, fb := range cc.Fallbacks {
		if fb.TLSConfig == nil || fb.TLSConfig.InsecureSkipVerify {
			return false
		}
	}
	return true
}
