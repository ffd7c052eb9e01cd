// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

package rdsproxy

import (
	"context"
	"errors"
	"net"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

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

	"github.com/rdsproxy/rdsproxy/internal/pinning"
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
)

// Attributes of rdsproxy's own. None of them can carry a secret: every value
// is from a fixed set, except the fingerprint (literals replaced by ?), which
// is opt-in.
const (
	attrRetireReason = attribute.Key("rdsproxy.retire.reason")     // lifetime|idle|broken|sibling|overflow
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

// opNames is the bounded set of db.operation.name values: the first keyword
// of a statement, upper-cased. Index 0 means unknown (no attribute); the SQL
// text itself never becomes an attribute.
var opNames = [...]string{"",
	"SELECT", "INSERT", "UPDATE", "DELETE", "MERGE", "VALUES", "TABLE", "CALL", "DO", "COPY",
	"BEGIN", "START", "COMMIT", "END", "ROLLBACK", "SAVEPOINT", "RELEASE", "ABORT",
	"PREPARE", "EXECUTE", "DEALLOCATE", "SET", "RESET", "SHOW", "DISCARD",
	"LISTEN", "UNLISTEN", "NOTIFY", "DECLARE", "FETCH", "MOVE", "CLOSE", "LOCK",
	"CREATE", "ALTER", "DROP", "TRUNCATE", "COMMENT", "GRANT", "REVOKE",
	"EXPLAIN", "ANALYZE", "VACUUM", "REFRESH", "REINDEX", "CLUSTER", "CHECKPOINT", "LOAD",
	"BATCH",
}

var opIndexByName = func() map[string]uint32 {
	m := make(map[string]uint32, len(opNames))
	for i, n := range opNames[1:] {
		m[n] = uint32(i + 1)
	}
	return m
}()

var opBatch = opIndexByName["BATCH"]

// operationIndex returns the index in opNames of sql's first keyword, or 0.
// It skips whitespace, comments and opening parentheses, and allocates
// nothing.
func operationIndex(sql string) uint32 {
	i := 0
	for i < len(sql) {
		switch c := sql[i]; {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '(':
			i++
		case c == '-' && i+1 < len(sql) && sql[i+1] == '-':
			for i < len(sql) && sql[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < len(sql) && sql[i+1] == '*':
			end := i + 2
			for end+1 < len(sql) && (sql[end] != '*' || sql[end+1] != '/') {
				end++
			}
			i = end + 2
		default:
			var buf [16]byte
			n := 0
			for i < len(sql) && n < len(buf) {
				c := sql[i]
				if c >= 'a' && c <= 'z' {
					c -= 'a' - 'A'
				} else if c < 'A' || c > 'Z' {
					break
				}
				buf[n] = c
				n++
				i++
			}
			if n == 0 || n == len(buf) {
				return 0
			}
			return opIndexByName[string(buf[:n])]
		}
	}
	return 0
}

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

	// Precomputed attribute sets: recording with them allocates no set.
	poolOpt     metric.MeasurementOption // pool name only
	usedOpt     metric.MeasurementOption
	idleOpt     metric.MeasurementOption
	retireOpts  [5]metric.MeasurementOption // lifetime, idle, broken, sibling, overflow
	opOpts      [len(opNames)]metric.MeasurementOption
	retireCount [5]atomic.Int64

	meter metric.Meter
	pool  *pgxpool.Pool
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
		metric.WithDescription("Physical connections retired by the pool, by reason (lifetime, idle, broken, sibling, overflow)."))
	report(err)
	t.waitedAtCap, err = m.Int64Counter(metricCheckoutsWaitedAtCap, metric.WithUnit("{checkout}"),
		metric.WithDescription("Checkouts that reached the connector with every connection busy at the cap and had to wait."))
	report(err)

	pool := semconv.DBClientConnectionPoolName(t.poolName)
	t.poolOpt = metric.WithAttributeSet(attribute.NewSet(pool))
	t.usedOpt = metric.WithAttributeSet(attribute.NewSet(pool, t.count.AttrClientConnectionState(dbconv.ClientConnectionStateUsed)))
	t.idleOpt = metric.WithAttributeSet(attribute.NewSet(pool, t.count.AttrClientConnectionState(dbconv.ClientConnectionStateIdle)))
	for i, r := range [...]retireReason{retireLifetime, retireIdle, retireBroken, retireSibling, retireOverflow} {
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

// observePool registers the asynchronous instruments that read pool's
// statistics at collection time.
func (t *telemetry) observePool(pool *pgxpool.Pool) {
	t.pool = pool
	reg, err := t.meter.RegisterCallback(t.observe,
		t.count.Inst(), t.max.Inst(), t.idleMax.Inst(), t.idleMin.Inst(), t.retired)
	if err != nil {
		otel.Handle(err)
		return
	}
	t.reg = reg
}

// observe reports the pool's state. Physical connections are either parked
// in the connector's pool (idle) or checked out to database/sql (used: running
// a statement, or idle in database/sql's own free list, which a driver cannot
// see). Connections being dialed are in neither.
func (t *telemetry) observe(_ context.Context, o metric.Observer) error {
	st := t.pool.Stat()
	o.ObserveInt64(t.count.Inst(), int64(st.AcquiredConns()), t.usedOpt)
	o.ObserveInt64(t.count.Inst(), int64(st.IdleConns()), t.idleOpt)
	o.ObserveInt64(t.max.Inst(), t.maxConns, t.poolOpt)
	o.ObserveInt64(t.idleMax.Inst(), t.maxConns, t.poolOpt) // every connection may be parked idle
	o.ObserveInt64(t.idleMin.Inst(), 0, t.poolOpt)          // MinConns is 0: nothing is dialed in the background
	// The policy's own retirements, plus pgxpool's health check, which
	// retires connections parked in it without going through the policy.
	o.ObserveInt64(t.retired, t.retireCount[0].Load()+st.MaxLifetimeDestroyCount(), t.retireOpts[0])
	o.ObserveInt64(t.retired, t.retireCount[1].Load()+st.MaxIdleDestroyCount(), t.retireOpts[1])
	o.ObserveInt64(t.retired, t.retireCount[2].Load(), t.retireOpts[2])
	o.ObserveInt64(t.retired, t.retireCount[3].Load(), t.retireOpts[3])
	o.ObserveInt64(t.retired, t.retireCount[4].Load(), t.retireOpts[4])
	return nil
}

// close unregisters the pool callback, so a closed connector stops reporting.
func (t *telemetry) close() {
	if t != nil && t.reg != nil {
		if err := t.reg.Unregister(); err != nil {
			otel.Handle(err)
		}
	}
}

// onRetire counts a retirement decided by the pool policy.
func (t *telemetry) onRetire(reason retireReason) {
	switch reason {
	case retireLifetime:
		t.retireCount[0].Add(1)
	case retireIdle:
		t.retireCount[1].Add(1)
	case retireBroken:
		t.retireCount[2].Add(1)
	case retireSibling:
		t.retireCount[3].Add(1)
	case retireOverflow:
		t.retireCount[4].Add(1)
	}
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

// checkoutStart is called when database/sql asks the connector for a
// connection. It returns the start time, or the zero time when no checkout
// instrument is enabled.
func (t *telemetry) checkoutStart(ctx context.Context) time.Time {
	if t == nil {
		return time.Time{}
	}
	waited := t.waitedAtCap.Enabled(ctx)
	if !waited && !t.waitTime.Inst().Enabled(ctx) && !t.timeouts.Inst().Enabled(ctx) {
		return time.Time{}
	}
	if waited && t.pool != nil {
		if st := t.pool.Stat(); st.IdleConns() == 0 && st.TotalConns() >= st.MaxConns() {
			t.waitedAtCap.Add(ctx, 1, t.poolOpt)
		}
	}
	return time.Now()
}

// checkoutEnd records the checkout's wait (db.client.connection.wait_time,
// which includes a dial when one was needed) or its timeout.
func (t *telemetry) checkoutEnd(ctx context.Context, start time.Time, err error) {
	if t == nil || start.IsZero() {
		return
	}
	if err == nil {
		t.waitTime.Inst().Record(ctx, time.Since(start).Seconds(), t.poolOpt)
		return
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrPoolWaitTimeout) {
		t.timeouts.Inst().Add(ctx, 1, t.poolOpt)
	}
}

// dialTel follows one physical connect from BeforeConnect to pgx's
// TraceConnectEnd. It travels in the dial's context, so the token hooks find
// the connect span (their parent) and the connector's instruments.
type dialTel struct {
	tel   *telemetry
	ctx   context.Context // carries span and this record
	span  trace.Span
	start time.Time
}

type dialTelKey struct{}

func dialTelFrom(ctx context.Context) *dialTel {
	d, _ := ctx.Value(dialTelKey{}).(*dialTel)
	return d
}

// wrapConnect makes pc's BeforeConnect start the connect span (and the
// create_time clock) before whatever BeforeConnect was installed (the IAM
// token hook), which then runs under the span. pgxpool passes one context
// value, unique to the dial, to BeforeConnect and then to pgx.ConnectConfig,
// whose connect tracer picks the record up (see connectStart).
func (t *telemetry) wrapConnect(pc *pgxpool.Config) {
	inner := pc.BeforeConnect
	pc.BeforeConnect = func(ctx context.Context, cc *pgx.ConnConfig) error {
		d := t.startDial(ctx)
		if inner == nil {
			return nil
		}
		ictx := ctx
		if d != nil {
			ictx = d.ctx
		}
		if err := inner(ictx, cc); err != nil {
			if d != nil {
				t.dials.Delete(ctx)
				d.end(err)
			}
			return err
		}
		return nil
	}
}

func (t *telemetry) startDial(ctx context.Context) *dialTel {
	if rt := reflect.TypeOf(ctx); rt == nil || !rt.Comparable() {
		return nil // cannot be a map key; go without a span
	}
	d := &dialTel{tel: t, start: time.Now()}
	sctx, span := t.tracer.Start(ctx, spanConnect, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(t.serverAttrs...),
		trace.WithAttributes(semconv.DBSystemNamePostgreSQL, semconv.DBClientConnectionPoolName(t.poolName)))
	d.span = span
	d.ctx = context.WithValue(sctx, dialTelKey{}, d)
	if _, loaded := t.dials.LoadOrStore(ctx, d); loaded {
		span.End() // two dials under one context: leave the second untraced
		return nil
	}
	return d
}

// connectStart is pgx's TraceConnectStart: it swaps in the dial's context so
// TraceConnectEnd finds the record even through a multitracer.
func (t *telemetry) connectStart(ctx context.Context) context.Context {
	if t == nil {
		return ctx
	}
	if v, ok := t.dials.LoadAndDelete(ctx); ok {
		return v.(*dialTel).ctx
	}
	return ctx
}

func (t *telemetry) connectEnd(ctx context.Context, err error) {
	if t == nil {
		return
	}
	if d := dialTelFrom(ctx); d != nil && d.tel == t {
		d.end(err)
	}
}

// end records create_time for a successful connect and ends the span.
func (d *dialTel) end(err error) {
	if err != nil {
		failSpan(d.span, err)
	} else {
		d.tel.createTime.Inst().Record(d.ctx, time.Since(d.start).Seconds(), d.tel.poolOpt)
	}
	d.span.End()
}

// tokenStart starts the token-acquisition span, a child of the connect span.
// Outside a connector's dial (no record in ctx) it does nothing.
func tokenStart(ctx context.Context) (context.Context, trace.Span) {
	d := dialTelFrom(ctx)
	if d == nil {
		return ctx, nil
	}
	return d.tel.tracer.Start(ctx, spanToken)
}

// tokenEnd records the cache outcome: hit (from the cache) or miss (signed
// by this dial, which then has a rdsproxy.iam.sign child span, or by a
// concurrent dial it waited for).
func tokenEnd(ctx context.Context, span trace.Span, cached bool, err error) {
	d := dialTelFrom(ctx)
	if d == nil || span == nil {
		return
	}
	switch {
	case err != nil:
		failSpan(span, err)
	case cached:
		span.SetAttributes(attrTokenCache.String("hit"))
		d.tel.cacheHits.Add(ctx, 1, d.tel.poolOpt)
	default:
		span.SetAttributes(attrTokenCache.String("miss"))
	}
	span.End()
}

// signStart and signEnd wrap one signing by a TokenSource. The signing runs
// under the context of the dial that started it, whose connector gets the
// metrics (a TokenSource may be shared between connectors).
func signStart(ctx context.Context) (time.Time, trace.Span) {
	d := dialTelFrom(ctx)
	if d == nil {
		return time.Time{}, nil
	}
	_, span := d.tel.tracer.Start(ctx, spanSign)
	return time.Now(), span
}

func signEnd(ctx context.Context, start time.Time, span trace.Span, err error) {
	d := dialTelFrom(ctx)
	if d == nil || span == nil {
		return
	}
	t := d.tel
	t.signings.Add(ctx, 1, t.poolOpt)
	if err != nil {
		failSpan(span, err)
	} else {
		t.signDuration.Record(ctx, time.Since(start).Seconds(), t.poolOpt)
	}
	span.End()
}

// iamAuthFailed counts a dial the proxy rejected; cached tells whether the
// rejected token came from the cache (then the dial is retried once).
func (t *telemetry) iamAuthFailed(ctx context.Context, cached bool) {
	if t == nil || !t.authFailures.Enabled(ctx) {
		return
	}
	t.authFailures.Add(ctx, 1, metric.WithAttributes(semconv.DBClientConnectionPoolName(t.poolName), attrTokenCached.Bool(cached)))
}

func (t *telemetry) iamAuthRetried(ctx context.Context) {
	if t == nil {
		return
	}
	t.authRetries.Add(ctx, 1, t.poolOpt)
}

// querySpanKey holds rdsproxy's own query span, so the end hook ends it and
// not a span another tracer (otelpgx) put in the same context.
type querySpanKey struct{}

// queryStart is called by pgx before every statement (and batch). The start
// time and operation go into the connection's state, since one pgx.Conn runs
// one statement at a time: no context value, no allocation.
func (t *telemetry) queryStart(ctx context.Context, conn *pgx.Conn, sql string, op uint32) context.Context {
	if t == nil {
		return ctx
	}
	if t.opDuration.Inst().Enabled(ctx) {
		if s := stateOf(conn); s != nil {
			if op == 0 {
				op = operationIndex(sql)
			}
			s.opName.Store(op)
			s.opStart.Store(time.Now().UnixNano())
		}
	}
	if t.querySpans {
		ctx = t.startQuerySpan(ctx, sql, op)
	}
	return ctx
}

func (t *telemetry) queryEnd(ctx context.Context, s *connState, err error) {
	if t == nil {
		return
	}
	if t.opDuration.Inst().Enabled(ctx) {
		if s != nil {
			if start := s.opStart.Swap(0); start != 0 {
				d := time.Duration(time.Now().UnixNano() - start).Seconds()
				op := s.opName.Load()
				if err == nil {
					t.opDuration.Inst().Record(ctx, d, t.opOpts[op])
				} else {
					t.recordFailedOp(ctx, d, op, err)
				}
			}
		}
	}
	if t.querySpans {
		if span, ok := ctx.Value(querySpanKey{}).(trace.Span); ok {
			if err != nil {
				et := errorType(err)
				span.SetAttributes(semconv.ErrorTypeKey.String(et))
				if len(et) == 5 {
					span.SetAttributes(semconv.DBResponseStatusCode(et))
				}
				span.SetStatus(codes.Error, et)
			}
			span.End()
		}
	}
}

func (t *telemetry) recordFailedOp(ctx context.Context, d float64, op uint32, err error) {
	et := errorType(err)
	kv := []attribute.KeyValue{semconv.DBClientConnectionPoolName(t.poolName), semconv.DBSystemNamePostgreSQL,
		semconv.ErrorTypeKey.String(et)}
	if op != 0 {
		kv = append(kv, semconv.DBOperationName(opNames[op]))
	}
	if len(et) == 5 { // a SQLSTATE
		kv = append(kv, semconv.DBResponseStatusCode(et))
	}
	t.opDuration.Inst().Record(ctx, d, metric.WithAttributes(kv...))
}

func (t *telemetry) startQuerySpan(ctx context.Context, sql string, op uint32) context.Context {
	if op == 0 {
		op = operationIndex(sql)
	}
	name := opNames[op]
	attrs := make([]attribute.KeyValue, 0, 6)
	attrs = append(attrs, semconv.DBSystemNamePostgreSQL)
	attrs = append(attrs, t.serverAttrs...)
	if name != "" {
		attrs = append(attrs, semconv.DBOperationName(name))
	} else {
		name = string(dbconv.SystemNamePostgreSQL)
	}
	if t.fingerprint && op != opBatch {
		fp, _ := pinning.Fingerprint(sql)
		attrs = append(attrs, semconv.DBQueryText(fp))
	}
	ctx, span := t.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	return context.WithValue(ctx, querySpanKey{}, span)
}

// pinAttrs are the attribute options of the pinning counter for one verdict:
// per kind (query, batch, prepare), one per reason.
type pinAttrs [3][]metric.MeasurementOption

func pinKindIndex(kind string) int {
	switch kind {
	case pinKindBatch:
		return 1
	case pinKindPrepare:
		return 2
	}
	return 0
}

// onPin counts one execution of a pinning statement, once per reason. The
// attribute sets are built the first time and kept with the cached verdict.
func (t *telemetry) onPin(v *pinVerdict, kind string) {
	ctx := context.Background()
	if t == nil || !t.pinned.Enabled(ctx) {
		return
	}
	a := v.tel.Load()
	if a == nil {
		a = t.pinAttrsFor(v)
		v.tel.Store(a)
	}
	for _, o := range a[pinKindIndex(kind)] {
		t.pinned.Add(ctx, 1, o)
	}
}

func (t *telemetry) pinAttrsFor(v *pinVerdict) *pinAttrs {
	var a pinAttrs
	for k, kind := range [...]string{pinKindQuery, pinKindBatch, pinKindPrepare} {
		for _, r := range v.event.Reasons {
			kv := []attribute.KeyValue{semconv.DBClientConnectionPoolName(t.poolName), attrPinReason.String(string(r)), attrPinKind.String(kind)}
			if t.fingerprint {
				kv = append(kv, attrFingerprint.String(v.event.Fingerprint))
			}
			a[k] = append(a[k], metric.WithAttributeSet(attribute.NewSet(kv...)))
		}
	}
	return &a
}
