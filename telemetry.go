// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

package rdsproxy

import (
	"context"
	"database/sql"
	"errors"
	"net"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/semconv/v1.43.0/dbconv"
	"go.opentelemetry.io/otel/trace"
)

// instrumentationName names rdsproxy's Meter and Tracer.
const instrumentationName = "github.com/rdsproxy/rdsproxy"

// Names of rdsproxy's own instruments. The db.client.* instruments come from
// the semantic-convention package (dbconv) and are not spelled out here.
const (
	metricTokenSignings        = "rdsproxy.iam.token.signings"
	metricTokenCacheHits       = "rdsproxy.iam.token.cache_hits"
	metricTokenSignDuration    = "rdsproxy.iam.token.signing.duration"
	metricIAMAuthFailures      = "rdsproxy.iam.auth.failures"
	metricIAMAuthRetries       = "rdsproxy.iam.auth.retries"
	metricPinnedStatements     = "rdsproxy.pinning.statements"
	metricConnectionsRetired   = "rdsproxy.pool.connections.retired"
	metricCheckoutsWaitedAtCap = "rdsproxy.pool.checkouts.waited"
	metricConnectionsPinned    = "rdsproxy.pool.connections.pinned"
)

// Attributes of rdsproxy's own. None of them can carry a secret: every value
// is from a fixed set, except the fingerprint (literals replaced by ?), which
// is opt-in.
const (
	attrRetireReason = attribute.Key("rdsproxy.retire.reason")     // lifetime|idle|broken|sibling|overflow|pinned|audit
	attrPinReason    = attribute.Key("rdsproxy.pinning.reason")    // a PinReason
	attrPinKind      = attribute.Key("rdsproxy.pinning.kind")      // query|batch|prepare
	attrFingerprint  = attribute.Key("rdsproxy.query.fingerprint") // opt-in
	attrTokenCache   = attribute.Key("rdsproxy.iam.token.cache")   // hit|miss
	attrTokenCached  = attribute.Key("rdsproxy.iam.token.cached")  // bool: the rejected token came from the cache
)

// Span names.
const (
	spanConnect = "rdsproxy.connect"
	spanToken   = "rdsproxy.iam.token"
	spanSign    = "rdsproxy.iam.sign"
)

// operationDurationBuckets are the boundaries semantic conventions recommend
// for db.client.operation.duration (and reuse for the other duration
// histograms): 1 ms to 10 s.
var operationDurationBuckets = []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10}

// telemetry is one connector's OpenTelemetry instrumentation. Every method is
// safe on a nil *telemetry. With no provider installed (OpenTelemetry's global
// no-op delegate) each hot-path method costs one Enabled call and allocates
// nothing.
type telemetry struct {
	poolName    string
	tracer      trace.Tracer
	querySpans  bool
	fingerprint bool
	maxConns    int64
	serverAttrs []attribute.KeyValue // server.address, server.port, db.namespace

	// Standard instruments (semantic conventions, dbconv).
	createTime dbconv.ClientConnectionCreateTime
	waitTime   dbconv.ClientConnectionWaitTime
	timeouts   dbconv.ClientConnectionTimeouts
	opDuration dbconv.ClientOperationDuration
	count      dbconv.ClientConnectionCountObservable
	max        dbconv.ClientConnectionMaxObservable
	idleMax    dbconv.ClientConnectionIdleMaxObservable
	idleMin    dbconv.ClientConnectionIdleMinObservable

	// rdsproxy's own.
	signings     metric.Int64Counter
	cacheHits    metric.Int64Counter
	signDuration metric.Float64Histogram
	authFailures metric.Int64Counter
	authRetries  metric.Int64Counter
	pinned       metric.Int64Counter
	retired      metric.Int64ObservableCounter
	waitedAtCap  metric.Int64Counter
	pinnedConns  metric.Int64ObservableGauge

	// Precomputed attribute sets: recording with them allocates no set.
	poolOpt     metric.MeasurementOption // pool name only
	usedOpt     metric.MeasurementOption
	idleOpt     metric.MeasurementOption
	retireOpts  [len(retireReasons)]metric.MeasurementOption
	opOpts      [len(opNames)]metric.MeasurementOption
	retireCount [len(retireReasons)]atomic.Int64

	// pinnedOpen reads the pool's open connections that ran a pinning
	// statement (poolPolicy.pinnedOpen); nil until the pool is observed.
	pinnedOpen func() int64

	meter metric.Meter
	pool  *pgxpool.Pool
	db    atomic.Pointer[sql.DB] // the *sql.DB over the connector, once known (Open, ObserveDB)
	reg   metric.Registration
	dials sync.Map // pgxpool's per-dial context -> *dialTel, from BeforeConnect to TraceConnectStart
}

