package rdsproxy

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/rdsproxy/rdsproxy/internal/conncheck"
	"github.com/rdsproxy/rdsproxy/internal/testclock"
	"github.com/rdsproxy/rdsproxy/internal/testdb"
)

// openWithClock opens a *sql.DB through Open with the policy on a fake clock.
func openWithClock(t *testing.T, kv ...string) (*sql.DB, *Connector, *testclock.Clock, *[]string) {
	t.Helper()
	dsn := testdb.WithParams(testdb.Require(t), append([]string{"application_name", testdb.AppName(t)}, kv...)...)
	cfg, err := ParseConfig(dsn)
	require.NoError(t, err)
	c, err := newConnector(cfg, nil, true)
	require.NoError(t, err)
	clock := testclock.Start()
	var mu sync.Mutex
	var retired []string
	c.policy.now = clock.Now
	c.policy.onRetire = func(reason retireReason) { mu.Lock(); retired = append(retired, reason.String()); mu.Unlock() }
	db := sql.OpenDB(c)
	db.SetMaxOpenConns(int(cfg.MaxConns))
	db.SetMaxIdleConns(int(cfg.MaxConns))
	t.Cleanup(func() { db.Close() })
	return db, c, clock, &retired
}

func backendPID(t *testing.T, db *sql.DB) int {
	t.Helper()
	var pid int
	require.NoError(t, db.QueryRow("SELECT pg_backend_pid()").Scan(&pid))
	return pid
}

func TestLifetimeRetiresConnection(t *testing.T) {
	db, _, clock, retired := openWithClock(t, "pool_max_conns", "1",
		"pool_max_conn_lifetime", "10m", "pool_max_conn_lifetime_jitter", "0s", "pool_max_conn_idle_time", "1h")
	first := backendPID(t, db)
	require.Equal(t, first, backendPID(t, db), "same connection before the lifetime")
	clock.Advance(9 * time.Minute)
	require.Equal(t, first, backendPID(t, db), "still within the lifetime")
	clock.Advance(2 * time.Minute)
	second := backendPID(t, db)
	require.NotEqual(t, first, second, "the connection past its lifetime must be replaced")
	require.Equal(t, []string{retireLifetime.String()}, *retired)
}

func TestIdleTimeRetiresConnection(t *testing.T) {
	db, _, clock, retired := openWithClock(t, "pool_max_conns", "1",
		"pool_max_conn_lifetime", "1h", "pool_max_conn_idle_time", "2m")
	first := backendPID(t, db)
	clock.Advance(time.Minute)
	require.Equal(t, first, backendPID(t, db), "used within the idle time")
	clock.Advance(time.Minute + 30*time.Second)
	require.Equal(t, first, backendPID(t, db), "activity resets the idle clock")
	clock.Advance(3 * time.Minute)
	require.NotEqual(t, first, backendPID(t, db), "idle too long: replaced")
	require.Equal(t, []string{retireIdle.String()}, *retired)
}

// TestRetirementThroughPgxpoolPath covers connections parked in pgxpool rather
// than in database/sql's idle list (database/sql keeps none here).
func TestRetirementThroughPgxpoolPath(t *testing.T) {
	db, _, clock, retired := openWithClock(t, "pool_max_conns", "1",
		"pool_max_conn_lifetime", "10m", "pool_max_conn_lifetime_jitter", "0s")
	db.SetMaxIdleConns(0) // every return goes back to pgxpool
	first := backendPID(t, db)
	require.Equal(t, first, backendPID(t, db))
	clock.Advance(11 * time.Minute)
	require.NotEqual(t, first, backendPID(t, db))
	require.Contains(t, *retired, retireLifetime.String())
}

// TestConnStateFitsOneCacheLine guards connState's size (see its comment).
func TestConnStateFitsOneCacheLine(t *testing.T) {
	require.LessOrEqual(t, unsafe.Sizeof(connState{}), uintptr(64))
}

func TestJitterSpreadsDeadlines(t *testing.T) {
	p := &poolPolicy{lifetime: 30 * time.Minute, jitter: 5 * time.Minute, idle: time.Minute, now: func() time.Time { return time.Unix(1e9, 0) }}
	db, _, _, _ := openWithClock(t, "pool_max_conns", "8")
	ctx := context.Background()
	// Real connections, fresh state from the policy under test each time.
	conn, err := db.Conn(ctx)
	require.NoError(t, err)
	defer conn.Close()
	deadlines := map[int64]bool{}
	require.NoError(t, conn.Raw(func(dc any) error {
		pc := dc.(interface{ Conn() *pgx.Conn }).Conn()
		base := clockStamp(time.Unix(1e9, 0).Add(30 * time.Minute))
		for range 200 {
			p.afterConnect(pc)
			d := stateOf(pc).deadline
			require.GreaterOrEqual(t, d, base, "deadline before lifetime")
			require.Less(t, d, base+int64(5*time.Minute), "deadline beyond lifetime+jitter")
			deadlines[d] = true
		}
		return nil
	}))
	require.Greater(t, len(deadlines), 150, "jitter should give (nearly) every connection its own deadline")
}

