package rdsproxy

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/semconv/v1.43.0/dbconv"

	"github.com/rdsproxy/rdsproxy/internal/testclock"
	"github.com/rdsproxy/rdsproxy/internal/testdb"
	"github.com/rdsproxy/rdsproxy/internal/testiam"
)

// otelHarness is an SDK MeterProvider with a ManualReader and an SDK
// TracerProvider with an in-memory span recorder.
type otelHarness struct {
	reader *sdkmetric.ManualReader
	mp     *sdkmetric.MeterProvider
	spans  *tracetest.SpanRecorder
	tp     *sdktrace.TracerProvider
}

func newOtelHarness(t *testing.T) *otelHarness {
	h := &otelHarness{reader: sdkmetric.NewManualReader(), spans: tracetest.NewSpanRecorder()}
	h.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(h.reader))
	h.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(h.spans))
	t.Cleanup(func() {
		_ = h.mp.Shutdown(context.Background())
		_ = h.tp.Shutdown(context.Background())
	})
	return h
}

func (h *otelHarness) options() []Option {
	return []Option{WithMeterProvider(h.mp), WithTracerProvider(h.tp)}
}

func (h *otelHarness) collect(t *testing.T) map[string]metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, h.reader.Collect(context.Background(), &rm))
	out := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		require.Equal(t, instrumentationName, sm.Scope.Name)
		for _, m := range sm.Metrics {
			out[m.Name] = m
		}
	}
	return out
}

// attrSets returns the attribute sets of every data point of m.
func attrSets(m metricdata.Metrics) []attribute.Set {
	var out []attribute.Set
	switch d := m.Data.(type) {
	case metricdata.Sum[int64]:
		for _, p := range d.DataPoints {
			out = append(out, p.Attributes)
		}
	case metricdata.Gauge[int64]:
		for _, p := range d.DataPoints {
			out = append(out, p.Attributes)
		}
	case metricdata.Histogram[float64]:
		for _, p := range d.DataPoints {
			out = append(out, p.Attributes)
		}
	}
	return out
}

func has(set attribute.Set, kv ...attribute.KeyValue) bool {
	for _, want := range kv {
		v, ok := set.Value(want.Key)
		if !ok || v != want.Value {
			return false
		}
	}
	return true
}

// sumValue is the value of the Sum data point carrying kv (0 when none).
func sumValue(t *testing.T, m metricdata.Metrics, kv ...attribute.KeyValue) int64 {
	t.Helper()
	s, ok := m.Data.(metricdata.Sum[int64])
	require.True(t, ok, "%s is %T, want Sum[int64]", m.Name, m.Data)
	var n int64
	for _, p := range s.DataPoints {
		if has(p.Attributes, kv...) {
			n += p.Value
		}
	}
	return n
}

// histCount is the number of recordings in the data points carrying kv.
func histCount(t *testing.T, m metricdata.Metrics, kv ...attribute.KeyValue) uint64 {
	t.Helper()
	h, ok := m.Data.(metricdata.Histogram[float64])
	require.True(t, ok, "%s is %T, want Histogram[float64]", m.Name, m.Data)
	var n uint64
	for _, p := range h.DataPoints {
		if has(p.Attributes, kv...) {
			n += p.Count
		}
	}
	return n
}

// requireKind checks an instrument's unit and kind.
func requireKind(t *testing.T, ms map[string]metricdata.Metrics, name, unit, kind string) metricdata.Metrics {
	t.Helper()
	m, ok := ms[name]
	require.True(t, ok, "metric %s not exported", name)
	require.Equal(t, unit, m.Unit, name)
	require.NotEmpty(t, m.Description, name)
	switch d := m.Data.(type) {
	case metricdata.Sum[int64]:
		got := "updowncounter"
		if d.IsMonotonic {
			got = "counter"
		}
		require.Equal(t, kind, got, name)
	case metricdata.Histogram[float64]:
		require.Equal(t, kind, "histogram", name)
	default:
		t.Fatalf("%s: unexpected data %T", name, m.Data)
	}
	return m
}

// exportedText is every attribute value of every metric and span, and every
// span name and status, for the secrets check.
func (h *otelHarness) exportedText(ms map[string]metricdata.Metrics) string {
	var b strings.Builder
	for _, m := range ms {
		for _, set := range attrSets(m) {
			for _, kv := range set.ToSlice() {
				fmt.Fprintf(&b, "%s=%s\n", kv.Key, kv.Value.String())
			}
		}
	}
	for _, s := range h.spans.Ended() {
		fmt.Fprintf(&b, "span %s %s\n", s.Name(), s.Status().Description)
		for _, kv := range s.Attributes() {
			fmt.Fprintf(&b, "%s=%s\n", kv.Key, kv.Value.String())
		}
		for _, e := range s.Events() {
			fmt.Fprintf(&b, "event %s %v\n", e.Name, e.Attributes)
		}
	}
	return b.String()
}

