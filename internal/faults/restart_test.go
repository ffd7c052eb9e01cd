package faults

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/rdsproxy/rdsproxy/internal/testdb"
)

// steadyLoad runs workers goroutines that query db in a loop until stopped,
// and tracks per worker the last success, so a test can wait until every
// worker has succeeded after an event.
type steadyLoad struct {
	stop    atomic.Bool
	wg      sync.WaitGroup
	ok      atomic.Int64
	errs    atomic.Int64
	lastOK  []atomic.Int64 // per worker: UnixNano of the last success
	lastErr errBox
}

func startLoad(db *sql.DB, workers int) *steadyLoad {
	l := &steadyLoad{lastOK: make([]atomic.Int64, workers)}
	for w := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for !l.stop.Load() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err := queryOne(ctx, db)
				cancel()
				if err != nil {
					l.errs.Add(1)
					l.lastErr.Store(err)
					time.Sleep(5 * time.Millisecond) // a down service answers at once: do not spin
					continue
				}
				l.ok.Add(1)
				l.lastOK[w].Store(time.Now().UnixNano())
			}
		}()
	}
	return l
}

// allSucceededSince reports whether every worker succeeded after t.
func (l *steadyLoad) allSucceededSince(t time.Time) bool {
	for i := range l.lastOK {
		if l.lastOK[i].Load() <= t.UnixNano() {
			return false
		}
	}
	return true
}

func (l *steadyLoad) halt() { l.stop.Store(true); l.wg.Wait() }

// checkNothingHalfOpen checks out every connection the pool may hold at once
// and runs a statement on each: none may be a dead connection handed out as
// alive. It then closes db and checks that no goroutine is left behind.
func checkNothingHalfOpen(t *testing.T, db *sql.DB, maxConns int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conns := make([]*sql.Conn, 0, maxConns)
	for range maxConns {
		c, err := db.Conn(ctx)
		require.NoError(t, evidence.err(err))
		conns = append(conns, c)
	}
	for _, c := range conns {
		require.NoError(t, queryOne(ctx, c))
	}
	for _, c := range conns {
		require.NoError(t, c.Close())
	}
	st := db.Stats()
	require.LessOrEqual(t, st.OpenConnections, maxConns)
	require.Zero(t, st.InUse)
}

// TestPgBouncerRestart proves that when the PgBouncer in front of the
// database restarts (immediate shutdown, same address) under steady load, the
// pool recovers by itself once it is back: every worker succeeds again
// within a bounded wait, with no restart of the *sql.DB; afterwards every
// pooled connection works (nothing half-open), and closing the pool leaves no
// goroutine and no server connection.
func TestPgBouncerRestart(t *testing.T) {
	testdb.Require(t)
	restarts := scale(2, 20)
	b := testdb.StartPgBouncer(t, 4)
	defer b.Stop()
	app := testdb.AppName(t)
	const maxConns, workers = 4, 8
	db, err := openRaw(testdb.WithParams(withPassword(b.URL()), "application_name", app, "pool_max_conns", fmt.Sprint(maxConns)))
	require.NoError(t, err)

	load := startLoad(db, workers)
	defer load.halt()
	var recoveries []time.Duration
	for i := range restarts {
		require.Eventually(t, func() bool {
			return load.allSucceededSince(time.Now().Add(-time.Hour)) && load.ok.Load() > int64(50*(i+1))
		},
			60*time.Second, 5*time.Millisecond, "load never got going: %v", load.lastErr.Load())
		b.Restart(t)
		back := time.Now()
		recoveries = append(recoveries, waitRecovered(t, load, back, fmt.Sprintf("PgBouncer restart %d", i+1)))
	}
	load.halt()
	checkNothingHalfOpen(t, db, maxConns)
	require.NoError(t, db.Close())
	b.Stop()
	goleak.VerifyNone(t, goleak.IgnoreCurrent())
	t.Logf("RESULT case=pgbouncer_restart restarts=%d workers=%d queries_ok=%d errors_during_outages=%d recovery_max=%s",
		restarts, workers, load.ok.Load(), load.errs.Load(), maxDuration(recoveries))
}

// waitRecovered waits (bounded) until every worker succeeded after back and
// returns how long that took, as observed by the polling.
func waitRecovered(t *testing.T, l *steadyLoad, back time.Time, what string) time.Duration {
	t.Helper()
	var took time.Duration
	require.Eventually(t, func() bool {
		if l.allSucceededSince(back) {
			took = time.Since(back).Round(time.Millisecond)
			return true
		}
		return false
	}, 60*time.Second, 5*time.Millisecond, "the pool did not recover after %s: %v", what, l.lastErr.Load())
	return took
}

