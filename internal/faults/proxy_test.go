package faults

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/stretchr/testify/require"

	"github.com/rdsproxy/rdsproxy"
	"github.com/rdsproxy/rdsproxy/internal/proxyemu"
	"github.com/rdsproxy/rdsproxy/internal/testdb"
	"github.com/rdsproxy/rdsproxy/internal/testiam"
)

// holdConns checks out n connections at once, runs a statement on each and
// returns them to the pool, so that n physical connections sit idle.
func holdConns(t *testing.T, db *sql.DB, n int) {
	t.Helper()
	ctx := context.Background()
	conns := make([]*sql.Conn, n)
	for i := range conns {
		c, err := db.Conn(ctx)
		require.NoError(t, evidence.err(err))
		require.NoError(t, queryOne(ctx, c))
		conns[i] = c
	}
	for _, c := range conns {
		require.NoError(t, c.Close())
	}
}

// TestProxyDropsIdleClients proves that when RDS Proxy closes client
// connections that idled past its IdleClientTimeout (the emulator does it
// after 300 ms, with no message, like the proxy), the next checkout gets a
// working connection and the caller sees no error: the driver's socket probe
// finds the closed connections and database/sql replaces them transparently.
// Each round idles 3 connections, waits until the proxy has dropped them all,
// then runs single queries and 3 concurrent ones.
func TestProxyDropsIdleClients(t *testing.T) {
	app := testdb.AppName(t)
	p, dsn := testiam.Start(t, testiam.AppName(app), testiam.IdleClientTimeout(300*time.Millisecond))
	ts := rdsproxy.NewTokenSource(rdsproxy.TokenSourceOptions{Credentials: testiam.Credentials})
	db := openDB(t, testddsn(dsn, "pool_max_conns", "3"), rdsproxy.WithTokenSource(ts))
	rounds := scale(3, 30)
	dropped := 0
	for range rounds {
		holdConns(t, db, 3)
		require.Eventually(t, func() bool { return p.ClientConnections() == 0 }, 30*time.Second, 10*time.Millisecond,
			"the emulator did not drop the idle clients")
		dropped += 3
		ctx := context.Background()
		for range 3 {
			require.NoError(t, queryOne(ctx, db), "first use after the proxy dropped idle clients")
		}
		var wg sync.WaitGroup
		var failed atomic.Int64
		for range 3 {
			wg.Go(func() {
				if queryOne(ctx, db) != nil {
					failed.Add(1)
				}
			})
		}
		wg.Wait()
		require.Zero(t, failed.Load())
	}
	// The same with DropIdleClients (deterministic, no idle timer). RDS Proxy
	// drops only clients idle for IdleClientTimeout (a minute or more), so the
	// clients first sit idle past the 1 ms in which rdsproxy trusts a
	// connection that has just answered without probing it.
	holdConns(t, db, 3)
	time.Sleep(5 * time.Millisecond)
	n := p.DropIdleClients()
	require.NoError(t, queryOne(context.Background(), db))
	t.Logf("RESULT case=idle_clients_dropped rounds=%d idle_connections_dropped=%d caller_errors=0 dials=%d signings=%d",
		rounds, dropped+n, p.Authentications(), ts.Signings())
}

// testddsn adds URL query parameters to a DSN.
func testddsn(dsn string, kv ...string) string { return testdb.WithParams(dsn, kv...) }

// TestBorrowTimeout proves that RDS Proxy's borrow timeout ("Timed-out
// waiting to acquire database connection.") is distinguishable and
// actionable: when opening a connection, the error matches
// rdsproxy.ErrBorrowTimeout with errors.Is and names the proxy settings to
// change; on an open connection the server's error matches
// rdsproxy.IsBorrowTimeout; and rdsproxy.RetryRead retries such an
// idempotent read with backoff until the proxy has a connection again, or
// gives up after MaxAttempts with an error that still matches.
func TestBorrowTimeout(t *testing.T) {
	app := testdb.AppName(t)
	p, dsn := testiam.Start(t, testiam.AppName(app))
	db := openDB(t, testdb.WithParams(dsn, "pool_max_conns", "2"), rdsproxy.WithCredentialsProvider(testiam.Credentials))
	ctx := context.Background()
	require.NoError(t, queryOne(ctx, db))
	// Take the connection before the fault starts: a checkout may ping (after
	// a second idle on a loaded machine), and the proxy refuses pings too.
	held, err := db.Conn(ctx)
	require.NoError(t, err)

	p.SetBorrowTimeout(true)
	// On the open connection: a statement is refused, the session stays usable.
	var n int
	err = evidence.err(held.QueryRowContext(ctx, "SELECT 1").Scan(&n))
	require.Error(t, err)
	require.True(t, rdsproxy.IsBorrowTimeout(err), "got %v", err)
	require.Contains(t, err.Error(), proxyemu.MsgBorrowTimeout)

	// A new connection: the held one is busy, so the pool must dial.
	err = evidence.err(queryOne(ctx, db))
	require.ErrorIs(t, err, rdsproxy.ErrBorrowTimeout)
	require.True(t, rdsproxy.IsBorrowTimeout(err))
	for _, advice := range []string{"MaxConnectionsPercent", "ConnectionBorrowTimeout", "pinning", "transactions short", proxyemu.MsgBorrowTimeout} {
		require.Contains(t, err.Error(), advice)
	}
	require.False(t, rdsproxy.IsAmbiguousCommit(err), "a refused borrow ran nothing")
	require.NoError(t, held.Close())

	// RetryRead: the proxy frees a connection after the second attempt.
	var attempts atomic.Int64
	err = rdsproxy.RetryRead(ctx, rdsproxy.RetryPolicy{MaxAttempts: 5, BaseDelay: time.Millisecond, MaxDelay: 4 * time.Millisecond},
		func(ctx context.Context) error {
			if attempts.Add(1) == 3 {
				p.SetBorrowTimeout(false)
			}
			return queryOne(ctx, db)
		})
	require.NoError(t, err)
	require.EqualValues(t, 3, attempts.Load())

	// Gives up after MaxAttempts; the error still matches and says so.
	p.SetBorrowTimeout(true)
	attempts.Store(0)
	err = evidence.err(rdsproxy.RetryRead(ctx, rdsproxy.RetryPolicy{MaxAttempts: 3, BaseDelay: time.Millisecond},
		func(ctx context.Context) error { attempts.Add(1); return queryOne(ctx, db) }))
	require.ErrorIs(t, err, rdsproxy.ErrBorrowTimeout)
	require.Contains(t, err.Error(), "3 times")
	require.EqualValues(t, 3, attempts.Load())

	// A non-transient error is not retried.
	p.SetBorrowTimeout(false)
	attempts.Store(0)
	err = evidence.err(rdsproxy.RetryRead(ctx, rdsproxy.RetryPolicy{MaxAttempts: 5, BaseDelay: time.Millisecond},
		func(ctx context.Context) error {
			attempts.Add(1)
			_, err := db.ExecContext(ctx, "SELEC 1")
			return err
		}))
	require.Error(t, err)
	require.EqualValues(t, 1, attempts.Load())
	require.NoError(t, queryOne(ctx, db))
	t.Logf("RESULT case=borrow_timeout connect_error_matches_ErrBorrowTimeout=true statement_error_matches_IsBorrowTimeout=true retry_attempts_until_success=3 gave_up_after=3 non_transient_attempts=1")
}