func poolAttr(name string) attribute.KeyValue {
	return attribute.String("db.client.connection.pool.name", name)
}

// requirePoolNameEverywhere checks that every data point names its pool.
func requirePoolNameEverywhere(t *testing.T, ms map[string]metricdata.Metrics) {
	t.Helper()
	for name, m := range ms {
		for _, set := range attrSets(m) {
			_, ok := set.Value("db.client.connection.pool.name")
			require.True(t, ok, "%s has a data point without db.client.connection.pool.name: %v", name, set)
		}
	}
}

// TestTelemetryPoolAndQueryMetrics runs a workload against PostgreSQL with an
// SDK ManualReader and checks the standard and rdsproxy instruments, a
// connection retired by lifetime (fake clock), the pinning counter, query
// spans, and that no secret reaches an attribute.
func TestTelemetryPoolAndQueryMetrics(t *testing.T) {
	h := newOtelHarness(t)
	u, err := url.Parse(testdb.WithParams(testdb.Require(t), "application_name", testdb.AppName(t),
		"pool_max_conns", "2", "pool_max_conn_lifetime", "10m", "pool_max_conn_lifetime_jitter", "0s",
		"pool_max_conn_idle_time", "1h"))
	require.NoError(t, err)
	password, ok := u.User.Password()
	if !ok { // trust authentication ignores it; it must still never be exported
		password = "pw-Sup3rSecret-telemetry"
		u.User = url.UserPassword(u.User.Username(), password)
	}
	const paramValue = "param-value-9f3c1e-secret"

	cfg, err := ParseConfig(u.String())
	require.NoError(t, err)
	c, err := newConnector(cfg, append(h.options(), WithQuerySpans(true)), true)
	require.NoError(t, err)
	clock := testclock.Start()
	c.policy.now = clock.Now
	db := sql.OpenDB(c)
	db.SetMaxOpenConns(2)
	db.SetMaxIdleConns(2)
	t.Cleanup(func() { db.Close() })
	pool := defaultPoolName(cfg.ConnConfig)
	require.Equal(t, fmt.Sprintf("%s:%d/%s", cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database), pool)

	ctx := context.Background()
	var s string
	for range 5 {
		require.NoError(t, db.QueryRow("SELECT $1::text", paramValue).Scan(&s))
	}
	_, err = db.Exec("SELECT 1/0")
	require.Error(t, err)
	for range 3 {
		_, err = db.Exec("SET search_path TO public") // pins: counted per execution
		require.NoError(t, err)
	}
	// Two connections at once, then a pgx batch on one of them.
	c1, err := db.Conn(ctx)
	require.NoError(t, err)
	c2, err := db.Conn(ctx)
	require.NoError(t, err)
	require.NoError(t, c2.Raw(func(dc any) error {
		b := &pgx.Batch{}
		b.Queue("SELECT $1::text", paramValue)
		b.Queue("SELECT 2")
		return dc.(*stdlib.Conn).Conn().SendBatch(ctx, b).Close()
	}))
	require.NoError(t, c2.Close())
	require.NoError(t, c1.Close())

	clock.Advance(11 * time.Minute) // both connections pass their lifetime
	require.NoError(t, db.QueryRow("SELECT $1::text", paramValue).Scan(&s))

	ms := h.collect(t)
	pa := poolAttr(pool)
	pg := attribute.String("db.system.name", "postgresql")

	op := requireKind(t, ms, dbconv.ClientOperationDuration{}.Name(), "s", "histogram")
	require.GreaterOrEqual(t, histCount(t, op, pa, pg, attribute.String("db.operation.name", "SELECT")), uint64(6))
	require.EqualValues(t, 3, histCount(t, op, pa, pg, attribute.String("db.operation.name", "SET")))
	require.EqualValues(t, 1, histCount(t, op, pa, pg, attribute.String("db.operation.name", "BATCH")))
	require.EqualValues(t, 1, histCount(t, op, pa, pg, attribute.String("error.type", "22012"),
		attribute.String("db.response.status_code", "22012")), "division by zero carries its SQLSTATE")

	count := requireKind(t, ms, dbconv.ClientConnectionCountObservable{}.Name(), "{connection}", "updowncounter")
	// pgxpool destroys retired connections asynchronously: wait for the count
	// to settle on the one replacement.
	require.Eventually(t, func() bool {
		count := h.collect(t)[dbconv.ClientConnectionCountObservable{}.Name()]
		used := sumValue(t, count, pa, attribute.String("db.client.connection.state", "used"))
		idle := sumValue(t, count, pa, attribute.String("db.client.connection.state", "idle"))
		return used+idle == 1
	}, 5*time.Second, 10*time.Millisecond, "one physical connection after the retirement")
	require.NotZero(t, sumValue(t, count, pa))
	require.EqualValues(t, 2, sumValue(t, requireKind(t, ms, dbconv.ClientConnectionMaxObservable{}.Name(), "{connection}", "updowncounter"), pa))
	require.EqualValues(t, 2, sumValue(t, requireKind(t, ms, dbconv.ClientConnectionIdleMaxObservable{}.Name(), "{connection}", "updowncounter"), pa))
	requireKind(t, ms, dbconv.ClientConnectionIdleMinObservable{}.Name(), "{connection}", "updowncounter")

	create := requireKind(t, ms, dbconv.ClientConnectionCreateTime{}.Name(), "s", "histogram")
	require.EqualValues(t, 3, histCount(t, create, pa), "two dials, then one replacement")
	wait := requireKind(t, ms, dbconv.ClientConnectionWaitTime{}.Name(), "s", "histogram")
	require.GreaterOrEqual(t, histCount(t, wait, pa), uint64(3))

	retired := requireKind(t, ms, metricConnectionsRetired, "{connection}", "counter")
	require.GreaterOrEqual(t, sumValue(t, retired, pa, attrRetireReason.String(retireLifetime.String())), int64(1))
	require.Zero(t, sumValue(t, retired, pa, attrRetireReason.String(retireBroken.String())))

	pinned := requireKind(t, ms, metricPinnedStatements, "{statement}", "counter")
	require.EqualValues(t, 3, sumValue(t, pinned, pa, attrPinReason.String(string(PinSessionSetting)), attrPinKind.String(PinKindQuery)))
	requirePoolNameEverywhere(t, ms)

	// Spans: one connect span per dial, query spans named by operation.
	names := map[string]int{}
	for _, sp := range h.spans.Ended() {
		names[sp.Name()]++
	}
	require.Equal(t, 3, names[spanConnect], "spans: %v", names)
	require.GreaterOrEqual(t, names["SELECT"], 6, "spans: %v", names)
	require.Equal(t, 1, names["BATCH"], "spans: %v", names)

	text := h.exportedText(ms)
	for _, secret := range []string{password, paramValue, "1/0", "search_path"} {
		require.NotContains(t, text, secret, "exported telemetry contains %q", secret)
	}
}

