package rdsproxy_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/rdsproxy/rdsproxy"
	"github.com/rdsproxy/rdsproxy/internal/proxyemu"
	"github.com/rdsproxy/rdsproxy/internal/testdb"
	"github.com/rdsproxy/rdsproxy/internal/testiam"
)

// twoDoors starts two emulator front doors on the test database, the second
// standing for the proxy's read-only endpoint, and returns a DSN for
// OpenCluster naming both (extra is appended).
func twoDoors(t *testing.T, extra string) (writer, reader *proxyemu.Proxy, dsn string) {
	t.Helper()
	writer, reader, dsn = testiam.Cluster(t, testiam.AppName(testdb.Prefix()+"_cluster"))
	return writer, reader, dsn + extra
}

// readOnlyAnswer is what the session that served a read says of
// transaction_read_only: "on" on the reader door, "off" on the writer's.
func readOnlyAnswer(db *sql.DB) (string, error) {
	var v string
	err := db.QueryRow("SELECT current_setting('transaction_read_only')").Scan(&v)
	return v, err
}

// holdConns checks out n connections of db at once, so that n are dialed.
func holdConns(t *testing.T, db *sql.DB, n int) {
	t.Helper()
	conns := make([]*sql.Conn, n)
	for i := range conns {
		c, err := db.Conn(context.Background())
		require.NoError(t, err)
		require.NoError(t, c.PingContext(context.Background()))
		conns[i] = c
	}
	for _, c := range conns {
		require.NoError(t, c.Close())
	}
}

// TestClusterRoutesByRole: reads on Reader reach the read-only door and
// writes on Writer the other; a write on Reader is a read-only violation;
// the two pools sign once per endpoint, not once per pool or connection.
func TestClusterRoutesByRole(t *testing.T) {
	wdoor, rdoor, dsn := twoDoors(t, "")
	ts := rdsproxy.NewTokenSource(rdsproxy.TokenSourceOptions{Credentials: testiam.Credentials})
	cl, err := rdsproxy.OpenCluster(dsn, rdsproxy.WithTokenSource(ts))
	require.NoError(t, err)
	defer cl.Close()
	require.NotSame(t, cl.Writer(), cl.Reader())
	require.NoError(t, rdsproxy.ObserveDB(cl.Reader()), "the reader *sql.DB is an rdsproxy one")

	v, err := readOnlyAnswer(cl.Reader())
	require.NoError(t, err)
	require.Equal(t, "on", v, "a read on Reader must reach the read-only door")
	v, err = readOnlyAnswer(cl.Writer())
	require.NoError(t, err)
	require.Equal(t, "off", v, "Writer must reach the default door")

	table := testdb.Prefix() + "_cluster_rw"
	_, err = cl.Writer().Exec("CREATE TABLE " + table + " (id int)")
	require.NoError(t, err)
	defer cl.Writer().Exec("DROP TABLE " + table)
	_, err = cl.Writer().Exec("INSERT INTO " + table + " VALUES (1)")
	require.NoError(t, err)
	require.False(t, rdsproxy.IsReadOnlyViolation(err))

	_, err = cl.Reader().Exec("INSERT INTO " + table + " VALUES (2)")
	require.Error(t, err)
	require.True(t, rdsproxy.IsReadOnlyViolation(err), "got %v", err)
	require.True(t, rdsproxy.IsReadOnlyViolation(fmt.Errorf("wrapped: %w", err)))
	require.False(t, rdsproxy.IsReadOnlyViolation(errors.New("25006")))
	require.False(t, rdsproxy.IsReadOnlyViolation(nil))

	holdConns(t, cl.Writer(), 4)
	holdConns(t, cl.Reader(), 4)
	require.GreaterOrEqual(t, wdoor.Authentications(), int64(4))
	require.GreaterOrEqual(t, rdoor.Authentications(), int64(4))
	require.Equal(t, 1, wdoor.DistinctTokens(), "the writer endpoint's dials share one token")
	require.Equal(t, 1, rdoor.DistinctTokens(), "the reader endpoint's dials share one token")
	require.EqualValues(t, 2, ts.Signings(), "one signing per endpoint")
}

