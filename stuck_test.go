package rdsproxy

import (
	"context"
	"database/sql"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/rdsproxy/rdsproxy/internal/testdb"
)

// callsDeadline is how long a whole workload of small queries may take before
// the test declares a hang: minutes of slack over the seconds it needs on a
// loaded machine under -race. It is a hang detector, not a speed assertion.
const callsDeadline = 2 * time.Minute

// runCalls runs calls queries on each of workers goroutines, each with
// context.Background(), and fails with a goroutine dump if they have not all
// returned by callsDeadline. It returns the errors the calls got.
func runCalls(t *testing.T, db *sql.DB, workers, calls int) []error {
	t.Helper()
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range calls {
				var one int
				if err := db.QueryRowContext(context.Background(), "SELECT 1").Scan(&one); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return errs
	case <-time.After(callsDeadline):
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		t.Fatalf("%d workers x %d calls did not all return within %s (db.Stats: %+v); goroutines:\n%s",
			workers, calls, callsDeadline, db.Stats(), buf)
		return nil
	}
}

// smallCapCases are the caps at or below database/sql's 2 idle connections,
// and 3, with from 2 to 16 workers.
var smallCapCases = []struct{ maxConns, workers int }{
	{1, 2}, {1, 5}, {1, 16},
	{2, 3}, {2, 8}, {2, 16},
	{3, 4}, {3, 16},
}

const callsPerWorker = 150

// TestNoHangAtSmallCapUnderPlainSQLOpen: under sql.Open without
// SetMaxOpenConns, database/sql keeps released connections idle where the
// connector cannot reach them, and a caller waiting in the connector at the
// cap was never served once the others stopped querying. Every call must
// return, and be served: the connector opens an overflow connection for a
// stranded caller rather than fail it.
func TestNoHangAtSmallCapUnderPlainSQLOpen(t *testing.T) {
	dsn := testdb.Require(t)
	for _, tc := range smallCapCases {
		t.Run(fmt.Sprintf("cap%d_workers%d", tc.maxConns, tc.workers), func(t *testing.T) {
			c, err := NewConnector(testdb.WithParams(dsn, "application_name", testdb.AppName(t),
				"pool_max_conns", fmt.Sprint(tc.maxConns)))
			require.NoError(t, err)
			db := sql.OpenDB(c) // what sql.Open("rdsproxy", dsn) does, with the connector in reach
			defer db.Close()

			errs := runCalls(t, db, tc.workers, callsPerWorker)
			require.Empty(t, errs, "every call must be served")
			dials := c.policy.registry.overflowDials.Load()
			t.Logf("overflow connections opened: %d for %d calls", dials, tc.workers*callsPerWorker)
			// Progress does not come from overflow connections: the waiters
			// are served by connections handed back, and only a waiter left
			// behind when the others stop gets a connection of its own.
			require.Less(t, dials, int64(tc.workers*callsPerWorker/10), "overflow must be the exception")
		})
	}
}

// TestNoHangWithSQLOpenLiteral is the reported case verbatim: sql.Open,
// pool_max_conns=1, two goroutines, QueryRowContext with Background.
func TestNoHangWithSQLOpenLiteral(t *testing.T) {
	dsn := testdb.Require(t)
	db, err := sql.Open("rdsproxy", testdb.WithParams(dsn, "application_name", testdb.AppName(t), "pool_max_conns", "1"))
	require.NoError(t, err)
	defer db.Close()
	require.Empty(t, runCalls(t, db, 2, callsPerWorker))
}

// TestSmallCapWithDatabaseSQLLimits: the documented ways keep working at the
// same small caps: sql.Open followed by db.SetMaxOpenConns(cap), and Open.
func TestSmallCapWithDatabaseSQLLimits(t *testing.T) {
	dsn := testdb.Require(t)
	for _, tc := range smallCapCases {
		t.Run(fmt.Sprintf("SetMaxOpenConns/cap%d_workers%d", tc.maxConns, tc.workers), func(t *testing.T) {
			db, err := sql.Open("rdsproxy", testdb.WithParams(dsn, "application_name", testdb.AppName(t),
				"pool_max_conns", fmt.Sprint(tc.maxConns)))
			require.NoError(t, err)
			defer db.Close()
			db.SetMaxOpenConns(tc.maxConns)
			require.Empty(t, runCalls(t, db, tc.workers, callsPerWorker))
		})
		t.Run(fmt.Sprintf("Open/cap%d_workers%d", tc.maxConns, tc.workers), func(t *testing.T) {
			db, err := Open(testdb.WithParams(dsn, "application_name", testdb.AppName(t),
				"pool_max_conns", fmt.Sprint(tc.maxConns)))
			require.NoError(t, err)
			defer db.Close()
			require.Empty(t, runCalls(t, db, tc.workers, callsPerWorker))
		})
	}
}

