package rdsproxy_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/rdsproxy/rdsproxy"
	"github.com/rdsproxy/rdsproxy/internal/testdb"
	"github.com/rdsproxy/rdsproxy/internal/testiam"
)

// pinEvents collects PinEvents from WithPinHandler, which runs on a
// background goroutine.
type pinEvents struct {
	mu     sync.Mutex
	events []rdsproxy.PinEvent
}

func (p *pinEvents) add(e rdsproxy.PinEvent) {
	p.mu.Lock()
	p.events = append(p.events, e)
	p.mu.Unlock()
}

// waitFor waits (bounded) until an event with reason r arrived.
func (p *pinEvents) waitFor(t *testing.T, r rdsproxy.PinReason, kind string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if p.has(r, kind) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no %s pin event of kind %s; got %+v", r, kind, p.snapshot())
}

func (p *pinEvents) has(r rdsproxy.PinReason, kind string) bool {
	for _, e := range p.snapshot() {
		for _, got := range e.Reasons {
			if got == r && e.Kind == kind {
				return true
			}
		}
	}
	return false
}

func (p *pinEvents) snapshot() []rdsproxy.PinEvent {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]rdsproxy.PinEvent(nil), p.events...)
}

func TestNewPgxpoolConfigDefaults(t *testing.T) {
	t.Setenv("AWS_LAMBDA_FUNCTION_NAME", "")
	pc, err := rdsproxy.NewPgxpoolConfig("postgres://app@127.0.0.1:5432/appdb?sslmode=disable")
	require.NoError(t, err)
	require.EqualValues(t, rdsproxy.DefaultMaxConns, pc.MaxConns)
	require.Zero(t, pc.MinConns)
	require.Equal(t, rdsproxy.DefaultMaxConnLifetime, pc.MaxConnLifetime)
	require.Equal(t, rdsproxy.DefaultMaxConnLifetimeJitter, pc.MaxConnLifetimeJitter)
	require.Equal(t, rdsproxy.DefaultMaxConnIdleTime, pc.MaxConnIdleTime)
	require.Equal(t, rdsproxy.DefaultHealthCheckPeriod, pc.HealthCheckPeriod)
	require.Equal(t, rdsproxy.DefaultQueryExecMode, pc.ConnConfig.DefaultQueryExecMode)
	require.NotNil(t, pc.ConnConfig.Tracer, "the pinning check is installed")
	require.Nil(t, pc.BeforeConnect, "no password hook without iam=true")
	for _, k := range []string{"pin_check", "pool_max_conns", "iam"} {
		require.NotContains(t, pc.ConnConfig.RuntimeParams, k)
	}

	// The DSN keys, then options, override the defaults; pgxpool enforces them.
	pc, err = rdsproxy.NewPgxpoolConfig("postgres://app@127.0.0.1:5432/appdb?sslmode=disable&pool_max_conns=7&pool_max_conn_lifetime=10m&pool_max_conn_lifetime_jitter=1m&pool_max_conn_idle_time=2m&pool_health_check_period=30s",
		rdsproxy.WithMaxConns(9))
	require.NoError(t, err)
	require.EqualValues(t, 9, pc.MaxConns)
	require.Equal(t, 10*time.Minute, pc.MaxConnLifetime)
	require.Equal(t, time.Minute, pc.MaxConnLifetimeJitter)
	require.Equal(t, 2*time.Minute, pc.MaxConnIdleTime)
	require.Equal(t, 30*time.Second, pc.HealthCheckPeriod)

	// Lambda defaults, with no floor of 3: no database/sql idle list here.
	t.Setenv("AWS_LAMBDA_FUNCTION_NAME", "fn")
	pc, err = rdsproxy.NewPgxpoolConfig("postgres://app@127.0.0.1:5432/appdb?sslmode=disable")
	require.NoError(t, err)
	require.EqualValues(t, rdsproxy.DefaultLambdaMaxConns, pc.MaxConns)
	require.Equal(t, rdsproxy.DefaultLambdaMaxConnIdleTime, pc.MaxConnIdleTime)

	// The same validation as Open.
	_, err = rdsproxy.NewPgxpoolConfig("postgres://app@127.0.0.1/db?pool_max_conns=0")
	require.ErrorIs(t, err, rdsproxy.ErrConfig)
	_, err = rdsproxy.NewPgxpoolConfig("postgres://app@my-proxy.proxy-abc.us-east-1.rds.amazonaws.com:5432/appdb?iam=true&sslmode=disable")
	require.ErrorIs(t, err, rdsproxy.ErrInsecureIAM)
	_, err = rdsproxy.NewPgxpoolConfig("postgres://app@h/db?sslmode=disable", rdsproxy.WithCredentialsProvider(testiam.Credentials))
	require.ErrorIs(t, err, rdsproxy.ErrConfig)

	// pin_check=off: no pinning tracer, pgxpool's config keeps working.
	pc, err = rdsproxy.NewPgxpoolConfig("postgres://app@127.0.0.1/db?sslmode=disable&pin_check=off")
	require.NoError(t, err)
	_, isPrepareTracer := pc.ConnConfig.Tracer.(pgx.PrepareTracer)
	require.False(t, isPrepareTracer)
}