// TestClusterSharesCredentialsSource: with credentials given as an option
// (not a TokenSource), both pools sign through one source, which retrieves
// the credentials once for both endpoints.
func TestClusterSharesCredentialsSource(t *testing.T) {
	wdoor, rdoor, dsn := twoDoors(t, "")
	var retrieved atomic.Int64
	creds := aws.CredentialsProviderFunc(func(ctx context.Context) (aws.Credentials, error) {
		retrieved.Add(1)
		return testiam.Credentials.Retrieve(ctx)
	})
	cl, err := rdsproxy.OpenCluster(dsn, rdsproxy.WithCredentialsProvider(creds))
	require.NoError(t, err)
	defer cl.Close()
	holdConns(t, cl.Writer(), 3)
	holdConns(t, cl.Reader(), 3)
	require.Equal(t, 1, wdoor.DistinctTokens())
	require.Equal(t, 1, rdoor.DistinctTokens())
	require.EqualValues(t, 1, retrieved.Load(), "one source, one credentials cache, for both pools")
}

// TestClusterDefaultChainSignsOncePerEndpoint: on the default credential
// chain, a cluster's two pools and a plain *sql.DB on the writer endpoint
// share the process-wide source: one signing per endpoint.
func TestClusterDefaultChainSignsOncePerEndpoint(t *testing.T) {
	useDefaultChain(t)
	wdoor, rdoor, dsn := twoDoors(t, "")
	cl, err := rdsproxy.OpenCluster(dsn)
	require.NoError(t, err)
	defer cl.Close()
	holdConns(t, cl.Writer(), 3)
	holdConns(t, cl.Reader(), 3)
	u, err := url.Parse(dsn)
	require.NoError(t, err)
	q := u.Query()
	q.Del("read_host")
	u.RawQuery = q.Encode()
	plain, err := sql.Open("rdsproxy", u.String())
	require.NoError(t, err)
	defer plain.Close()
	require.NoError(t, queryOne(plain))
	require.Equal(t, 1, wdoor.DistinctTokens())
	require.Equal(t, 1, rdoor.DistinctTokens())
	require.EqualValues(t, 2, rdsproxy.DefaultTokenSource().Signings())
}

// TestClusterReadFallback: with the reader door stopped and
// read_fallback=writer, reads keep succeeding on the writer, one warning is
// logged and the fallback is counted; once the door is back, reads return to
// it.
func TestClusterReadFallback(t *testing.T) {
	wdoor, rdoor, dsn := twoDoors(t, "&read_fallback=writer")
	logs := &secretsLog{}
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	cl, err := rdsproxy.OpenCluster(dsn, rdsproxy.WithCredentialsProvider(testiam.Credentials), rdsproxy.WithMeterProvider(mp),
		rdsproxy.WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	require.NoError(t, err)
	defer cl.Close()
	rdsproxy.SetReaderProbeInterval(cl, 20*time.Millisecond)

	v, err := readOnlyAnswer(cl.Reader())
	require.NoError(t, err)
	require.Equal(t, "on", v)

	require.NoError(t, rdoor.Stop())
	time.Sleep(rdsproxy.ProbeAfterIdle) // an idle connection found dead is replaced without an error
	for i := range 20 {
		v, err := readOnlyAnswer(cl.Reader())
		require.NoError(t, err, "read %d with the reader door stopped", i)
		require.Equal(t, "off", v, "read %d must be served by the writer", i)
	}
	require.Equal(t, 1, strings.Count(logs.buf.String(), "level=WARN"), "one warning per episode: %s", logs.buf.String())
	require.Contains(t, logs.buf.String(), "read-only endpoint")

	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(context.Background(), &rm))
	require.Positive(t, fallbacks(rm, rdoor.Addr()+"/postgres"), "fallbacks counted under the reader pool's name")

	require.NoError(t, rdoor.Restart())
	back := false
	for i := 0; i < 500 && !back; i++ {
		v, err := readOnlyAnswer(cl.Reader())
		require.NoError(t, err, "read %d after the reader door restarted", i)
		back = v == "on"
		if !back {
			time.Sleep(20 * time.Millisecond)
		}
	}
	require.True(t, back, "reads never went back to the reader door")
	require.Positive(t, wdoor.Authentications())
	logs.assertNoSecrets(t)
}