// openPlain opens a *sql.DB the way sql.Open does (database/sql's defaults, no
// SetMaxOpenConns), with the connector in reach and its wait bound shortened.
func openPlain(t *testing.T, maxWait time.Duration, opts []Option, kv ...string) (*sql.DB, *Connector, *retirements) {
	t.Helper()
	dsn := testdb.WithParams(testdb.Require(t), append([]string{"application_name", testdb.AppName(t)}, kv...)...)
	c, err := NewConnector(dsn, opts...)
	require.NoError(t, err)
	c.maxWait = maxWait
	r := &retirements{}
	c.policy.onRetire = r.add
	db := sql.OpenDB(c)
	t.Cleanup(func() { db.Close() })
	return db, c, r
}

type retirements struct {
	mu      sync.Mutex
	reasons []string
}

func (r *retirements) add(reason retireReason) {
	r.mu.Lock()
	r.reasons = append(r.reasons, reason.String())
	r.mu.Unlock()
}

func (r *retirements) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.reasons...)
}

func connPID(t *testing.T, conn *sql.Conn) int {
	t.Helper()
	var pid int
	require.NoError(t, conn.QueryRowContext(context.Background(), "SELECT pg_backend_pid()").Scan(&pid))
	return pid
}

// TestOverflowServesCallerBehindQuietConn: the one connection of a cap of 1
// is held, quiet, in a *sql.Conn. A caller that has waited is served by an
// overflow connection (a new backend, dialed with the connector's token hook)
// rather than left waiting; the overflow connection is retired at its first
// reuse and its slot freed, and the held connection is never shared.
func TestOverflowServesCallerBehindQuietConn(t *testing.T) {
	dials := &dialCounter{}
	db, c, retired := openPlain(t, time.Minute, []Option{WithTracer(dials)}, "pool_max_conns", "1")
	ctx := context.Background()

	held, err := db.Conn(ctx)
	require.NoError(t, err)
	heldPID := connPID(t, held)

	waiter, err := db.Conn(ctx) // waits at the cap, then gets an overflow connection
	require.NoError(t, err)
	overflowPID := connPID(t, waiter)
	require.NotEqual(t, heldPID, overflowPID, "one physical connection must never have two holders")
	require.Equal(t, heldPID, connPID(t, held), "the held connection is still its holder's")
	require.EqualValues(t, 1, c.policy.registry.overflowDials.Load())
	require.EqualValues(t, 1, c.policy.registry.overflowOpen.Load())
	require.EqualValues(t, 2, dials.n.Load(), "the overflow dial goes through the connector's dial hooks like a pooled one")

	// Both into database/sql's free list; the next caller takes the overflow
	// connection first (database/sql reuses the most recently released).
	require.NoError(t, held.Close())
	require.NoError(t, waiter.Close())
	var pid int
	require.NoError(t, db.QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&pid))
	require.Equal(t, heldPID, pid, "the overflow connection is retired at its first reuse, the pooled one serves")
	require.Equal(t, []string{retireOverflow.String()}, retired.list())
	require.EqualValues(t, 0, c.policy.registry.overflowOpen.Load(), "the retired overflow connection gave its slot back")
}

// TestOverflowConnClosedWithDB: db.Close while an overflow connection is out
// closes it when its holder lets go, and frees its slot.
func TestOverflowConnClosedWithDB(t *testing.T) {
	db, c, _ := openPlain(t, time.Minute, nil, "pool_max_conns", "1")
	ctx := context.Background()
	held, err := db.Conn(ctx)
	require.NoError(t, err)
	waiter, err := db.Conn(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 1, c.policy.registry.overflowOpen.Load())
	require.NoError(t, db.Close())
	require.NoError(t, waiter.Close())
	require.NoError(t, held.Close())
	require.EqualValues(t, 0, c.policy.registry.overflowOpen.Load())
	require.Eventually(t, func() bool { return c.policy.tracked() == 0 }, callsDeadline, 10*time.Millisecond,
		"every connection, pooled or overflow, is closed")
}

// tracked counts the connections in the registry.
func (p *poolPolicy) tracked() int {
	p.registry.mu.Lock()
	defer p.registry.mu.Unlock()
	return len(p.registry.conns)
}