func maxDuration(ds []time.Duration) time.Duration {
	var m time.Duration
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}

// openRaw is openDB without the test cleanup (the caller closes, so that
// the goroutine check can run after Close).
func openRaw(dsn string) (*sql.DB, error) {
	db, err := openWithLogger(dsn)
	return db, evidence.err(err)
}

// TestPostgresRestart proves that when PostgreSQL itself restarts (fast
// shutdown: every backend terminated, the port refuses connections until the
// server is up) under steady load, the pool recovers by itself once the
// server accepts connections again, with nothing half-open and no goroutine
// left. It restarts the local cluster, which breaks every other test running
// at the same time, so it runs only with RDSPROXY_FAULTS_RESTART_PG=1, alone
// (test.sh runs it after the parallel package tests), as root or postgres.
func TestPostgresRestart(t *testing.T) {
	if os.Getenv("RDSPROXY_FAULTS_RESTART_PG") != "1" {
		t.Skip("restarts the local PostgreSQL cluster: set RDSPROXY_FAULTS_RESTART_PG=1 and run it alone " +
			"(go test -count=1 -run TestPostgresRestart ./internal/faults/)")
	}
	dsn := testdb.Require(t)
	version, cluster := clusterOf(t)
	pgctl := func(action string) error {
		out, err := exec.Command("pg_ctlcluster", "--skip-systemctl-redirect", "-m", "fast", version, cluster, action).CombinedOutput()
		if err != nil {
			return fmt.Errorf("pg_ctlcluster %s %s %s: %v: %s", version, cluster, action, err, out)
		}
		return nil
	}
	// Whatever happens, leave the server running.
	t.Cleanup(func() {
		if serverUp(dsn) {
			return
		}
		if err := pgctl("start"); err != nil {
			t.Errorf("could not start PostgreSQL again: %v", err)
		}
	})
	restarts := scale(1, 5)
	app := testdb.AppName(t)
	const maxConns, workers = 4, 8
	db, err := openRaw(testdb.WithParams(withPassword(dsn), "application_name", app, "pool_max_conns", fmt.Sprint(maxConns)))
	require.NoError(t, err)
	load := startLoad(db, workers)
	defer load.halt()
	var recoveries []time.Duration
	for i := range restarts {
		require.Eventually(t, func() bool { return load.ok.Load() > int64(50*(i+1)) }, 60*time.Second, 5*time.Millisecond,
			"load never got going: %v", load.lastErr.Load())
		require.NoError(t, pgctl("restart"))
		require.Eventually(t, func() bool { return serverUp(dsn) }, 60*time.Second, 50*time.Millisecond, "PostgreSQL did not come back")
		back := time.Now()
		recoveries = append(recoveries, waitRecovered(t, load, back, fmt.Sprintf("PostgreSQL restart %d", i+1)))
	}
	load.halt()
	checkNothingHalfOpen(t, db, maxConns)
	require.NoError(t, db.Close())
	goleak.VerifyNone(t, goleak.IgnoreCurrent())
	t.Logf("RESULT case=postgres_restart restarts=%d workers=%d queries_ok=%d errors_during_outages=%d recovery_max=%s",
		restarts, workers, load.ok.Load(), load.errs.Load(), maxDuration(recoveries))
}

// clusterOf finds the Debian cluster (version, name) of the test database
// from its cluster_name setting ("15/main"), or RDSPROXY_PG_CLUSTER.
func clusterOf(t *testing.T) (string, string) {
	name := os.Getenv("RDSPROXY_PG_CLUSTER")
	if name == "" {
		admin := testdb.Admin(t)
		require.NoError(t, admin.QueryRow(context.Background(), "SHOW cluster_name").Scan(&name))
		require.NoError(t, admin.Close(context.Background()))
	}
	version, cluster, ok := strings.Cut(name, "/")
	if !ok {
		t.Skipf("cannot tell the Debian cluster from cluster_name %q: set RDSPROXY_PG_CLUSTER=<version>/<name>", name)
	}
	if _, err := exec.LookPath("pg_ctlcluster"); err != nil {
		t.Skip("pg_ctlcluster is not installed")
	}
	return version, cluster
}

func serverUp(dsn string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	db, err := openWithLogger(testdb.WithParams(dsn, "application_name", "rdsproxy_admin_faults_probe"))
	if err != nil {
		return false
	}
	defer db.Close()
	return db.PingContext(ctx) == nil
}
