package rdsproxy_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/rdsproxy/rdsproxy"
	"github.com/rdsproxy/rdsproxy/internal/testdb"
)

// openTest opens a *sql.DB with rdsproxy.Open on dsn and a unique
// application_name, closing it when the test ends.
func openTest(t *testing.T, dsn string, kv ...string) (*sql.DB, string) {
	t.Helper()
	app := testdb.AppName(t)
	db, err := rdsproxy.Open(testdb.WithParams(dsn, append([]string{"application_name", app}, kv...)...))
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return db, app
}

// ensureDBValid proves the pool is usable after a test, like pgx's ensureDBValid.
func ensureDBValid(t *testing.T, db *sql.DB) {
	t.Helper()
	var sum int64
	require.NoError(t, db.QueryRow("SELECT sum(n) FROM generate_series(1, $1::int) n", 100).Scan(&sum))
	require.EqualValues(t, 5050, sum)
}

func TestSQLOpenRegistersDriver(t *testing.T) {
	dsn := testdb.Require(t)
	app := testdb.AppName(t)
	db, err := sql.Open("rdsproxy", testdb.WithParams(dsn, "application_name", app))
	require.NoError(t, err)
	defer db.Close()
	var one int
	require.NoError(t, db.QueryRow("SELECT $1::int", 1).Scan(&one))
	require.Equal(t, 1, one)
	_, isCtx := db.Driver().(interface {
		OpenConnector(string) (interface{}, error)
	})
	_ = isCtx
	ensureDBValid(t, db)
}

// TestPgBouncerTransactionPoolingParameterizedQueries: plain sql.Open through
// PgBouncer in transaction mode with 2 server connections. pgx's default mode
// (named statements per query) fails here; rdsproxy's default must not, and
// must leave no prepared statement on either server connection.
func TestPgBouncerTransactionPoolingParameterizedQueries(t *testing.T) {
	bouncerURL := pgbouncerURL(t)
	const goroutines, perGoroutine = 50, 200

	run := func(db *sql.DB) (errs int64, firstErr atomic.Value) {
		var wg sync.WaitGroup
		for g := range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range perGoroutine {
					var got int
					// Distinct texts per goroutine so a statement cache would create many statements.
					q := fmt.Sprintf("SELECT $1::int + %d", g%10)
					if err := db.QueryRow(q, i).Scan(&got); err != nil {
						if atomic.AddInt64(&errs, 1) == 1 {
							firstErr.Store(err)
						}
					} else if got != i+g%10 {
						atomic.AddInt64(&errs, 1)
					}
				}
			}()
		}
		wg.Wait()
		return errs, firstErr
	}

	t.Run("rdsproxy", func(t *testing.T) {
		db, err := sql.Open("rdsproxy", testdb.WithParams(bouncerURL, "application_name", testdb.AppName(t)))
		require.NoError(t, err)
		defer db.Close()
		errs, first := run(db)
		require.Zero(t, errs, "first error: %v", first.Load())
		require.Zero(t, preparedStatementsOnServers(t, bouncerURL), "named statements left on the server connections")
	})

	// The control: the same workload with plain pgx proves the test can fail.
	t.Run("pgx_default_mode_control", func(t *testing.T) {
		db, err := sql.Open("pgx", testdb.WithParams(bouncerURL, "application_name", testdb.AppName(t)))
		require.NoError(t, err)
		defer db.Close()
		errs, _ := run(db)
		require.NotZero(t, errs, "pgx's cache_statement mode should fail behind transaction pooling")
		t.Logf("raw pgx, default mode: %d of %d queries failed", errs, goroutines*perGoroutine)
	})
}

// preparedStatementsOnServers counts pg_prepared_statements on both of
// PgBouncer's server connections by holding two transactions open at once,
// which forces them onto different server connections.
func preparedStatementsOnServers(t *testing.T, bouncerURL string) int {
	t.Helper()
	ctx := context.Background()
	pids := map[int32]bool{}
	total := 0
	var conns []*pgx.Conn
	var txs []pgx.Tx
	for range 2 {
		c, err := pgx.Connect(ctx, testdb.WithParams(bouncerURL, "default_query_exec_mode", "simple_protocol"))
		require.NoError(t, err)
		conns = append(conns, c)
		tx, err := c.Begin(ctx)
		require.NoError(t, err)
		txs = append(txs, tx)
		var pid int32
		var n int
		require.NoError(t, tx.QueryRow(ctx, "SELECT pg_backend_pid(), (SELECT count(*) FROM pg_prepared_statements)").Scan(&pid, &n))
		pids[pid] = true
		total += n
	}
	for i := range txs {
		txs[i].Rollback(ctx)
		conns[i].Close(ctx)
	}
	require.Len(t, pids, 2, "expected to see both server connections")
	return total
}