// TestSiblingDeathRetiresSiblings: after any connection of the pool dies at
// the server's hand, every connection opened before that death is retired at
// its next checkout (a sibling may pass a ping and still be killed during the
// caller's statement); a connection opened after it is kept.
func TestSiblingDeathRetiresSiblings(t *testing.T) {
	db, c, clock, retired := openWithClock(t, "pool_max_conns", "2")
	ctx := context.Background()
	p := c.policy
	oldPID := backendPID(t, db)
	clock.Advance(time.Second) // past the probe window and pgx's ping threshold: the checkout below probes
	conn, err := db.Conn(ctx)
	require.NoError(t, err)
	require.NoError(t, conn.Raw(func(dc any) error {
		pc := dc.(interface{ Conn() *pgx.Conn }).Conn()
		require.False(t, p.shouldPing(pc, 0), "a quiet connection, probed, needs no ping")
		require.Equal(t, notRetired, p.expired(pc))

		before := p.deaths.Load()
		p.statementEnded(ctx, stateOf(pc), pc, errors.New("some error"))
		require.Equal(t, before, p.deaths.Load(), "an error on an open connection is not a death")

		p.noteDeath(nil) // a sibling died
		require.False(t, p.shouldPing(pc, 0), "retired, so no ping is wasted on it")
		require.Equal(t, retireSibling, p.expired(pc), "opened before the death: retired")
		return nil
	}))
	require.NoError(t, conn.Close())
	require.Equal(t, []string{retireSibling.String()}, *retired)

	// database/sql takes another connection, dialled after the death, and
	// keeps it.
	newPID := backendPID(t, db)
	require.NotEqual(t, oldPID, newPID)
	require.Equal(t, newPID, backendPID(t, db), "a connection opened after the death is kept")
	require.Equal(t, []string{retireSibling.String()}, *retired)

	// A statement failing on a connection the server closed counts as a death.
	conn, err = db.Conn(ctx)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.Raw(func(dc any) error {
		pc := dc.(interface{ Conn() *pgx.Conn }).Conn()
		before := p.deaths.Load()
		require.NoError(t, pc.Close(ctx))
		p.statementEnded(ctx, stateOf(pc), pc, errors.New("FATAL: terminating connection due to administrator command"))
		require.Equal(t, before+1, p.deaths.Load())
		return nil
	}))
}

// TestPingOnlyUseIsNotIdle: a connection whose only use is database/sql's
// pings (or other untraced work between checkouts) is in use, not idle, and
// must not be retired and redialled every idle period.
func TestPingOnlyUseIsNotIdle(t *testing.T) {
	for _, path := range []string{"database/sql idle list", "pgxpool"} {
		db, _, clock, retired := openWithClock(t, "pool_max_conns", "1", "pool_max_conn_idle_time", "2m")
		if path == "pgxpool" {
			db.SetMaxIdleConns(0) // every return goes back to pgxpool: PrepareConn and AfterRelease
		}
		ctx := context.Background()
		first := backendPID(t, db)
		for range 4 {
			clock.Advance(time.Minute)
			require.NoError(t, db.PingContext(ctx), path)
		}
		require.Equal(t, first, backendPID(t, db), "%s: pinged every minute, never idle for 2m", path)
		require.Empty(t, *retired, path)
	}
}

// TestSiblingDeathRetiresThroughPgxpoolPath: the same rule for connections
// parked in pgxpool rather than in database/sql's idle list.
func TestSiblingDeathRetiresThroughPgxpoolPath(t *testing.T) {
	db, c, _, retired := openWithClock(t, "pool_max_conns", "1")
	db.SetMaxIdleConns(0)
	first := backendPID(t, db)
	require.Equal(t, first, backendPID(t, db))
	c.policy.noteDeath(nil)
	second := backendPID(t, db)
	require.NotEqual(t, first, second, "opened before the death: replaced")
	require.Equal(t, second, backendPID(t, db), "opened after it: kept")
	require.Equal(t, []string{retireSibling.String()}, *retired)
}