// TestPgxpoolConfigPinCheck: the tracer-based check sees queries, batches
// and named prepares on a native pgxpool.
func TestPgxpoolConfigPinCheck(t *testing.T) {
	dsn := testdb.WithParams(testdb.Require(t), "application_name", testdb.AppName(t))
	var ev pinEvents
	pc, err := rdsproxy.NewPgxpoolConfig(dsn, rdsproxy.WithPinHandler(ev.add),
		rdsproxy.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	require.NoError(t, err)
	ctx := context.Background()
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	require.NoError(t, err)
	defer pool.Close()

	var n int
	require.NoError(t, pool.QueryRow(ctx, "SELECT $1::int", 3).Scan(&n))
	require.Equal(t, 3, n)
	_, err = pool.Exec(ctx, "SET application_name TO DEFAULT")
	require.NoError(t, err)
	ev.waitFor(t, rdsproxy.PinSessionSetting, "query")

	conn, err := pool.Acquire(ctx)
	require.NoError(t, err)
	_, err = conn.Conn().Prepare(ctx, "get_one", "SELECT 1")
	require.NoError(t, err)
	conn.Release()
	ev.waitFor(t, rdsproxy.PinPreparedStatement, "prepare")

	br := pool.SendBatch(ctx, &pgx.Batch{QueuedQueries: []*pgx.QueuedQuery{{SQL: "SELECT pg_advisory_lock(7)"}, {SQL: "SELECT pg_advisory_unlock(7)"}}})
	require.NoError(t, br.Close())
	ev.waitFor(t, rdsproxy.PinAdvisoryLock, "batch")
	// Four distinct pinning statements (lock and unlock are two); the
	// parameterized SELECT is not among them.
	for deadline := time.Now().Add(5 * time.Second); len(ev.snapshot()) < 4 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	for _, e := range ev.snapshot() {
		require.NotEqual(t, "SELECT ?::int", e.Fingerprint)
	}
	require.Len(t, ev.snapshot(), 4, "%+v", ev.snapshot())
}

// TestPgxpoolConfigIAM runs a native pgxpool through the RDS Proxy emulator:
// tokens come from the shared cache, and a rejected cached token is dropped
// so the next dial signs a fresh one.
func TestPgxpoolConfigIAM(t *testing.T) {
	p, dsn := testiam.Start(t)
	ts := rdsproxy.NewTokenSource(rdsproxy.TokenSourceOptions{Credentials: testiam.Credentials})
	pc, err := rdsproxy.NewPgxpoolConfig(dsn, rdsproxy.WithTokenSource(ts))
	require.NoError(t, err)
	require.NotNil(t, pc.BeforeConnect)
	ctx := context.Background()
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	require.NoError(t, err)
	defer pool.Close()
	var n int
	require.NoError(t, pool.QueryRow(ctx, "SELECT $1::int", 5).Scan(&n))
	require.EqualValues(t, 1, p.Authentications())
	require.EqualValues(t, 1, ts.Signings())

	// A second pool dials with the cached token: no new signing.
	pc2, err := rdsproxy.NewPgxpoolConfig(dsn, rdsproxy.WithTokenSource(ts))
	require.NoError(t, err)
	pool2, err := pgxpool.NewWithConfig(ctx, pc2)
	require.NoError(t, err)
	require.NoError(t, pool2.Ping(ctx))
	pool2.Close()
	require.EqualValues(t, 2, p.Authentications())
	require.EqualValues(t, 1, ts.Signings())

	// The proxy rejects the cached token once. pgxpool cannot retry the dial,
	// so that Acquire fails; the token is dropped and the next dial signs.
	p.RejectNextAuth(1)
	time.Sleep(1100 * time.Millisecond) // X-Amz-Date has 1 s resolution: a re-sign must differ
	pc3, err := rdsproxy.NewPgxpoolConfig(dsn, rdsproxy.WithTokenSource(ts))
	require.NoError(t, err)
	pool3, err := pgxpool.NewWithConfig(ctx, pc3)
	require.NoError(t, err)
	defer pool3.Close()
	err = pool3.Ping(ctx)
	require.Error(t, err)
	require.False(t, errors.Is(err, rdsproxy.ErrIAMAuth), "the pgxpool path returns pgx's error as is")
	require.NoError(t, pool3.Ping(ctx), "the next dial uses a fresh token")
	require.EqualValues(t, 1, p.Rejections())
	require.EqualValues(t, 2, ts.Signings())
}