// TestConnectionCapUnderPlainSQLOpen: 100 concurrent pg_sleep queries through
// plain sql.Open never open more server connections than the cap plus the 2
// that database/sql may keep idle out of the connector's reach (a caller
// stranded behind those is served by an overflow connection).
func TestConnectionCapUnderPlainSQLOpen(t *testing.T) {
	dsn := testdb.Require(t)
	admin := testdb.Admin(t)
	app := testdb.AppName(t)
	const maxConns = 4
	db, err := sql.Open("rdsproxy", testdb.WithParams(dsn, "application_name", app, "pool_max_conns", fmt.Sprint(maxConns)))
	require.NoError(t, err)
	defer db.Close()

	stop := make(chan struct{})
	var peak atomic.Int64
	var sampler sync.WaitGroup
	sampler.Add(1)
	go func() {
		defer sampler.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			n := int64(testdb.CountConns(t, admin, app))
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()

	var wg sync.WaitGroup
	var errs atomic.Int64
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := db.Exec("SELECT pg_sleep(0.02)"); err != nil {
				errs.Add(1)
			}
		}()
	}
	wg.Wait()
	close(stop)
	sampler.Wait()
	require.Zero(t, errs.Load())
	require.LessOrEqual(t, peak.Load(), int64(maxConns+2), "server connections exceeded the cap and database/sql's idle ones")
	require.GreaterOrEqual(t, peak.Load(), int64(maxConns), "the workload should have reached the cap (else the test proves nothing)")
}

// TestTerminatedBackendsAreReplaced kills every pooled connection's backend;
// the next queries must succeed without the caller seeing an error.
func TestTerminatedBackendsAreReplaced(t *testing.T) {
	dsn := testdb.Require(t)
	admin := testdb.Admin(t)
	db, app := openTest(t, dsn, "pool_max_conns", "4")
	ctx := context.Background()

	// Open all 4 connections and return them to the pool, twice: pgx pings a
	// connection on its first reuse and after 1 s idle, so the second round
	// makes sure no ping will happen and only rdsproxy's socket probe can
	// notice the kill.
	for range 2 {
		var held []*sql.Conn
		for range 4 {
			c, err := db.Conn(ctx)
			require.NoError(t, err)
			require.NoError(t, c.PingContext(ctx))
			held = append(held, c)
		}
		for _, c := range held {
			c.Close()
		}
	}
	require.Equal(t, 4, testdb.CountConns(t, admin, app))
	// Idle connections are what a kill finds in production; one that answered
	// within the last ProbeAfterIdle is not probed (see pool.go). These last
	// answered at connect and the waits below take longer anyway; the sleep
	// keeps the test independent of how fast they are.
	time.Sleep(2 * rdsproxy.ProbeAfterIdle)

	_, err := admin.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1", app)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return testdb.CountConns(t, admin, app) == 0 }, 10*time.Second, 10*time.Millisecond)

	for i := range 20 {
		var got int
		require.NoError(t, db.QueryRowContext(ctx, "SELECT $1::int", i).Scan(&got), "query %d after the kill", i)
		require.Equal(t, i, got)
	}
	ensureDBValid(t, db)
}

// TestRawYieldsStdlibConnAndCopyFrom: the connection is pgx's own, unwrapped.
func TestRawYieldsStdlibConnAndCopyFrom(t *testing.T) {
	dsn := testdb.Require(t)
	db, _ := openTest(t, dsn)
	ctx := context.Background()
	table := fmt.Sprintf("copy_%d", time.Now().UnixNano())
	_, err := db.Exec("CREATE TABLE " + table + " (id int, name text)")
	require.NoError(t, err)
	defer db.Exec("DROP TABLE " + table)

	conn, err := db.Conn(ctx)
	require.NoError(t, err)
	defer conn.Close()
	err = conn.Raw(func(driverConn any) error {
		sc, ok := driverConn.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("driver conn is %T, want *stdlib.Conn", driverConn)
		}
		n, err := sc.Conn().CopyFrom(ctx, pgx.Identifier{table}, []string{"id", "name"},
			pgx.CopyFromRows([][]any{{1, "a"}, {2, "b"}, {3, "c"}}))
		if err != nil {
			return err
		}
		if n != 3 {
			return fmt.Errorf("copied %d rows", n)
		}
		return nil
	})
	require.NoError(t, err)
	var count int
	require.NoError(t, db.QueryRow("SELECT count(*) FROM "+table).Scan(&count))
	require.Equal(t, 3, count)
}