// TestNoOverflowPastWork: connections running a statement or inside a
// transaction are at work; a waiter behind them is not given a connection
// past the cap, and after the bound it gets ErrPoolWaitTimeout, which says
// what to do, instead of waiting forever under context.Background().
func TestNoOverflowPastWork(t *testing.T) {
	for _, work := range []string{"transaction", "statement"} {
		t.Run(work, func(t *testing.T) {
			db, c, _ := openPlain(t, 2*time.Second, nil, "pool_max_conns", "1")
			ctx := context.Background()
			release := make(chan struct{})
			busy := make(chan error, 1)
			switch work {
			case "transaction":
				tx, err := db.BeginTx(ctx, nil)
				require.NoError(t, err)
				_, err = tx.ExecContext(ctx, "SELECT 1")
				require.NoError(t, err)
				go func() { <-release; busy <- tx.Rollback() }()
			case "statement":
				started := make(chan struct{})
				go func() {
					conn, err := db.Conn(ctx)
					close(started)
					if err != nil {
						busy <- err
						return
					}
					// Until the waiter below has its answer: cancelling the
					// context interrupts pg_sleep.
					sctx, cancel := context.WithCancel(ctx)
					go func() { <-release; cancel() }()
					_, _ = conn.ExecContext(sctx, "SELECT pg_sleep(60)")
					busy <- conn.Close()
				}()
				<-started
				require.Eventually(t, func() bool {
					return c.pool.Stat().AcquiredConns() == 1 && c.policy.atWork() == 1
				}, callsDeadline, 10*time.Millisecond)
			}
			var one int
			err := db.QueryRowContext(ctx, "SELECT 1").Scan(&one)
			close(release)
			require.ErrorIs(t, err, ErrPoolWaitTimeout)
			require.ErrorContains(t, err, "SetMaxOpenConns")
			require.False(t, IsAmbiguousCommit(err), "the statement never reached the server")
			require.EqualValues(t, 0, c.policy.registry.overflowDials.Load(), "no connection past the cap while the cap is at work")
			require.NoError(t, <-busy)
		})
	}
}

// TestOverflowCeiling: with the cap held quiet and maxOverflowConns overflow
// connections held too, a further caller is not given another one: at most
// maxOverflowConns connections are ever open past the cap. It gets
// ErrPoolWaitTimeout after the bound.
func TestOverflowCeiling(t *testing.T) {
	h := newOtelHarness(t)
	db, c, _ := openPlain(t, time.Second, h.options(), "pool_max_conns", "1")
	ctx := context.Background()
	var held []*sql.Conn
	for range 1 + maxOverflowConns {
		conn, err := db.Conn(ctx)
		require.NoError(t, err)
		held = append(held, conn)
	}
	require.EqualValues(t, maxOverflowConns, c.policy.registry.overflowOpen.Load())
	_, err := db.Conn(ctx)
	require.ErrorIs(t, err, ErrPoolWaitTimeout)
	require.EqualValues(t, maxOverflowConns, c.policy.registry.overflowDials.Load())
	require.EqualValues(t, 1, sumValue(t, h.collect(t)["db.client.connection.timeouts"]), "counted as a checkout timeout")
	for _, conn := range held {
		require.NoError(t, conn.Close())
	}
}

// TestOverflowObservable: an overflow connection is counted in the
// retirement metric under reason "overflow", and it runs the pinning check
// like a pooled connection (its tracer is the connector's).
func TestOverflowObservable(t *testing.T) {
	h := newOtelHarness(t)
	var mu sync.Mutex
	var pins []PinEvent
	opts := append(h.options(), WithPinHandler(func(e PinEvent) { mu.Lock(); pins = append(pins, e); mu.Unlock() }))
	c, err := NewConnector(testdb.WithParams(testdb.Require(t), "application_name", testdb.AppName(t),
		"pool_max_conns", "1", "pin_check", "warn"), opts...)
	require.NoError(t, err)
	db := sql.OpenDB(c)
	defer db.Close()
	ctx := context.Background()

	held, err := db.Conn(ctx)
	require.NoError(t, err)
	waiter, err := db.Conn(ctx) // an overflow connection
	require.NoError(t, err)
	require.EqualValues(t, 1, c.policy.registry.overflowDials.Load())
	_, err = waiter.ExecContext(ctx, "SET search_path TO public")
	require.NoError(t, err)
	// Pin events are delivered on the checker's background goroutine.
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(pins) == 1
	}, 30*time.Second, 5*time.Millisecond, "the pinning check runs on an overflow connection")

	require.NoError(t, held.Close())
	require.NoError(t, waiter.Close())
	_, err = db.ExecContext(ctx, "SELECT 1") // reuses, and retires, the overflow connection
	require.NoError(t, err)
	retired := h.collect(t)[metricConnectionsRetired]
	require.EqualValues(t, 1, sumValue(t, retired, attrRetireReason.String(retireOverflow.String())))
}

// dialCounter is a caller's pgx tracer that counts dials: the connector chains
// it, so every physical connect, pooled or overflow, reaches it.
type dialCounter struct{ n atomic.Int64 }

func (d *dialCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return ctx
}
func (d *dialCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (d *dialCounter) TraceConnectStart(ctx context.Context, _ pgx.TraceConnectStartData) context.Context {
	d.n.Add(1)
	return ctx
}
func (d *dialCounter) TraceConnectEnd(context.Context, pgx.TraceConnectEndData) {}