// TestTelemetryFingerprintOptIn: the fingerprint appears only when asked
// for, and without literals.
func TestTelemetryFingerprintOptIn(t *testing.T) {
	for _, on := range []bool{false, true} {
		t.Run(fmt.Sprint(on), func(t *testing.T) {
			h := newOtelHarness(t)
			db, err := openWith(t, append(h.options(), WithQueryFingerprintAttribute(on), WithQuerySpans(true), WithPoolName("fp"))...)
			require.NoError(t, err)
			_, err = db.Exec("SELECT set_config('application_name', 'literal-7731', false)")
			require.NoError(t, err)
			ms := h.collect(t)
			text := h.exportedText(ms)
			require.NotContains(t, text, "literal-7731")
			pinned := ms[metricPinnedStatements]
			require.EqualValues(t, 1, sumValue(t, pinned, poolAttr("fp"), attrPinReason.String(string(PinSessionSetting))))
			if on {
				require.Contains(t, text, "rdsproxy.query.fingerprint=SELECT set_config(?, ?, false)")
				require.Contains(t, text, "db.query.text=SELECT set_config(?, ?, false)")
			} else {
				require.NotContains(t, text, "set_config")
			}
		})
	}
}

func openWith(t *testing.T, opts ...Option) (*sql.DB, error) {
	dsn := testdb.WithParams(testdb.Require(t), "application_name", testdb.AppName(t))
	cfg, err := ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	c, err := newConnector(cfg, opts, true)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(c)
	t.Cleanup(func() { db.Close() })
	return db, nil
}

