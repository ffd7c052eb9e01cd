// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

package rdsproxy_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/rdsproxy/rdsproxy"
	"github.com/rdsproxy/rdsproxy/internal/proxyemu"
	"github.com/rdsproxy/rdsproxy/internal/testdb"
	"github.com/rdsproxy/rdsproxy/internal/testiam"
)

// openPinMode opens a database/sql pool through a fresh emulator, with its
// own application_name and extra DSN keys.
func openPinMode(t *testing.T, extra string, opts ...rdsproxy.Option) (*proxyemu.Proxy, *sql.DB, string) {
	t.Helper()
	app := testdb.AppName(t)
	p, dsn := testiam.Start(t, testiam.AppName(app))
	ts := rdsproxy.NewTokenSource(rdsproxy.TokenSourceOptions{Credentials: testiam.Credentials})
	db, err := rdsproxy.Open(dsn+"&"+extra, append(opts, rdsproxy.WithTokenSource(ts))...)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return p, db, app
}

// waitFor polls cond up to a generous bound (a bounded loop, not a timed
// assertion: it only fails when cond never holds).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 1000; i++ {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("never happened: %s", what)
}

// pinnedGauge reads rdsproxy.pool.connections.pinned from reader.
func pinnedGauge(t *testing.T, reader *sdkmetric.ManualReader) (int64, bool) {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(context.Background(), &rm))
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "rdsproxy.pool.connections.pinned" {
				continue
			}
			g := m.Data.(metricdata.Gauge[int64])
			for _, dp := range g.DataPoints {
				if v, ok := dp.Attributes.Value("db.client.connection.pool.name"); ok && v.AsString() != "" {
					return dp.Value, true
				}
			}
		}
	}
	return 0, false
}

// pinWorkloadResult is what one run of the workload saw.
type pinWorkloadResult struct {
	maxPinned   int   // the emulator's PinnedNow, highest sample during the load
	quietPinned int   // 5 s after the load, with no checkout in between
	endPinned   int   // after the load and one reuse of every connection
	totalPinned int64 // sessions the emulator ever pinned
	leaks       int   // requests that saw a search_path another request set
	refused     int   // pinning requests refused with ErrPinning
	reconnects  int64 // emulator authentications beyond the first cap
}

const (
	workloadWorkers  = 20
	workloadRequests = 40 // per worker: 800 requests, 80 of them pinning
	workloadCap      = 20
	pinRetireBound   = 12 // see TestPinWorkload/retire

	workloadQuietPeriod = 5 * time.Second
)

// runPinWorkload runs 20 workers through the emulator, each request on its
// own *sql.Conn; one request in ten sets search_path for the session (SET, or
// set_config(..., false)), the others check they do not see it.
func runPinWorkload(t *testing.T, mode string) pinWorkloadResult {
	extra := fmt.Sprintf("pin_check=%s&pool_max_conns=%d", mode, workloadCap)
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { mp.Shutdown(context.Background()) })
	p, db, _ := openPinMode(t, extra, rdsproxy.WithLogger(slog.New(slog.DiscardHandler)), rdsproxy.WithMeterProvider(mp))
	ctx := context.Background()
	var res pinWorkloadResult
	var maxPinned, leaks, refused atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workloadWorkers)
	for w := 0; w < workloadWorkers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < workloadRequests; i++ {
				if err := pinWorkloadRequest(ctx, db, w, i, &leaks, &refused); err != nil {
					errs <- err
					return
				}
				if n := int64(p.PinnedNow()); n > maxPinned.Load() {
					maxPinned.Store(n) // racy max: a sample, not a count
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	// Five seconds without any checkout: what stays pinned when nothing
	// reuses the connections (a measurement, asserted by the caller).
	if mode != "error" {
		time.Sleep(workloadQuietPeriod)
	}
	res.quietPinned = p.PinnedNow()
	// One reuse of every connection idle in database/sql: the earliest point
	// at which database/sql lets the driver retire a connection it keeps.
	conns := make([]*sql.Conn, 0, workloadCap)
	for i := 0; i < workloadCap; i++ {
		c, err := db.Conn(ctx)
		require.NoError(t, err)
		conns = append(conns, c)
	}
	for _, c := range conns {
		c.Close()
	}
	if mode != "warn" {
		waitFor(t, "no session pinned after the load", func() bool { return p.PinnedNow() == 0 })
		waitFor(t, "pinned gauge back to 0", func() bool { v, _ := pinnedGauge(t, reader); return v == 0 })
	} else {
		v, ok := pinnedGauge(t, reader)
		require.True(t, ok, "pinned gauge reported")
		require.Positive(t, v, "under warn the pinned gauge stays up")
	}
	res.maxPinned = int(maxPinned.Load())
	res.endPinned = p.PinnedNow()
	res.totalPinned = p.PinnedTotal()
	res.leaks = int(leaks.Load())
	res.refused = int(refused.Load())
	res.reconnects = p.Authentications() - workloadCap
	t.Logf("pin_check=%s: pinned during load max %d, 5 s after %d, after a reuse of each connection %d, ever %d; leaks %d; refused %d; authentications %d",
		mode, res.maxPinned, res.quietPinned, res.endPinned, res.totalPinned, res.leaks, res.refused, p.Authentications())
	return res
}

// leakMarker is the schema name a pinning request puts first in search_path.
const leakMarker = "rdsproxy_leak_marker"

func pinWorkloadRequest(ctx context.Context, db *sql.DB, w, i int, leaks, refused *atomic.Int64) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if (w+i)%10 == 0 { // one request in ten
		stmt := "SET search_path TO " + leakMarker + ", public"
		if (w+i)%20 == 0 {
			stmt = "SELECT set_config('search_path', '" + leakMarker + ", public', false)"
		}
		_, err := conn.ExecContext(ctx, stmt)
		if errors.Is(err, rdsproxy.ErrPinning) {
			refused.Add(1)
			return nil
		}
		if err != nil {
			return err
		}
	}
	var path string
	if err := conn.QueryRowContext(ctx, "SELECT current_setting('search_path')").Scan(&path); err != nil {
		return err
	}
	if (w+i)%10 != 0 && strings.Contains(path, leakMarker) {
		leaks.Add(1)
	}
	return nil
}