// newTelemetry creates the connector's instruments. Instrument creation
// errors are left to OpenTelemetry's error handler: a failed instrument is a
// no-op, never a reason to refuse a connection.
func newTelemetry(cfg *Config) *telemetry {
	mp := cfg.MeterProvider
	if mp == nil {
		mp = otel.GetMeterProvider() // the global delegate: a provider installed later still gets the data
	}
	tp := cfg.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	m := mp.Meter(instrumentationName, metric.WithSchemaURL(semconv.SchemaURL))
	t := &telemetry{
		poolName:    cfg.PoolName,
		tracer:      tp.Tracer(instrumentationName, trace.WithSchemaURL(semconv.SchemaURL)),
		querySpans:  cfg.QuerySpans,
		fingerprint: cfg.QueryFingerprintAttribute,
		maxConns:    int64(cfg.MaxConns),
		meter:       m,
	}
	cc := cfg.ConnConfig
	if t.poolName == "" {
		t.poolName = defaultPoolName(cc)
	}
	t.serverAttrs = []attribute.KeyValue{semconv.ServerAddress(cc.Host), semconv.ServerPort(int(cc.Port)), semconv.DBNamespace(cc.Database)}

	report := func(err error) {
		if err != nil {
			otel.Handle(err)
		}
	}
	var err error
	seconds := metric.WithExplicitBucketBoundaries(operationDurationBuckets...)
	t.createTime, err = dbconv.NewClientConnectionCreateTime(m, seconds)
	report(err)
	t.waitTime, err = dbconv.NewClientConnectionWaitTime(m, seconds)
	report(err)
	t.timeouts, err = dbconv.NewClientConnectionTimeouts(m)
	report(err)
	t.opDuration, err = dbconv.NewClientOperationDuration(m, seconds)
	report(err)
	t.count, err = dbconv.NewClientConnectionCountObservable(m)
	report(err)
	t.max, err = dbconv.NewClientConnectionMaxObservable(m)
	report(err)
	t.idleMax, err = dbconv.NewClientConnectionIdleMaxObservable(m)
	report(err)
	t.idleMin, err = dbconv.NewClientConnectionIdleMinObservable(m)
	report(err)

	t.signings, err = m.Int64Counter(metricTokenSignings, metric.WithUnit("{signing}"),
		metric.WithDescription("RDS IAM tokens signed (cache misses that signed; concurrent misses share one signing)."))
	report(err)
	t.cacheHits, err = m.Int64Counter(metricTokenCacheHits, metric.WithUnit("{token}"),
		metric.WithDescription("Dials that got their RDS IAM token from the cache without signing."))
	report(err)
	t.signDuration, err = m.Float64Histogram(metricTokenSignDuration, metric.WithUnit("s"), seconds,
		metric.WithDescription("Time to sign one RDS IAM token, including retrieving AWS credentials."))
	report(err)
	t.authFailures, err = m.Int64Counter(metricIAMAuthFailures, metric.WithUnit("{failure}"),
		metric.WithDescription("Dials that RDS Proxy rejected with an IAM authentication failure."))
	report(err)
	t.authRetries, err = m.Int64Counter(metricIAMAuthRetries, metric.WithUnit("{retry}"),
		metric.WithDescription("Dials retried with a freshly signed token after the proxy rejected a cached one."))
	report(err)
	t.pinned, err = m.Int64Counter(metricPinnedStatements, metric.WithUnit("{statement}"),
		metric.WithDescription("Statement executions that pin the RDS Proxy session, by reason (one per reason per execution)."))
	report(err)
	t.retired, err = m.Int64ObservableCounter(metricConnectionsRetired, metric.WithUnit("{connection}"),
		metric.WithDescription("Physical connections retired by the pool, by reason (lifetime, idle, broken, sibling, overflow, pinned, audit)."))
	report(err)
	t.pinnedConns, err = m.Int64ObservableGauge(metricConnectionsPinned, metric.WithUnit("{connection}"),
		metric.WithDescription("Open connections of the pool that ran a statement pinning the RDS Proxy session since they were opened."))
	report(err)
	t.waitedAtCap, err = m.Int64Counter(metricCheckoutsWaitedAtCap, metric.WithUnit("{checkout}"),
		metric.WithDescription("Checkouts that reached the connector with every connection busy at the cap and had to wait."))
	report(err)

	pool := semconv.DBClientConnectionPoolName(t.poolName)
	t.poolOpt = metric.WithAttributeSet(attribute.NewSet(pool))
	t.usedOpt = metric.WithAttributeSet(attribute.NewSet(pool, t.count.AttrClientConnectionState(dbconv.ClientConnectionStateUsed)))
	t.idleOpt = metric.WithAttributeSet(attribute.NewSet(pool, t.count.AttrClientConnectionState(dbconv.ClientConnectionStateIdle)))
	for i, r := range retireReasons {
		t.retireOpts[i] = metric.WithAttributeSet(attribute.NewSet(pool, attrRetireReason.String(r.String())))
	}
	for i, name := range opNames {
		kv := []attribute.KeyValue{pool, semconv.DBSystemNamePostgreSQL}
		if name != "" {
			kv = append(kv, t.opDuration.AttrOperationName(name))
		}
		t.opOpts[i] = metric.WithAttributeSet(attribute.NewSet(kv...))
	}
	return t
}

// defaultPoolName is semantic conventions' pattern for an unnamed pool,
// server.address:server.port/db.namespace. It has no user and no password.
func defaultPoolName(cc *pgx.ConnConfig) string {
	return net.JoinHostPort(cc.Host, strconv.Itoa(int(cc.Port))) + "/" + cc.Database
}

// errorType is the error.type value for err: the SQLSTATE of a PostgreSQL
// error, "timeout" for a deadline, or _OTHER. Never the message, which may
// quote a statement.
func errorType(err error) string {
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && len(pgErr.Code) == 5:
		return pgErr.Code
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return string(dbconv.ErrorTypeOther)
}

// failSpan marks span failed with err's type only: error messages are not
// recorded, since a server message can quote a statement or its values.
func failSpan(span trace.Span, err error) {
	et := errorType(err)
	span.SetAttributes(semconv.ErrorTypeKey.String(et))
	span.SetStatus(codes.Error, et)
}