// outageCreds are short-lived credentials (250 ms, like STS credentials at the
// end of their life): every new connection needs credentials retrieved
// after the last ones expired, and Retrieve fails while down is set.
type outageCreds struct {
	down        atomic.Bool
	calls       atomic.Int64
	fails       atomic.Int64
	lastExpires atomic.Int64
}

const outageCredsLife = 250 * time.Millisecond

var errSTSDown = errors.New("simulated outage: the credentials endpoint is unreachable")

func (o *outageCreds) Retrieve(context.Context) (aws.Credentials, error) {
	o.calls.Add(1)
	if o.down.Load() {
		o.fails.Add(1)
		return aws.Credentials{}, errSTSDown
	}
	exp := time.Now().Add(outageCredsLife)
	o.lastExpires.Store(exp.UnixNano())
	return aws.Credentials{AccessKeyID: testiam.AccessKey, SecretAccessKey: testiam.SecretKey, CanExpire: true,
		Expires: exp, Source: "faults"}, nil
}

// TestCredentialsOutage proves that while the AWS credentials provider fails,
// new connections fail at once (before dialing the proxy) with an error that
// says the credentials could not be retrieved and contains no secret;
// connections already open keep serving; and once the provider recovers, new
// connections succeed with no restart of the *sql.DB.
func TestCredentialsOutage(t *testing.T) {
	app := testdb.AppName(t)
	p, dsn := testiam.Start(t, testiam.AppName(app))
	creds := &outageCreds{}
	db := openDB(t, testdb.WithParams(dsn, "pool_max_conns", "3"), rdsproxy.WithCredentialsProvider(creds))
	ctx := context.Background()

	// Two connections open and held before the outage.
	c1, err := db.Conn(ctx)
	require.NoError(t, evidence.err(err))
	defer c1.Close()
	c2, err := db.Conn(ctx)
	require.NoError(t, evidence.err(err))
	defer c2.Close()
	require.NoError(t, queryOne(ctx, c1))
	require.NoError(t, queryOne(ctx, c2))
	dialsBefore := p.ClientConnections()

	creds.down.Store(true)
	// The outage outlasts the credentials last retrieved.
	time.Sleep(time.Until(time.Unix(0, creds.lastExpires.Load())) + 10*time.Millisecond)
	failedDials := 0
	for range scale(5, 50) {
		// A new connection is needed: both are held.
		dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		err := evidence.err(queryOne(dctx, db))
		cancel()
		require.Error(t, err)
		require.NotErrorIs(t, err, context.DeadlineExceeded, "the dial must fail on its own, not wait for the deadline")
		require.ErrorIs(t, err, errSTSDown)
		require.Contains(t, err.Error(), "retrieve AWS credentials")
		failedDials++
		// Open connections keep serving.
		require.NoError(t, queryOne(ctx, c1))
		require.NoError(t, queryOne(ctx, c2))
	}
	require.Equal(t, dialsBefore, p.ClientConnections(), "no dial may reach the proxy without credentials")
	require.Positive(t, creds.fails.Load())

	creds.down.Store(false)
	require.NoError(t, queryOne(ctx, db), "a new connection after the provider recovered")
	c3, err := db.Conn(ctx)
	require.NoError(t, err)
	require.NoError(t, queryOne(ctx, c3))
	require.NoError(t, c3.Close())
	require.NotContains(t, strings.Join([]string{p.LastRejectReason()}, ""), "X-Amz")
	t.Logf("RESULT case=credentials_outage failed_dials=%d open_conns_kept_serving=2 provider_calls=%d provider_failures=%d recovered_without_restart=true",
		failedDials, creds.calls.Load(), creds.fails.Load())
}