// TestPinWorkload: under warn pins pile up and search_path leaks to other
// requests; under retire no request sees another's search_path, few sessions
// are pinned at once and none after; under error nothing ever pins.
func TestPinWorkload(t *testing.T) {
	t.Run("warn", func(t *testing.T) {
		r := runPinWorkload(t, "warn")
		require.Positive(t, r.leaks, "warn leaks search_path (the check can fail)")
		require.GreaterOrEqual(t, r.endPinned, 1)
	})
	t.Run("retire", func(t *testing.T) {
		r := runPinWorkload(t, "retire")
		require.Zero(t, r.leaks, "a request saw another request's search_path")
		// A session is pinned only while the request that pinned it runs,
		// and from its release to the next checkout of its connection (when
		// database/sql reuses it and the driver retires it) plus the close.
		// One request in ten pins, so each of the 20 connections is pinned
		// about a tenth of the time: the count is near Binomial(20, 0.1),
		// mean 2, and above 12 with probability under 1e-6 per sample.
		require.LessOrEqual(t, r.maxPinned, pinRetireBound)
		require.Zero(t, r.endPinned)
		require.LessOrEqual(t, r.quietPinned, pinRetireBound, "only connections idle in database/sql, retired at their next checkout")
		require.EqualValues(t, workloadWorkers*workloadRequests/10, r.totalPinned, "every pinning request pinned its own session once")
	})
	t.Run("error", func(t *testing.T) {
		r := runPinWorkload(t, "error")
		require.Zero(t, r.totalPinned)
		require.Zero(t, r.leaks)
		require.Equal(t, workloadWorkers*workloadRequests/10, r.refused)
		require.LessOrEqual(t, r.reconnects, int64(0), "a refusal must not cost a connection")
	})
}