// fallbacks sums rdsproxy.pool.reader.fallbacks for pool.
func fallbacks(rm metricdata.ResourceMetrics, pool string) int64 {
	var n int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "rdsproxy.pool.reader.fallbacks" {
				continue
			}
			for _, p := range m.Data.(metricdata.Sum[int64]).DataPoints {
				if v, ok := p.Attributes.Value(attribute.Key("db.client.connection.pool.name")); ok && v.AsString() == pool {
					n += p.Value
				}
			}
		}
	}
	return n
}

// TestClusterReaderDownWithoutFallback: without read_fallback the reader's
// failure is the caller's error, and the writer is untouched.
func TestClusterReaderDownWithoutFallback(t *testing.T) {
	_, rdoor, dsn := twoDoors(t, "")
	cl, err := rdsproxy.OpenCluster(dsn, rdsproxy.WithCredentialsProvider(testiam.Credentials))
	require.NoError(t, err)
	defer cl.Close()
	require.NoError(t, rdoor.Stop())
	_, err = readOnlyAnswer(cl.Reader())
	require.Error(t, err)
	v, err := readOnlyAnswer(cl.Writer())
	require.NoError(t, err)
	require.Equal(t, "off", v)
}

// TestClusterKeys: read_host outside OpenCluster is an error naming
// OpenCluster; bad values name the key; without read_host Reader is Writer.
func TestClusterKeys(t *testing.T) {
	const base = "postgres://app@writer.example:5432/appdb?sslmode=disable"
	for _, key := range []string{"read_host=reader.example", "read_fallback=writer"} {
		_, err := rdsproxy.Open(base + "&" + key)
		require.ErrorIs(t, err, rdsproxy.ErrConfig, key)
		require.Contains(t, err.Error(), "OpenCluster", key)
		_, err = rdsproxy.NewConnector(base + "&" + key)
		require.ErrorContains(t, err, "OpenCluster", key)
		_, err = sql.Open("rdsproxy", base+"&"+key)
		require.ErrorContains(t, err, "OpenCluster", key)
	}
	for _, bad := range []string{"read_host=a:0", "read_host=a:99999", "read_host=a:b", "read_host=a,b",
		"read_host=" + url.QueryEscape("[::1"), "read_host=a:b:c", "read_host=a:", "read_host=:5432", "read_host=" + url.QueryEscape("a@b"),
		"read_host=" + url.QueryEscape("[]"), "read_fallback=reader", "read_fallback=on", "read_hosts=reader.example"} {
		_, err := rdsproxy.OpenCluster(base + "&" + bad)
		require.ErrorIs(t, err, rdsproxy.ErrConfig, bad)
		require.ErrorContains(t, err, strings.SplitN(bad, "=", 2)[0], bad)
	}
	for _, good := range []string{"read_host=reader.example", "read_host=reader.example:6432", "read_host=" + url.QueryEscape("[::1]:5433"),
		"read_host=::1", "read_host=" + url.QueryEscape("[::1]"), "read_host=10.0.0.7:5433", "read_host=reader.example&read_fallback=writer", "read_host=reader.example&read_fallback=off"} {
		cl, err := rdsproxy.OpenCluster(base + "&" + good)
		require.NoError(t, err, good)
		require.NotSame(t, cl.Writer(), cl.Reader())
		require.NoError(t, cl.Close())
	}
	for _, none := range []string{"read_fallback=writer", "read_host=", "read_host=&read_fallback=writer"} {
		cl, err := rdsproxy.OpenCluster(base + "&" + none)
		require.NoError(t, err, none)
		require.Same(t, cl.Writer(), cl.Reader(), "%s: no reader endpoint, Reader is the writer pool", none)
		require.NoError(t, cl.Close())
	}
	_, err := rdsproxy.NewPgxpoolConfig(base + "&read_host=reader.example")
	require.ErrorContains(t, err, "OpenCluster")
	cfg, err := rdsproxy.ParseConfig(base + "&read_host=reader.example:6432&read_fallback=writer")
	require.NoError(t, err)
	require.Equal(t, "reader.example:6432", cfg.ReadHost)
	require.Equal(t, rdsproxy.ReadFallbackWriter, cfg.ReadFallback)
	require.NotContains(t, cfg.ConnConfig.RuntimeParams, "read_host", "never sent to the server")
	_, err = rdsproxy.NewConnectorConfig(cfg)
	require.ErrorContains(t, err, "OpenCluster")
	cl, err := rdsproxy.OpenCluster(base+"&read_host=reader.example", rdsproxy.WithMaxConns(7))
	require.NoError(t, err)
	require.NoError(t, cl.Close(), "Close twice")
}

