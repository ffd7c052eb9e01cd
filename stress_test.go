package rdsproxy_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rdsproxy/rdsproxy/internal/testdb"
)

// TestCancellationStorm: goroutines cancel queries at random moments (before
// the send, mid-query, while waiting at the cap) on a small pool. Every error
// must be the caller's own context error, nothing may hang, the cap holds,
// and the pool is healthy afterwards. Cancelled queries leave pgx connections
// with deadlines moved and sometimes closed; the checkout probe and the
// retirement policy must cope with every such state.
func TestCancellationStorm(t *testing.T) {
	dsn := testdb.Require(t)
	admin := testdb.Admin(t)
	db, app := openTest(t, dsn, "pool_max_conns", "3")
	const workers, perWorker = 16, 60
	var wg sync.WaitGroup
	var unexpected atomic.Int64
	var firstUnexpected atomic.Value
	var ok, cancelled atomic.Int64
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 42))
			for range perWorker {
				timeout := time.Duration(r.IntN(30000)) * time.Microsecond
				ctx, cancel := context.WithTimeout(context.Background(), timeout)
				var n int
				var err error
				if r.IntN(3) == 0 {
					err = db.QueryRowContext(ctx, "SELECT 1 FROM pg_sleep(0.002)").Scan(&n)
				} else {
					tx, terr := db.BeginTx(ctx, nil)
					err = terr
					if err == nil {
						err = tx.QueryRowContext(ctx, "SELECT $1::int", 1).Scan(&n)
						if err == nil {
							err = tx.Commit()
						} else {
							tx.Rollback()
						}
					}
				}
				cancel()
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || ctx.Err() != nil:
					cancelled.Add(1)
				default:
					if unexpected.Add(1) == 1 {
						firstUnexpected.Store(fmt.Sprintf("%T: %v", err, err))
					}
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute): // a watchdog against hangs, not a timing assertion
		t.Fatal("cancellation storm did not finish: a checkout or query hung")
	}
	t.Logf("ok=%d cancelled=%d unexpected=%d", ok.Load(), cancelled.Load(), unexpected.Load())
	require.Zero(t, unexpected.Load(), "first unexpected error: %v", firstUnexpected.Load())
	require.Positive(t, ok.Load(), "some queries should have succeeded")
	require.Positive(t, cancelled.Load(), "some queries should have been cancelled")
	require.LessOrEqual(t, testdb.CountConns(t, admin, app), 3)
	for range 10 {
		ensureDBValid(t, db)
	}
}
