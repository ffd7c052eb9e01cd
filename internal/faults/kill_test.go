package faults

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/rdsproxy/rdsproxy"
	"github.com/rdsproxy/rdsproxy/internal/testdb"
)

// writeOutcome is what a writer saw for one client-generated id.
type writeOutcome uint8

const (
	wAcked     writeOutcome = iota + 1 // COMMIT returned nil
	wFailedPre                         // BEGIN or INSERT failed: no COMMIT was sent
	wCommitErr                         // COMMIT failed, and IsAmbiguousCommit said "not committed"
	wAmbiguous                         // COMMIT failed, and IsAmbiguousCommit said "unknown"
)

// TestBackendsKilledUnderLoad proves that killing every backend of the
// application (pg_terminate_backend, five times in the bounded run) under
// load from 20 writers and 20 readers loses no acknowledged write: every
// insert whose COMMIT returned nil is in the table, and every insert that
// returned an error is absent unless the error was reported as an ambiguous
// commit (rdsproxy.IsAmbiguousCommit). driver.ErrBadConn never hides a commit
// that may have happened: no row whose COMMIT returned it is present. Readers
// recover by themselves: each sees at most one error per kill (the statement
// that was running on a killed backend), none once a kill has completed, and
// every reader and writer succeeds again after the last kill. Half the readers
// use rdsproxy.RetryRead (the read is idempotent), which usually hides
// even that one error.
func TestBackendsKilledUnderLoad(t *testing.T) {
	dsn := testdb.Require(t)
	app := testdb.AppName(t)
	admin := testdb.Admin(t)
	ctx, cancelAll := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancelAll()
	table := fmt.Sprintf("faults_kill_%d", time.Now().UnixNano())
	_, err := admin.Exec(ctx, "CREATE TABLE "+table+" (id text PRIMARY KEY, writer int NOT NULL)")
	require.NoError(t, err)
	t.Cleanup(func() { admin.Exec(context.Background(), "DROP TABLE IF EXISTS "+table) })

	const writers, readers = 20, 20
	kills := scale(5, 50)
	base := withPassword(testdb.WithParams(dsn, "application_name", app))
	// Two pools with the same application_name: the killer terminates both.
	wdb := openDB(t, testdb.WithParams(base, "pool_max_conns", "8"))
	rdb := openDB(t, testdb.WithParams(base, "pool_max_conns", "6"))

	var (
		stop         atomic.Bool
		epoch        atomic.Int64 // number of kills started
		completed    atomic.Int64 // number of kills whose backends are all gone
		unexplained  int
		acked, reads atomic.Int64
		mu           sync.Mutex
		outcomes     = map[string]writeOutcome{}
		commitErrs   []error
		badConnIDs   []string
		readErrs     = make([]map[int64]int, readers) // reader -> epoch -> errors
		readErrTotal atomic.Int64
		lastErr      errBox
		wg           sync.WaitGroup
	)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				id := fmt.Sprintf("w%02d-%06d", w, i)
				// Bounded, so that a stuck statement fails the test instead of hanging it.
				opCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
				out, cerr := insertOne(opCtx, wdb, table, id, w)
				cancel()
				mu.Lock()
				outcomes[id] = out
				if cerr != nil {
					commitErrs = append(commitErrs, cerr)
					if errors.Is(cerr, driver.ErrBadConn) {
						badConnIDs = append(badConnIDs, id)
					}
				}
				mu.Unlock()
				if out == wAcked {
					acked.Add(1)
				}
			}
		}()
	}
	for r := range readers {
		readErrs[r] = map[int64]int{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				var n int64
				e, settled := epoch.Load(), completed.Load()
				opCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
				read := func(ctx context.Context) error {
					return rdb.QueryRowContext(ctx, "SELECT count(*) FROM "+table+" WHERE writer = $1", r%writers).Scan(&n)
				}
				var err error
				if r%2 == 1 {
					// Half the readers declare their read idempotent and use
					// rdsproxy.RetryRead, as the docs advise for reads.
					err = rdsproxy.RetryRead(opCtx, rdsproxy.RetryPolicy{}, read)
				} else {
					err = read(opCtx)
				}
				cancel()
				if err != nil {
					evidence.err(err)
					lastErr.Store(err)
					readErrTotal.Add(1)
					// The error belongs to the kill under way when it came
					// back, not to the epoch the statement started in: a
					// statement started just after kill k completed can be
					// failed by kill k+1, and counting that against k would
					// report two errors for one kill.
					failedIn := epoch.Load()
					mu.Lock()
					readErrs[r][failedIn]++
					// No kill was in progress when the statement started, and
					// none began before it failed: nothing explains the error.
					if e == settled && failedIn == e {
						unexplained++
						t.Errorf("reader %d: error outside any kill: %v", r, err)
					}
					mu.Unlock()
					continue
				}
				reads.Add(1)
			}
		}()
	}

	// progress waits (bounded) until writers and readers both made headway.
	progress := func(what string) {
		a0, r0 := acked.Load(), reads.Load()
		require.Eventually(t, func() bool { return acked.Load() >= a0+40 && reads.Load() >= r0+40 },
			60*time.Second, 5*time.Millisecond, "no progress %s (last read error: %v)", what, lastErr.Load())
	}
	defer func() { stop.Store(true); wg.Wait() }() // also when an assertion fails
	killed := 0
	for k := range kills {
		progress(fmt.Sprintf("before kill %d", k+1))
		epoch.Add(1)
		// Signal every backend first, then wait until all are gone: a kill is
		// one event, as in a failover, not a sequence of waits.
		rows, err := admin.Query(ctx, "WITH t AS MATERIALIZED (SELECT pid FROM pg_stat_activity WHERE application_name = $1 "+
			"AND pid <> pg_backend_pid()) SELECT pid FROM t WHERE pg_terminate_backend(pid)", app)
		require.NoError(t, err)
		pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
		require.NoError(t, err)
		require.Eventually(t, func() bool {
			var left int
			return admin.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)", pids).Scan(&left) == nil && left == 0
		}, 30*time.Second, time.Millisecond, "killed backends did not exit")
		n := len(pids)
		completed.Store(epoch.Load())
		killed += n
	}
	progress("after the last kill") // recovery, with no restart of anything
	stop.Store(true)
	wg.Wait()

	// Every outcome against the table.
	rows, err := admin.Query(ctx, "SELECT id FROM "+table)
	require.NoError(t, err)
	present, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	inTable := make(map[string]bool, len(present))
	for _, id := range present {
		inTable[id] = true
	}
	var lost, phantom, ambiguousCommitted, ambiguousAbsent, preFailed, commitFailed int
	for id, out := range outcomes {
		switch out {
		case wAcked:
			if !inTable[id] {
				lost++
				t.Errorf("acknowledged write %s is not in the table", id)
			}
		case wFailedPre, wCommitErr:
			if out == wFailedPre {
				preFailed++
			} else {
				commitFailed++
			}
			if inTable[id] {
				phantom++
				t.Errorf("write %s returned a non-ambiguous error but is in the table", id)
			}
		case wAmbiguous:
			if inTable[id] {
				ambiguousCommitted++
			} else {
				ambiguousAbsent++
			}
		}
	}
	for _, id := range badConnIDs {
		require.False(t, inTable[id], "COMMIT of %s returned driver.ErrBadConn but the row was committed", id)
	}
	for id := range inTable {
		_, known := outcomes[id]
		require.True(t, known, "row %s in the table was never attempted", id)
	}

	// Readers: an error only while a kill is in progress, and at most one per
	// reader per kill. The kill signals the backends one after another, so a
	// sibling can look healthy (even answer a ping) and be killed while
	// running the reader's next statement. After the first death the pool
	// therefore retires every connection opened before it, and a reader
	// whose statement failed gets a connection dialled after that death,
	// which the kill (its backends listed before the first signal) never
	// sees.
	maxPerKill, perKillOverOne, retryMaxPerKill := 0, 0, 0
	for r := range readers {
		for _, n := range readErrs[r] {
			if r%2 == 1 {
				retryMaxPerKill = max(retryMaxPerKill, n)
				continue
			}
			maxPerKill = max(maxPerKill, n)
			if n > 1 {
				perKillOverOne++
			}
		}
	}
	require.Zero(t, unexplained, "readers saw errors outside the kills")
	require.LessOrEqual(t, maxPerKill, 1, "a reader saw more than one error within one kill")
	require.LessOrEqual(t, retryMaxPerKill, 1, "a RetryRead reader saw more than one error within one kill")
	require.Positive(t, killed, "the kills found no backend to terminate")

	t.Logf("RESULT case=backends_killed kills=%d backends_killed=%d writes_attempted=%d acked=%d lost_acked=%d "+
		"failed_before_commit=%d commit_failed_not_committed=%d commit_ambiguous=%d ambiguous_committed=%d ambiguous_absent=%d "+
		"commit_errors_badconn=%d phantom=%d reads_ok=%d read_errors=%d read_errors_after_kill_completed=%d max_read_errors_per_reader_per_kill=%d reader_kills_with_2plus_errors=%d retryread_max_errors_per_kill=%d",
		kills, killed, len(outcomes), acked.Load(), lost, preFailed, commitFailed, ambiguousCommitted+ambiguousAbsent,
		ambiguousCommitted, ambiguousAbsent, len(badConnIDs), phantom, reads.Load(), readErrTotal.Load(), unexplained, maxPerKill, perKillOverOne, retryMaxPerKill)
	for i, e := range commitErrs {
		if i < 3 {
			t.Logf("sample COMMIT error (ambiguous=%v): %v", rdsproxy.IsAmbiguousCommit(e), e)
		}
	}
	require.Zero(t, lost, "acknowledged writes were lost")
	require.Zero(t, phantom)
}

// insertOne inserts id inside a transaction and classifies the outcome. The
// COMMIT's error is returned when there was one.
func insertOne(ctx context.Context, db *sql.DB, table, id string, writer int) (writeOutcome, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		evidence.err(err)
		return wFailedPre, nil
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO "+table+" (id, writer) VALUES ($1, $2)", id, writer); err != nil {
		evidence.err(err)
		_ = tx.Rollback()
		return wFailedPre, nil
	}
	err = tx.Commit()
	switch {
	case err == nil:
		return wAcked, nil
	case rdsproxy.IsAmbiguousCommit(err):
		return wAmbiguous, evidence.err(err)
	default:
		return wCommitErr, evidence.err(err)
	}
}