// TestCloseLeavesNothing: after db.Close no server connection and no goroutine
// of ours remains.
func TestCloseLeavesNothing(t *testing.T) {
	dsn := testdb.Require(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	admin := testdb.Admin(t)
	app := testdb.AppName(t)
	db, err := rdsproxy.Open(testdb.WithParams(dsn, "application_name", app))
	require.NoError(t, err)
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() { defer wg.Done(); db.Exec("SELECT pg_sleep(0.01)") }()
	}
	wg.Wait()
	require.Positive(t, testdb.CountConns(t, admin, app))
	require.NoError(t, db.Close())
	require.Eventually(t, func() bool { return testdb.CountConns(t, admin, app) == 0 }, 10*time.Second, 10*time.Millisecond)
	_, err = db.Exec("SELECT 1")
	require.Error(t, err)
}

// TestOpenSetsDatabaseSQLKnobs: Open makes db.Stats agree with the config.
func TestOpenSetsDatabaseSQLKnobs(t *testing.T) {
	dsn := testdb.Require(t)
	db, _ := openTest(t, dsn, "pool_max_conns", "7")
	require.Equal(t, 7, db.Stats().MaxOpenConnections)
}

func TestLambdaDefaults(t *testing.T) {
	dsn := testdb.Require(t)
	t.Setenv("AWS_LAMBDA_FUNCTION_NAME", "test-fn")
	db, _ := openTest(t, dsn)
	require.Equal(t, rdsproxy.DefaultLambdaMaxConns, db.Stats().MaxOpenConnections)

	c, err := rdsproxy.NewConnector(dsn)
	require.NoError(t, err)
	defer c.Close()
	require.EqualValues(t, rdsproxy.DefaultLambdaMaxConns, c.Config().MaxConns,
		"the connector caps at the configured cap, default or not; overflow serves a caller stranded at it")
	require.Equal(t, rdsproxy.DefaultLambdaMaxConnIdleTime, c.Config().MaxConnIdleTime)

	c2, err := rdsproxy.NewConnector(testdb.WithParams(dsn, "pool_max_conns", "1"))
	require.NoError(t, err)
	defer c2.Close()
	require.EqualValues(t, 1, c2.Config().MaxConns, "an explicit cap is honoured")
}

func TestConnectAfterCloseIsErrClosed(t *testing.T) {
	dsn := testdb.Require(t)
	c, err := rdsproxy.NewConnector(dsn)
	require.NoError(t, err)
	require.NoError(t, c.Close())
	require.NoError(t, c.Close(), "Close twice is fine")
	_, err = c.Connect(context.Background())
	require.True(t, errors.Is(err, rdsproxy.ErrClosed), "got %v", err)
}

func TestWaitAtCapHonoursContext(t *testing.T) {
	dsn := testdb.Require(t)
	c, err := rdsproxy.NewConnector(testdb.WithParams(dsn, "application_name", testdb.AppName(t), "pool_max_conns", "1"))
	require.NoError(t, err)
	db := sql.OpenDB(c)
	defer db.Close()
	ctx := context.Background()
	held, err := db.Conn(ctx)
	require.NoError(t, err)
	defer held.Close()
	wctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	_, err = db.ExecContext(wctx, "SELECT 1")
	require.Error(t, err)
	require.True(t, errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "deadline"), "got %v", err)
}

// TestCloseWithConnectionHeld: db.Close must not wait for a *sql.Conn that is
// still held (database/sql closes it on release), and the connection goes
// away on the server once it is released.
func TestCloseWithConnectionHeld(t *testing.T) {
	dsn := testdb.Require(t)
	admin := testdb.Admin(t)
	app := testdb.AppName(t)
	db, err := rdsproxy.Open(testdb.WithParams(dsn, "application_name", app))
	require.NoError(t, err)
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	require.NoError(t, err)
	require.NoError(t, conn.PingContext(ctx))

	closed := make(chan error, 1)
	go func() { closed <- db.Close() }()
	select {
	case err := <-closed:
		require.NoError(t, err)
	case <-time.After(30 * time.Second): // watchdog, not a timing assertion
		t.Fatal("db.Close blocked on a held connection")
	}
	require.NoError(t, conn.Close())
	require.Eventually(t, func() bool { return testdb.CountConns(t, admin, app) == 0 }, 10*time.Second, 10*time.Millisecond)
}
