package faults

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/rds/auth"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/require"

	"github.com/rdsproxy/rdsproxy"
	"github.com/rdsproxy/rdsproxy/internal/proxyemu"
	"github.com/rdsproxy/rdsproxy/internal/testdb"
	"github.com/rdsproxy/rdsproxy/internal/testiam"
)

// stormResult is what one storm measured.
type stormResult struct {
	envs, ok, failed  int
	p50, p99, max     time.Duration
	peakServer        int   // PostgreSQL backends of the storm's application_name (PgBouncer's server connections)
	peakClients       int   // client connections open at the emulator at once
	signings          int64 // tokens signed
	firstErr          error
	errKinds          map[string]int
	wall              time.Duration
	emulatorAuthCount int64
}

// storm opens envs separate *sql.DB values with open, releases them at once
// to run one query each, and measures time to first row, peaks and errors.
func storm(t *testing.T, envs int, app string, p *proxyemu.Proxy, open func() (*sql.DB, error)) stormResult {
	t.Helper()
	admin := testdb.Admin(t)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		ttfr     = make([]time.Duration, 0, envs)
		res      = stormResult{envs: envs, errKinds: map[string]int{}}
		start    = make(chan struct{})
		ready    sync.WaitGroup
		stopSamp = make(chan struct{})
		sampDone = make(chan struct{})
		peakSrv  atomic.Int64
		peakCli  atomic.Int64
	)
	// Sample the server side and the emulator while the storm runs.
	go func() {
		defer close(sampDone)
		ctx := context.Background()
		for {
			if n, err := countBackends(ctx, admin, app); err == nil && int64(n) > peakSrv.Load() {
				peakSrv.Store(int64(n))
			}
			if n := int64(p.ClientConnections()); n > peakCli.Load() {
				peakCli.Store(n)
			}
			select {
			case <-stopSamp:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	var t0 time.Time
	for range envs {
		wg.Add(1)
		ready.Add(1)
		go func() {
			defer wg.Done()
			db, err := open() // each environment builds its own *sql.DB (its own pool)
			ready.Done()
			if err == nil {
				<-start
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				err = queryOne(ctx, db)
				cancel()
				if err == nil {
					d := time.Since(t0)
					mu.Lock()
					ttfr = append(ttfr, d)
					mu.Unlock()
				}
				db.Close()
			}
			if err != nil {
				evidence.err(err)
				mu.Lock()
				res.failed++
				if res.firstErr == nil {
					res.firstErr = err
				}
				res.errKinds[errKind(err)]++
				mu.Unlock()
			}
		}()
	}
	ready.Wait()
	authBefore := p.Authentications()
	t0 = time.Now()
	close(start)
	wg.Wait()
	res.wall = time.Since(t0)
	close(stopSamp)
	<-sampDone
	res.ok = len(ttfr)
	res.p50, res.p99, res.max = percentile(ttfr, 50), percentile(ttfr, 99), percentile(ttfr, 100)
	res.peakServer, res.peakClients = int(peakSrv.Load()), int(peakCli.Load())
	res.emulatorAuthCount = p.Authentications() - authBefore
	return res
}

// errKind shortens an error to a category for the report.
func errKind(err error) string {
	s := err.Error()
	for _, k := range []string{"already exists", "does not exist", "timeout", "IAM", "EOF", "reset", "refused", "too many"} {
		if strings.Contains(s, k) {
			return strings.ReplaceAll(k, " ", "_")
		}
	}
	if len(s) > 40 {
		s = s[:40]
	}
	return strings.ReplaceAll(s, " ", "_")
}

// TestColdStartStorm proves that 1,000 simulated Lambda environments (each
// its own *sql.DB, as separate processes would have) connecting at once
// through the RDS Proxy emulator (TLS, IAM token checked on every
// connection) to a PgBouncer with 20 server connections all succeed, with one
// token signing for the lot (a shared TokenSource) and the server never
// seeing more than its 20 connections. In the same run, the common
// hand-written pattern (raw pgx, stdlib.OptionBeforeConnect signing with
// auth.BuildAuthToken on every dial) is measured for comparison: its signings
// and its errors. The numbers are logged on a RESULT line.
func TestColdStartStorm(t *testing.T) {
	testdb.Require(t)
	envs := scale(1000, 3000)
	const serverConns = 20

	// rdsproxy.
	b1 := testdb.StartPgBouncer(t, serverConns)
	defer b1.Stop()
	app1 := testdb.AppName(t) + "_rdsproxy"
	u1, _ := url.Parse(b1.URL())
	p1, dsn1 := testiam.Start(t, testiam.Backend(u1.Host), testiam.AppName(app1))
	ts := rdsproxy.NewTokenSource(rdsproxy.TokenSourceOptions{Credentials: testiam.Credentials})
	r1 := storm(t, envs, app1, p1, func() (*sql.DB, error) {
		return openWithLogger(dsn1, rdsproxy.WithTokenSource(ts))
	})
	r1.signings = ts.Signings()

	// Raw pgx with a BeforeConnect hook that signs on every dial.
	b2 := testdb.StartPgBouncer(t, serverConns)
	defer b2.Stop()
	app2 := testdb.AppName(t) + "_rawpgx"
	u2, _ := url.Parse(b2.URL())
	p2, dsn2 := testiam.Start(t, testiam.Backend(u2.Host), testiam.AppName(app2))
	rawDSN := strings.NewReplacer("iam=true&", "", "aws_region="+testiam.Region+"&", "").Replace(dsn2)
	rawStorm := func(dsn string) stormResult {
		var signings atomic.Int64
		r := storm(t, envs, app2, p2, func() (*sql.DB, error) {
			cfg, err := pgx.ParseConfig(dsn)
			if err != nil {
				return nil, err
			}
			return stdlib.OpenDB(*cfg, stdlib.OptionBeforeConnect(func(ctx context.Context, cc *pgx.ConnConfig) error {
				signings.Add(1)
				tok, err := auth.BuildAuthToken(ctx, fmt.Sprintf("%s:%d", cc.Host, cc.Port), testiam.Region, cc.User, testiam.Credentials)
				if err != nil {
					return err
				}
				cc.Password = tok
				return nil
			})), nil
		})
		r.signings = signings.Load()
		return r
	}
	// pgx's defaults (named prepared statements), then with rdsproxy's exec
	// mode to separate the signing from the statement cache.
	r2 := rawStorm(rawDSN)
	r3 := rawStorm(rawDSN + "&default_query_exec_mode=cache_describe")

	for _, r := range []struct {
		name string
		r    stormResult
	}{{"rdsproxy", r1}, {"raw_pgx_sign_every_dial", r2}, {"raw_pgx_sign_every_dial_cache_describe", r3}} {
		t.Logf("RESULT case=cold_start_storm client=%s envs=%d ok=%d failed=%d ttfr_p50=%s ttfr_p99=%s ttfr_max=%s wall=%s "+
			"signings=%d proxy_auths=%d peak_server_conns=%d peak_proxy_clients=%d errors=%v",
			r.name, r.r.envs, r.r.ok, r.r.failed, r.r.p50.Round(time.Millisecond), r.r.p99.Round(time.Millisecond),
			r.r.max.Round(time.Millisecond), r.r.wall.Round(time.Millisecond), r.r.signings,
			r.r.emulatorAuthCount, r.r.peakServer, r.r.peakClients, r.r.errKinds)
		if r.r.firstErr != nil {
			t.Logf("first %s error: %v", r.name, r.r.firstErr)
		}
	}
	require.Zero(t, r1.failed, "rdsproxy: first failure: %v", r1.firstErr)
	require.Equal(t, envs, r1.ok)
	require.EqualValues(t, 1, r1.signings, "1,000 cold starts sharing a TokenSource must share one signing")
	require.LessOrEqual(t, r1.peakServer, serverConns)
	require.EqualValues(t, envs, r2.signings, "the hand-written hook signs on every dial")
	require.EqualValues(t, envs, r3.signings)
}
