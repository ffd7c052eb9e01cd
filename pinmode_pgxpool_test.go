// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

package rdsproxy_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/rdsproxy/rdsproxy"
	"github.com/rdsproxy/rdsproxy/internal/proxyemu"
	"github.com/rdsproxy/rdsproxy/internal/testdb"
	"github.com/rdsproxy/rdsproxy/internal/testiam"
)

// openPinModePool opens a pgxpool through a fresh emulator.
func openPinModePool(t *testing.T, extra string, opts ...rdsproxy.Option) (*proxyemu.Proxy, *pgxpool.Pool, string) {
	t.Helper()
	app := testdb.AppName(t)
	p, dsn := testiam.Start(t, testiam.AppName(app))
	ts := rdsproxy.NewTokenSource(rdsproxy.TokenSourceOptions{Credentials: testiam.Credentials})
	pc, err := rdsproxy.NewPgxpoolConfig(dsn+"&"+extra,
		append(opts, rdsproxy.WithTokenSource(ts), rdsproxy.WithLogger(slog.New(slog.DiscardHandler)))...)
	require.NoError(t, err)
	pool, err := pgxpool.NewWithConfig(context.Background(), pc)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return p, pool, app
}

// TestPinCheckErrorPgxpool: on the pgxpool path every way of running a
// statement refuses a pinning one unsent, and the connection stays usable.
func TestPinCheckErrorPgxpool(t *testing.T) {
	p, pool, app := openPinModePool(t, "pin_check=error&pool_max_conns=1")
	ctx := context.Background()
	const lock = "SELECT pg_advisory_lock(987654321)"
	check := func(what string, err error) {
		t.Helper()
		require.ErrorIs(t, err, rdsproxy.ErrPinning, what)
		require.NotContains(t, err.Error(), "987654321", what)
	}
	_, err := pool.Exec(ctx, lock)
	check("Exec", err)
	_, err = pool.Exec(ctx, "SELECT pg_advisory_lock($1)", 987654321)
	check("Exec with an argument", err)
	rows, err := pool.Query(ctx, lock)
	if err == nil {
		rows.Close()
		err = rows.Err()
	}
	check("Query", err)
	check("QueryRow", pool.QueryRow(ctx, "SELECT pg_advisory_lock($1)", 987654321).Scan(new(string)))
	b := &pgx.Batch{}
	b.Queue("SELECT 1")
	b.Queue(lock)
	check("SendBatch", pool.SendBatch(ctx, b).Close())
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, lock)
	check("Tx.Exec", err)
	require.NoError(t, tx.Commit(ctx), "the transaction goes on")
	conn, err := pool.Acquire(ctx)
	require.NoError(t, err)
	_, err = conn.Conn().Prepare(ctx, "named", "SELECT 1")
	check("Prepare", err)
	var one int
	require.NoError(t, conn.QueryRow(ctx, "SELECT 1").Scan(&one), "the connection is usable")
	conn.Release()

	admin := testdb.Admin(t)
	var locks int
	require.NoError(t, admin.QueryRow(ctx, `SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
		WHERE l.locktype = 'advisory' AND a.application_name = $1`, app).Scan(&locks))
	require.Zero(t, locks, "an advisory lock was taken: the statement reached the server")
	require.Zero(t, p.PinnedTotal())
	require.EqualValues(t, 1, p.Authentications(), "a refusal must not cost the connection")
}

// TestPinCheckErrorBelowTracer: a statement sent at the pgconn level, below
// pgx's tracer, is not checked: it is sent, and it pins. This is the one path
// pin_check=error cannot refuse.
func TestPinCheckErrorBelowTracer(t *testing.T) {
	p, pool, _ := openPinModePool(t, "pin_check=error&pool_max_conns=1")
	ctx := context.Background()
	conn, err := pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	_, err = conn.Conn().PgConn().Exec(ctx, "SELECT pg_advisory_lock(1)").ReadAll()
	require.NoError(t, err, "pgconn-level statements are not refused")
	require.EqualValues(t, 1, p.PinnedTotal(), "and they pin")
}

// TestPinRetirePgxpool: under pgxpool, a connection that pinned is closed
// at its release, so no later checkout sees its search_path and no session
// stays pinned after the load, without a further checkout.
func TestPinRetirePgxpool(t *testing.T) {
	p, pool, _ := openPinModePool(t, fmt.Sprintf("pin_check=retire&pool_max_conns=%d", workloadCap))
	ctx := context.Background()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var leaks, maxPinned int
	errs := make(chan error, workloadWorkers)
	for w := 0; w < workloadWorkers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < workloadRequests; i++ {
				err := pool.AcquireFunc(ctx, func(c *pgxpool.Conn) error {
					if (w+i)%10 == 0 {
						if _, err := c.Exec(ctx, "SET search_path TO "+leakMarker+", public"); err != nil {
							return err
						}
					}
					var path string
					if err := c.QueryRow(ctx, "SELECT current_setting('search_path')").Scan(&path); err != nil {
						return err
					}
					mu.Lock()
					if (w+i)%10 != 0 && strings.Contains(path, leakMarker) {
						leaks++
					}
					maxPinned = max(maxPinned, p.PinnedNow())
					mu.Unlock()
					return nil
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	require.NoError(t, errors.Join(func() (e []error) {
		for err := range errs {
			e = append(e, err)
		}
		return
	}()...))
	waitFor(t, "no pinned session after the load", func() bool { return p.PinnedNow() == 0 })
	t.Logf("pgxpool retire: pinned during load max %d, ever %d, leaks %d, authentications %d",
		maxPinned, p.PinnedTotal(), leaks, p.Authentications())
	require.Zero(t, leaks)
	require.LessOrEqual(t, maxPinned, pinRetireBound)
	require.EqualValues(t, workloadWorkers*workloadRequests/10, p.PinnedTotal())
}

// TestSessionAuditPgxpool: the audit runs at checkout on the pgxpool path.
func TestSessionAuditPgxpool(t *testing.T) {
	schema := auditSchema(t)
	events := make(chan rdsproxy.PinEvent, 4)
	p, pool, _ := openPinModePool(t, "session_audit=on&pool_max_conns=1",
		rdsproxy.WithPinHandler(func(ev rdsproxy.PinEvent) {
			if ev.Kind == rdsproxy.PinKindAudit {
				events <- ev
			}
		}))
	ctx := context.Background()
	_, err := pool.Exec(ctx, "SELECT 1")
	require.NoError(t, err)
	_, err = pool.Exec(ctx, "SELECT "+schema+".set_work_mem()")
	require.NoError(t, err)
	_, err = pool.Exec(ctx, "SELECT 1")
	require.NoError(t, err)
	var ev rdsproxy.PinEvent
	select {
	case ev = <-events:
	case <-time.After(10 * time.Second):
		t.Fatal("no audit finding for work_mem")
	}
	require.Contains(t, ev.Leftovers, "setting work_mem")
	require.Contains(t, ev.Suspects, "SELECT "+schema+".set_work_mem()")
	require.EqualValues(t, 2, p.Authentications(), "the connection with state left was replaced")
	require.Zero(t, p.PinnedTotal(), "the audit pinned a session")
}