// TestIsDeath: which failures on a closed connection count as a death that
// retires the siblings.
func TestIsDeath(t *testing.T) {
	live := context.Background()
	cancelled, cancel := context.WithCancel(live)
	cancel()
	for _, tc := range []struct {
		name  string
		ctx   context.Context
		err   error
		death bool
	}{
		{"administrator kill", live, &pgconn.PgError{Severity: "FATAL", Code: "57P01"}, true},
		{"network EOF", live, fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true},
		{"kernel ETIMEDOUT (network death, not the caller)", live, &net.OpError{Op: "read", Err: syscall.ETIMEDOUT}, true},
		{"caller's context done", cancelled, errors.New("some error"), false},
		{"wrapped context.Canceled", live, fmt.Errorf("timeout: %w", context.Canceled), false},
		{"wrapped context.DeadlineExceeded", live, fmt.Errorf("timeout: %w", context.DeadlineExceeded), false},
		{"already closed (a later Rollback)", live, fmt.Errorf("rollback: %w", pgconn.ErrConnClosed), false},
		{"idle_in_transaction_session_timeout", live, &pgconn.PgError{Severity: "FATAL", Code: "25P03"}, false},
		{"idle_session_timeout", live, &pgconn.PgError{Severity: "FATAL", Code: "57P05"}, false},
		{"transaction_timeout", live, &pgconn.PgError{Severity: "FATAL", Code: "25P04"}, false},
	} {
		require.Equal(t, tc.death, isDeath(tc.ctx, tc.err), tc.name)
	}
}

// TestOneKillIsOneDeath: a backend killed under an open transaction fails
// the statement, then pgx's Rollback fails again on the closed connection;
// that is one death, not two (each would retire the connections dialled in
// between).
func TestOneKillIsOneDeath(t *testing.T) {
	db, c, _, _ := openWithClock(t, "pool_max_conns", "2")
	ctx := context.Background()
	admin := testdb.Admin(t)
	tx, err := db.BeginTx(ctx, nil)
	require.NoError(t, err)
	var pid int
	require.NoError(t, tx.QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&pid))
	_, err = admin.Exec(ctx, "SELECT pg_terminate_backend($1)", pid)
	require.NoError(t, err)
	before := c.policy.deaths.Load()
	require.Eventually(t, func() bool {
		_, err := tx.ExecContext(ctx, "SELECT 1")
		return err != nil
	}, 10*time.Second, time.Millisecond)
	_ = tx.Rollback()
	require.Equal(t, before+1, c.policy.deaths.Load())
}

// TestCancellationIsNotADeath: pgx closes a connection whose statement the
// caller's context cancelled or timed out, but that says nothing about its
// siblings, so it must not cost them their connections.
func TestCancellationIsNotADeath(t *testing.T) {
	db, c, _, _ := openWithClock(t, "pool_max_conns", "2")
	for _, cause := range []string{"cancel", "deadline"} {
		ctx := context.Background()
		conn, err := db.Conn(ctx)
		require.NoError(t, err)
		require.NoError(t, conn.Raw(func(dc any) error {
			pc := dc.(interface{ Conn() *pgx.Conn }).Conn()
			before := c.policy.deaths.Load()
			var cctx context.Context
			var cancel context.CancelFunc
			if cause == "cancel" {
				cctx, cancel = context.WithCancel(ctx)
				time.AfterFunc(20*time.Millisecond, cancel)
			} else {
				cctx, cancel = context.WithTimeout(ctx, 20*time.Millisecond)
			}
			defer cancel()
			_, err := pc.Exec(cctx, "SELECT pg_sleep(10)")
			require.Error(t, err, cause)
			require.True(t, pc.IsClosed(), "%s: pgx closes the connection", cause)
			require.Equal(t, before, c.policy.deaths.Load(), "%s: not a death", cause)
			return nil
		}))
		conn.Close()
	}
}

// TestProbeWindow: a connection that answered less than probeAfterIdle ago is
// handed out without the socket probe (the cost the window saves), and one
// idle for longer is probed, so a connection the server ended while it sat
// idle gets a ping (which fails, and database/sql retries elsewhere) instead
// of the caller's statement.
func TestProbeWindow(t *testing.T) {
	db, c, clock, _ := openWithClock(t, "pool_max_conns", "1")
	ctx := context.Background()
	admin := testdb.Admin(t)
	conn, err := db.Conn(ctx)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.Raw(func(dc any) error {
		pc := dc.(interface{ Conn() *pgx.Conn }).Conn()
		_, err := pc.Exec(ctx, "SELECT 1") // the last answer, at the fake clock's now
		require.NoError(t, err)
		_, err = admin.Exec(ctx, "SELECT pg_terminate_backend($1)", pc.PgConn().PID())
		require.NoError(t, err)
		// The backend sends its FATAL, then closes: the socket shows Pending.
		s := stateOf(pc)
		require.Eventually(t, func() bool { return s.prober.Probe() != conncheck.Quiet }, 10*time.Second, time.Millisecond,
			"the terminated backend's socket never showed anything")

		clock.Advance(probeAfterIdle / 2)
		require.False(t, c.policy.shouldPing(pc, 0), "within the window the probe is skipped")
		clock.Advance(probeAfterIdle)
		require.True(t, c.policy.shouldPing(pc, 0), "past the window the probe sees the FATAL and asks for a ping")
		clock.Advance(-time.Hour)
		require.True(t, c.policy.shouldPing(pc, 0), "a clock stepped back must not skip the probe")
		require.Error(t, pc.Ping(ctx), "the ping settles it")
		return nil
	}))
}