// TestClusterSharesPinningCheck: the two pools share one pinning check, so a
// pinning statement run on both is reported once, and each execution is
// counted under the pool that ran it.
func TestClusterSharesPinningCheck(t *testing.T) {
	u, err := url.Parse(testdb.Require(t))
	require.NoError(t, err)
	q := u.Query()
	q.Set("read_host", testdb.HostPort(t, u.String())) // the same server: the check is client side
	q.Set("application_name", testdb.Prefix()+"_cluster")
	u.RawQuery = q.Encode()
	var mu sync.Mutex
	var events []rdsproxy.PinEvent
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	cl, err := rdsproxy.OpenCluster(u.String(), rdsproxy.WithLogger(slog.New(slog.DiscardHandler)),
		rdsproxy.WithMeterProvider(mp), rdsproxy.WithPoolName("orders"),
		rdsproxy.WithPinHandler(func(e rdsproxy.PinEvent) { mu.Lock(); events = append(events, e); mu.Unlock() }))
	require.NoError(t, err)
	for _, db := range []*sql.DB{cl.Writer(), cl.Reader(), cl.Writer()} {
		_, err := db.Exec("SET statement_timeout = 5000")
		require.NoError(t, err)
	}
	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(context.Background(), &rm))
	require.Equal(t, map[string]int64{"orders": 2, "orders-reader": 1}, pinningByPool(rm))
	require.NoError(t, cl.Close()) // delivers pending reports
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, events, 1, "one report for one statement, whichever pool ran it: %+v", events)
}

// pinningByPool sums rdsproxy.pinning.statements by pool name.
func pinningByPool(rm metricdata.ResourceMetrics) map[string]int64 {
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "rdsproxy.pinning.statements" {
				continue
			}
			for _, p := range m.Data.(metricdata.Sum[int64]).DataPoints {
				v, _ := p.Attributes.Value(attribute.Key("db.client.connection.pool.name"))
				out[v.AsString()] += p.Value
			}
		}
	}
	return out
}

// TestClusterReadFallbackOnBorrowTimeout: the proxy's borrow-timeout answer
// to a new reader connection (readers present, none available) sends reads
// to the writer too, and they come back when the reader answers again.
func TestClusterReadFallbackOnBorrowTimeout(t *testing.T) {
	_, rdoor, dsn := twoDoors(t, "&read_fallback=writer")
	cl, err := rdsproxy.OpenCluster(dsn, rdsproxy.WithCredentialsProvider(testiam.Credentials),
		rdsproxy.WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(t, err)
	defer cl.Close()
	rdsproxy.SetReaderProbeInterval(cl, 20*time.Millisecond)

	rdoor.SetBorrowTimeout(true)
	v, err := readOnlyAnswer(cl.Reader())
	require.NoError(t, err)
	require.Equal(t, "off", v, "served by the writer while the reader times out borrowing")

	rdoor.SetBorrowTimeout(false)
	back := false
	for i := 0; i < 500 && !back; i++ {
		v, err := readOnlyAnswer(cl.Reader())
		require.NoError(t, err)
		back = v == "on"
		if !back {
			time.Sleep(20 * time.Millisecond)
		}
	}
	require.True(t, back, "reads never went back to the reader door")
}

// TestClusterFallbackReadsLeaveWriterFree: a writer connection a read used
// during a fallback episode goes back to the writer pool at release, so a
// write never waits behind the reader pool's idle list (cap 1: one
// connection for both).
func TestClusterFallbackReadsLeaveWriterFree(t *testing.T) {
	dsn := testdb.WithParams(testdb.Require(t), "application_name", testdb.Prefix()+"_cluster",
		"pool_max_conns", "1", "read_host", "127.0.0.1:1", "read_fallback", "writer")
	cl, err := rdsproxy.OpenCluster(dsn, rdsproxy.WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(t, err)
	defer cl.Close()
	for range 3 {
		var one int
		require.NoError(t, cl.Reader().QueryRow("SELECT 1").Scan(&one), "a read served by the writer")
		// A generous bound: the write needs the one connection the read used.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := cl.Writer().ExecContext(ctx, "SELECT 1")
		cancel()
		require.NoError(t, err, "a write after a fallback read (reader stats %+v)", cl.Reader().Stats())
	}
}
