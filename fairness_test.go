package rdsproxy_test

import (
	"database/sql"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rdsproxy/rdsproxy/internal/testdb"
)

// TestNoStarvationUnderPlainSQLOpen: under plain sql.Open the connector, not
// database/sql, enforces the cap. A caller waiting in the connector must not
// be starved by callers that keep reusing connections from database/sql's own
// idle list: with more workers than connections sharing a fixed amount of
// work, every worker gets a fair share (a count, not a duration).
func TestNoStarvationUnderPlainSQLOpen(t *testing.T) {
	dsn := testdb.Require(t)
	const maxConns, workers, total = 3, 6, 600
	db, err := sql.Open("rdsproxy", testdb.WithParams(dsn, "application_name", testdb.AppName(t),
		"pool_max_conns", fmt.Sprint(maxConns)))
	require.NoError(t, err)
	defer db.Close()

	var next atomic.Int64
	done := make([]int, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= total {
				if _, err := db.Exec("SELECT pg_sleep(0.002)"); err != nil {
					t.Error(err)
					return
				}
				done[w]++
			}
		}()
	}
	wg.Wait()
	t.Logf("queries per worker: %v", done)
	for w, n := range done {
		// A fair share is total/workers = 100; starvation shows as a worker
		// left with a handful while others loop.
		require.GreaterOrEqual(t, n, total/workers/4, "worker %d got %d of %d queries: starved", w, n, total)
	}
}