// TestTelemetryNoProviderIsNoop: with OpenTelemetry's default (no-op)
// providers nothing is recorded and the connector works; a closed connector
// unregisters its callback.
func TestTelemetryUnregistersOnClose(t *testing.T) {
	h := newOtelHarness(t)
	db, err := openWith(t, append(h.options(), WithPoolName("closing"))...)
	require.NoError(t, err)
	_, err = db.Exec("SELECT 1")
	require.NoError(t, err)
	require.Contains(t, h.collect(t), dbconv.ClientConnectionCountObservable{}.Name())
	require.NoError(t, db.Close())
	ms := h.collect(t)
	if m, ok := ms[dbconv.ClientConnectionCountObservable{}.Name()]; ok {
		require.Empty(t, attrSets(m), "a closed connector reports no pool state")
	}
}

// TestTelemetryIAMThroughEmulator checks the token metrics and spans through
// the RDS Proxy emulator: a signing, a cache hit, a rejected cached token
// retried with a fresh one; and that no token fragment or key is exported.
func TestTelemetryIAMThroughEmulator(t *testing.T) {
	p, dsn := testiam.Start(t, testiam.AppName(testdb.Prefix()+"_iamtel"))

	h := newOtelHarness(t)
	ts := NewTokenSource(TokenSourceOptions{Credentials: testiam.Credentials})
	open := func(name string) *sql.DB {
		db, err := Open(dsn, append(h.options(), WithTokenSource(ts), WithPoolName(name))...)
		require.NoError(t, err)
		return db
	}
	ctx := context.Background()
	db := open("iam-a")
	c1, err := db.Conn(ctx) // first dial: signs
	require.NoError(t, err)
	c2, err := db.Conn(ctx) // second dial: cache hit
	require.NoError(t, err)
	require.NoError(t, c1.PingContext(ctx))
	require.NoError(t, c2.PingContext(ctx))
	c1.Close()
	c2.Close()
	db.Close()

	p.RejectNextAuth(1)
	time.Sleep(1100 * time.Millisecond) // X-Amz-Date has 1 s resolution: the re-signed token must differ
	db = open("iam-b")
	require.NoError(t, db.PingContext(ctx), "the retry with a fresh token succeeds")
	db.Close()

	ms := h.collect(t)
	a, b := poolAttr("iam-a"), poolAttr("iam-b")
	signings := requireKind(t, ms, metricTokenSignings, "{signing}", "counter")
	require.EqualValues(t, 1, sumValue(t, signings, a))
	require.EqualValues(t, 1, sumValue(t, signings, b))
	require.EqualValues(t, 2, ts.Signings())
	hits := requireKind(t, ms, metricTokenCacheHits, "{token}", "counter")
	require.EqualValues(t, 1, sumValue(t, hits, a))
	require.EqualValues(t, 1, sumValue(t, hits, b), "the rejected dial used the cached token")
	require.EqualValues(t, 2, histCount(t, requireKind(t, ms, metricTokenSignDuration, "s", "histogram")))
	failures := requireKind(t, ms, metricIAMAuthFailures, "{failure}", "counter")
	require.EqualValues(t, 1, sumValue(t, failures, b, attrTokenCached.Bool(true)))
	require.Zero(t, sumValue(t, failures, b, attrTokenCached.Bool(false)))
	require.EqualValues(t, 1, sumValue(t, requireKind(t, ms, metricIAMAuthRetries, "{retry}", "counter"), b))
	require.EqualValues(t, 3, histCount(t, ms[dbconv.ClientConnectionCreateTime{}.Name()]), "three successful dials")
	requirePoolNameEverywhere(t, ms)

	// Spans: token spans are children of connect spans; a signing is a child
	// of its token span; the rejected connect span failed with SQLSTATE class 28.
	byID := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range h.spans.Ended() {
		byID[s.SpanContext().SpanID().String()] = s
	}
	outcomes := map[string]int{}
	var failedConnects, signs int
	for _, s := range h.spans.Ended() {
		parent := byID[s.Parent().SpanID().String()]
		switch s.Name() {
		case spanToken:
			require.NotNil(t, parent, "token span without parent")
			require.Equal(t, spanConnect, parent.Name())
			for _, kv := range s.Attributes() {
				if kv.Key == attrTokenCache {
					outcomes[kv.Value.AsString()]++
				}
			}
		case spanSign:
			signs++
			require.NotNil(t, parent)
			require.Equal(t, spanToken, parent.Name())
		case spanConnect:
			if s.Status().Code != 0 && strings.HasPrefix(s.Status().Description, "28") {
				failedConnects++
			}
		}
	}
	require.Equal(t, map[string]int{"hit": 2, "miss": 2}, outcomes)
	require.Equal(t, 2, signs)
	require.Equal(t, 1, failedConnects, "the rejected dial's connect span carries its SQLSTATE (28P01)")

	text := h.exportedText(ms)
	for _, secret := range []string{testiam.SecretKey, testiam.SecretKey[:16], testiam.AccessKey, "X-Amz-Signature", "X-Amz-Credential", "Action=connect", "DBUser"} {
		require.NotContains(t, text, secret, "exported telemetry contains %q", secret)
	}
}