// TestPinCheckErrorNeverSends: every way of running a statement refuses a
// pinning one with ErrPinning before it reaches the server, the connection
// stays usable, and the error carries no literal value.
func TestPinCheckErrorNeverSends(t *testing.T) {
	p, db, app := openPinMode(t, "pin_check=error", rdsproxy.WithLogger(slog.New(slog.DiscardHandler)))
	admin := testdb.Admin(t)
	ctx := context.Background()
	const lock = "SELECT pg_advisory_lock(987654321)"
	check := func(what string, err error) {
		t.Helper()
		require.ErrorIs(t, err, rdsproxy.ErrPinning, what)
		require.NotContains(t, err.Error(), "987654321", what)
		require.Contains(t, err.Error(), "advisory_lock", what)
		require.Contains(t, err.Error(), "pg_advisory_xact_lock", what) // the remedy
	}
	_, err := db.ExecContext(ctx, lock)
	check("Exec", err)
	_, err = db.QueryContext(ctx, lock)
	check("Query", err)
	check("QueryRow", db.QueryRowContext(ctx, "SELECT pg_advisory_lock($1)", 987654321).Scan(new(string)))
	_, err = db.PrepareContext(ctx, "SELECT 1")
	require.ErrorIs(t, err, rdsproxy.ErrPinning, "Prepare: database/sql prepares a named statement, which pins")
	require.Contains(t, err.Error(), "prepared_statement")
	tx, err := db.BeginTx(ctx, nil)
	require.NoError(t, err)
	_, err = tx.ExecContext(ctx, lock)
	check("Tx.Exec", err)
	var one int
	require.NoError(t, tx.QueryRowContext(ctx, "SELECT 1").Scan(&one), "the transaction goes on")
	require.NoError(t, tx.Commit())

	conn, err := db.Conn(ctx)
	require.NoError(t, err)
	require.NoError(t, conn.Raw(func(dc any) error {
		pc := dc.(interface{ Conn() *pgx.Conn }).Conn()
		_, err := pc.Exec(ctx, lock)
		check("pgx Exec through Raw", err)
		b := &pgx.Batch{}
		b.Queue("SELECT 1")
		b.Queue(lock)
		err = pc.SendBatch(ctx, b).Close()
		check("pgx batch through Raw", err)
		_, err = pc.Prepare(ctx, "named", "SELECT 1")
		require.ErrorIs(t, err, rdsproxy.ErrPinning, "pgx Prepare")
		return pc.QueryRow(ctx, "SELECT 1").Scan(&one) // still usable
	}))
	require.NoError(t, conn.Close())

	var locks int
	require.NoError(t, admin.QueryRow(ctx, `SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
		WHERE l.locktype = 'advisory' AND a.application_name = $1`, app).Scan(&locks))
	require.Zero(t, locks, "an advisory lock was taken: the statement reached the server")
	require.Zero(t, p.PinnedTotal(), "the emulator saw a pinning statement")
	require.EqualValues(t, 1, p.Authentications(), "refusals cost no connection")
}

// TestPinRetireChurn: a statement run at the start of every request pins
// every connection; retire stops retiring it after a few, warns once naming
// it, and the pool stops reconnecting.
func TestPinRetireChurn(t *testing.T) {
	var logs bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil))
	p, db, _ := openPinMode(t, "pin_check=retire&pool_max_conns=2", rdsproxy.WithLogger(logger))
	ctx := context.Background()
	const requests = 60
	for i := 0; i < requests; i++ {
		conn, err := db.Conn(ctx)
		require.NoError(t, err)
		_, err = conn.ExecContext(ctx, "SET search_path TO tenant_a, public")
		require.NoError(t, err)
		var one int
		require.NoError(t, conn.QueryRowContext(ctx, "SELECT 1").Scan(&one))
		require.NoError(t, conn.Close())
	}
	// pinChurnStreak retirements, then the connections are kept.
	require.LessOrEqual(t, p.Authentications(), int64(8+2+1), "retire reconnected for a statement every request runs")
	mu.Lock()
	out := logs.String()
	mu.Unlock()
	require.Equal(t, 1, strings.Count(out, "runs on every connection"), out)
	require.Contains(t, out, `fingerprint="SET search_path TO ?, ?"`)
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// TestPinRetireKeepsStateForHolder: the *sql.Conn or transaction that ran a
// pinning statement keeps its state until it lets go; the next checkout gets
// another connection.
func TestPinRetireKeepsStateForHolder(t *testing.T) {
	p, db, _ := openPinMode(t, "pin_check=retire&pool_max_conns=1", rdsproxy.WithLogger(slog.New(slog.DiscardHandler)))
	ctx := context.Background()
	path := func(q interface {
		QueryRowContext(context.Context, string, ...any) *sql.Row
	}) string {
		var s string
		require.NoError(t, q.QueryRowContext(ctx, "SELECT current_setting('search_path')").Scan(&s))
		return s
	}
	conn, err := db.Conn(ctx)
	require.NoError(t, err)
	_, err = conn.ExecContext(ctx, "SET search_path TO "+leakMarker+", public")
	require.NoError(t, err)
	for i := 0; i < 3; i++ {
		require.Contains(t, path(conn), leakMarker, "the holder lost its own state")
	}
	require.NoError(t, conn.Close())
	require.NotContains(t, path(db), leakMarker)
	require.EqualValues(t, 2, p.Authentications())

	tx, err := db.BeginTx(ctx, nil)
	require.NoError(t, err)
	_, err = tx.ExecContext(ctx, "SELECT set_config('search_path', '"+leakMarker+"', false)")
	require.NoError(t, err)
	require.Contains(t, path(tx), leakMarker)
	require.NoError(t, tx.Commit())
	require.NotContains(t, path(db), leakMarker)
	require.EqualValues(t, 3, p.Authentications())
}