// TestOperationIndex: the operation name is the first keyword (as the
// pinning analyzer's tokenizer reads it) from a bounded set, never other text.
func TestOperationIndex(t *testing.T) {
	for sql, want := range map[string]string{
		"select 1":                        "SELECT",
		"  /* c */ -- x\n Insert into t":  "INSERT",
		"(SELECT 1) UNION (SELECT 2)":     "SELECT",
		"WITH x AS (SELECT 1) SELECT":     "",
		"-- ping":                         "",
		"frobnicate the table":            "",
		"":                                "",
		"SELECTING":                       "",
		"update t set a=1":                "UPDATE",
		"select1":                         "",
		"/* a /* nested */ b */ DELETE":   "DELETE",
		"'SELECT'":                        "",
		"DEALLOCATEALLPREPAREDSTATEMENTS": "",
	} {
		require.Equal(t, want, opNames[operationIndex(sql)], "%q", sql)
	}
	require.Zero(t, testing.AllocsPerRun(100, func() { operationIndex("select 1") }))
}

// TestTelemetryUsedCountsHeldConnections: with one connection held by the
// application (a *sql.Conn) and two idle in database/sql's free list, the
// connection count reads used=1, idle=2 under Open and under sql.OpenDB with
// ObserveDB; without ObserveDB the driver cannot tell, and all three are used.
func TestTelemetryUsedCountsHeldConnections(t *testing.T) {
	dsn := testdb.WithParams(testdb.Require(t), "application_name", testdb.AppName(t), "pool_max_conns", "3")
	for _, c := range []struct {
		name       string
		open       func(t *testing.T, opts []Option) *sql.DB
		used, idle int64
	}{
		{"Open", func(t *testing.T, opts []Option) *sql.DB {
			db, err := Open(dsn, opts...)
			require.NoError(t, err)
			return db
		}, 1, 2},
		{"OpenDB+ObserveDB", func(t *testing.T, opts []Option) *sql.DB {
			c, err := NewConnector(dsn, opts...)
			require.NoError(t, err)
			db := sql.OpenDB(c)
			require.NoError(t, ObserveDB(db))
			return db
		}, 1, 2},
		{"OpenDB", func(t *testing.T, opts []Option) *sql.DB {
			c, err := NewConnector(dsn, opts...)
			require.NoError(t, err)
			return sql.OpenDB(c)
		}, 3, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newOtelHarness(t)
			db := c.open(t, append(h.options(), WithPoolName("held")))
			t.Cleanup(func() { db.Close() })
			ctx := context.Background()
			var conns []*sql.Conn
			for range 3 {
				conn, err := db.Conn(ctx)
				require.NoError(t, err)
				require.NoError(t, conn.PingContext(ctx))
				conns = append(conns, conn)
			}
			require.NoError(t, conns[1].Close()) // back to database/sql's free list
			require.NoError(t, conns[2].Close())
			require.Equal(t, 2, db.Stats().Idle)

			count := h.collect(t)[dbconv.ClientConnectionCountObservable{}.Name()]
			pa := poolAttr("held")
			require.Equal(t, c.used, sumValue(t, count, pa, attribute.String("db.client.connection.state", "used")))
			require.Equal(t, c.idle, sumValue(t, count, pa, attribute.String("db.client.connection.state", "idle")))
			require.NoError(t, conns[0].Close())
		})
	}
}

// TestObserveDBFindsTheConnector: ObserveDB accepts a *sql.DB from
// sql.Open("rdsproxy", dsn) and refuses one of another driver.
func TestObserveDBFindsTheConnector(t *testing.T) {
	dsn := testdb.WithParams(testdb.Require(t), "application_name", testdb.AppName(t))
	db, err := sql.Open(driverName, dsn)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	require.NoError(t, ObserveDB(db))
	require.Same(t, db, db.Driver().(*Driver).connector.tel.db.Load())

	other, err := sql.Open("pgx", dsn)
	require.NoError(t, err)
	t.Cleanup(func() { other.Close() })
	require.ErrorIs(t, ObserveDB(other), errNotRdsproxyDB)
	require.ErrorIs(t, ObserveDB(nil), errNotRdsproxyDB)
}
