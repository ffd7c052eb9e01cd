package rdsproxy_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/feature/rds/auth"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/rdsproxy/rdsproxy"
	"github.com/rdsproxy/rdsproxy/internal/testclock"
	"github.com/rdsproxy/rdsproxy/internal/testiam"
)

// secretsLog collects every error and log line of a test so it can be
// searched for secrets at the end.
type secretsLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *secretsLog) add(v ...any) {
	s.mu.Lock()
	fmt.Fprintln(&s.buf, v...)
	s.mu.Unlock()
}
func (s *secretsLog) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

// assertNoSecrets fails if anything collected contains a token or a key.
func (s *secretsLog) assertNoSecrets(t *testing.T) {
	t.Helper()
	s.mu.Lock()
	text := s.buf.String()
	s.mu.Unlock()
	for _, secret := range []string{testiam.SecretKey, testiam.SecretKey[:16], "X-Amz-Signature", "X-Amz-Credential", "Action=connect", testiam.AccessKey} {
		require.NotContains(t, text, secret, "a secret leaked into errors or logs")
	}
}

func queryOne(db *sql.DB) error {
	var n int
	if err := db.QueryRow("SELECT $1::int", 7).Scan(&n); err != nil {
		return err
	}
	if n != 7 {
		return fmt.Errorf("got %d", n)
	}
	return nil
}

// signAt signs exactly the request auth.BuildAuthToken signs, with the SDK's
// own v4 signer, but at the fake clock's time (BuildAuthToken always uses
// time.Now, so a simulated 16-minute run needs this).
func signAt(clk *testclock.Clock) func(ctx context.Context, endpoint, region, user string, creds aws.CredentialsProvider) (string, error) {
	return func(ctx context.Context, endpoint, region, user string, creds aws.CredentialsProvider) (string, error) {
		req, err := http.NewRequest("GET", "https://"+endpoint, nil)
		if err != nil {
			return "", err
		}
		q := req.URL.Query()
		q.Set("Action", "connect")
		q.Set("DBUser", user)
		q.Set("X-Amz-Expires", "900")
		req.URL.RawQuery = q.Encode()
		c, err := creds.Retrieve(ctx)
		if err != nil {
			return "", err
		}
		const emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
		uri, _, err := v4.NewSigner().PresignHTTP(ctx, c, req, emptyPayloadHash, "rds-db", region, clk.Now().UTC())
		return strings.TrimPrefix(uri, "https://"), err
	}
}

func TestIAMConnectAndQuery(t *testing.T) {
	p, dsn := testiam.Start(t)
	ts := rdsproxy.NewTokenSource(rdsproxy.TokenSourceOptions{Credentials: testiam.Credentials})
	db, err := rdsproxy.Open(dsn, rdsproxy.WithTokenSource(ts))
	require.NoError(t, err)
	defer db.Close()
	require.NoError(t, queryOne(db))
	require.EqualValues(t, 1, p.Authentications())
	require.EqualValues(t, 1, ts.Signings())
	require.NotContains(t, ts.String(), "X-Amz")
}

// TestIAMSixteenMinuteRun: with the clock moved past the token's 15 minutes,
// new connections keep authenticating, because each dial gets a valid token.
func TestIAMSixteenMinuteRun(t *testing.T) {
	clk := testclock.Start()
	p, dsn := testiam.Start(t, testiam.Clock(clk.Now))
	ts := rdsproxy.NewTokenSourceWithSigner(rdsproxy.TokenSourceOptions{Credentials: testiam.Credentials, Now: clk.Now}, signAt(clk))
	for minute := 0; minute <= 16; minute++ {
		db, err := rdsproxy.Open(dsn, rdsproxy.WithTokenSource(ts))
		require.NoError(t, err)
		require.NoError(t, queryOne(db), "new connection at minute %d", minute)
		db.Close()
		clk.Advance(time.Minute)
	}
	require.EqualValues(t, 17, p.Authentications())
	require.Zero(t, p.Rejections(), "no dial may present an expired token: last rejection %q", p.LastRejectReason())
	// 17 minutes with a 3-minute margin: a token is reused for 12 minutes, so 2 signings.
	require.EqualValues(t, 2, ts.Signings())
}

// TestIAMStormSharesOneSigning: 500 *sql.DB values (Lambda environments in
// one process) dial at once through the emulator to PgBouncer.
func TestIAMStormSharesOneSigning(t *testing.T) {
	bouncer := pgbouncerURL(t)
	u, _ := url.Parse(bouncer)
	p, dsn := testiam.Start(t, testiam.Backend(u.Host))
	ts := rdsproxy.NewTokenSource(rdsproxy.TokenSourceOptions{Credentials: testiam.Credentials})
	const envs = 500
	var wg sync.WaitGroup
	var failures atomic.Int64
	var first atomic.Value
	start := make(chan struct{})
	for range envs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			db, err := rdsproxy.Open(dsn, rdsproxy.WithTokenSource(ts))
			if err == nil {
				<-start
				err = queryOne(db)
				db.Close()
			}
			if err != nil && failures.Add(1) == 1 {
				first.Store(err)
			}
		}()
	}
	close(start)
	wg.Wait()
	require.Zero(t, failures.Load(), "first failure: %v", first.Load())
	require.EqualValues(t, envs, p.Authentications())
	require.EqualValues(t, 1, ts.Signings(), "500 concurrent dials must share one signing")
	require.Equal(t, 1, p.DistinctTokens())
}

// expiringCreds returns credentials that expire at a time the test controls.
type expiringCreds struct {
	clk       *testclock.Clock
	lifetime  time.Duration
	retrieved atomic.Int64
}

func (e *expiringCreds) Retrieve(context.Context) (aws.Credentials, error) {
	e.retrieved.Add(1)
	return aws.Credentials{AccessKeyID: testiam.AccessKey, SecretAccessKey: testiam.SecretKey, CanExpire: true,
		Expires: e.clk.Now().Add(e.lifetime), Source: "test"}, nil
}

// TestIAMExpiringCredentialsForceEarlierResign: a token still has minutes
// left, but the credentials that signed it expire within the margin, so the
// next dial signs again: STS and IRSA credentials can expire before a
// token's 15 minutes are up.
func TestIAMExpiringCredentialsForceEarlierResign(t *testing.T) {
	clk := testclock.Start()
	_, dsn := testiam.Start(t, testiam.Clock(clk.Now))
	creds := &expiringCreds{clk: clk, lifetime: 6 * time.Minute}
	ts := rdsproxy.NewTokenSourceWithSigner(rdsproxy.TokenSourceOptions{Credentials: creds, Now: clk.Now}, signAt(clk))
	dial := func() {
		db, err := rdsproxy.Open(dsn, rdsproxy.WithTokenSource(ts))
		require.NoError(t, err)
		require.NoError(t, queryOne(db))
		db.Close()
	}
	dial()
	require.EqualValues(t, 1, ts.Signings())
	clk.Advance(2 * time.Minute) // token: 13 min left; credentials: 4 min left
	dial()
	require.EqualValues(t, 1, ts.Signings(), "both still outside the 3-minute margin")
	clk.Advance(2 * time.Minute) // token: 11 min left; credentials: 2 min left
	dial()
	require.EqualValues(t, 2, ts.Signings(), "credentials expiring within the margin force a new signing")
	require.GreaterOrEqual(t, creds.retrieved.Load(), int64(2), "fresh credentials were retrieved")
}

// TestIAMRevokedTokenRetriedOnce: the proxy rejects a cached token once; the
// driver drops it, signs a new one and the caller sees no error.
func TestIAMRevokedTokenRetriedOnce(t *testing.T) {
	p, dsn := testiam.Start(t)
	ts := rdsproxy.NewTokenSource(rdsproxy.TokenSourceOptions{Credentials: testiam.Credentials})
	db, err := rdsproxy.Open(dsn, rdsproxy.WithTokenSource(ts))
	require.NoError(t, err)
	require.NoError(t, queryOne(db))
	db.Close()
	require.EqualValues(t, 1, ts.Signings())

	p.RejectNextAuth(1)
	time.Sleep(1100 * time.Millisecond) // X-Amz-Date has 1 s resolution: a re-sign must differ from the revoked token
	db, err = rdsproxy.Open(dsn, rdsproxy.WithTokenSource(ts))
	require.NoError(t, err)
	defer db.Close()
	require.NoError(t, queryOne(db), "the retry with a fresh token must succeed")
	require.EqualValues(t, 1, p.Rejections())
	require.EqualValues(t, 2, ts.Signings())
}

// TestIAMClearErrors: wrong region, wrong user, persistent rejection; each
// error says what to check and carries no secret.
func TestIAMClearErrors(t *testing.T) {
	logs := &secretsLog{}
	p, dsn := testiam.Start(t)
	check := func(name, dsn string, wantIs error, wantText ...string) {
		t.Run(name, func(t *testing.T) {
			db, err := rdsproxy.Open(dsn, rdsproxy.WithCredentialsProvider(testiam.Credentials),
				rdsproxy.WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
			require.NoError(t, err)
			defer db.Close()
			err = queryOne(db)
			require.Error(t, err)
			logs.add(err)
			logs.add(fmt.Sprintf("%+v %#v", err, err))
			require.True(t, errors.Is(err, wantIs), "got %v", err)
			for _, w := range wantText {
				require.Contains(t, err.Error(), w)
			}
		})
	}
	check("wrong region", strings.Replace(dsn, "aws_region="+testiam.Region, "aws_region=eu-west-1", 1),
		rdsproxy.ErrIAMAuth, "rds-db:connect", "eu-west-1", "clock")
	check("wrong user", strings.Replace(dsn, "postgres://postgres@", "postgres://someone_else@", 1),
		rdsproxy.ErrIAMAuth, "someone_else", "rds-db:connect")
	p.RejectNextAuth(1000)
	check("always rejected", dsn, rdsproxy.ErrIAMAuth, "dbuser:prx-")
	p.RejectNextAuth(-1000)
	logs.assertNoSecrets(t)
}

func TestIAMRefusedBeforeDialing(t *testing.T) {
	// sslmode=disable with iam=true: refused by Open, before any dial.
	_, err := rdsproxy.Open("postgres://app@my-proxy.proxy-abc.us-east-1.rds.amazonaws.com:5432/appdb?iam=true&sslmode=disable")
	require.ErrorIs(t, err, rdsproxy.ErrInsecureIAM)
	_, err = rdsproxy.NewConnector("postgres://app@my-proxy.proxy-abc.us-east-1.rds.amazonaws.com:5432/appdb?iam=true&sslmode=prefer")
	require.ErrorIs(t, err, rdsproxy.ErrInsecureIAM)

	// No region anywhere: refused by NewConnector, not at the first query.
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	_, err = rdsproxy.NewConnector("postgres://app@db.internal.example:5432/appdb?iam=true")
	require.ErrorIs(t, err, rdsproxy.ErrNoRegion)

	// The region comes from the proxy host name; from AWS_REGION before that.
	c, err := rdsproxy.NewConnector("postgres://app@my-proxy.proxy-abc123.eu-central-2.rds.amazonaws.com:5432/appdb?iam=true")
	require.NoError(t, err)
	require.Equal(t, "eu-central-2", c.Config().AWSRegion)
	c.Close()
	t.Setenv("AWS_REGION", "ap-southeast-3")
	c, err = rdsproxy.NewConnector("postgres://app@my-proxy.proxy-abc123.eu-central-2.rds.amazonaws.com:5432/appdb?iam=true")
	require.NoError(t, err)
	require.Equal(t, "ap-southeast-3", c.Config().AWSRegion)
	c.Close()

	// IAM options without iam=true are a mistake worth reporting.
	_, err = rdsproxy.NewConnector("postgres://app@h/db?sslmode=disable", rdsproxy.WithCredentialsProvider(testiam.Credentials))
	require.ErrorIs(t, err, rdsproxy.ErrConfig)
	require.Contains(t, err.Error(), "iam=true")
}

func TestTokenFuncSetsPassword(t *testing.T) {
	// The emulator verifies the token, over TLS with its test CA; the DSN has
	// no iam=true, so the token comes from the function alone.
	p, dsn := testiam.Start(t)
	dsn = strings.Replace(dsn, "iam=true&", "", 1)
	var calls atomic.Int64
	db, err := rdsproxy.Open(dsn,
		rdsproxy.WithTokenFunc(func(ctx context.Context, host string, port uint16, user string) (string, error) {
			calls.Add(1)
			return auth.BuildAuthToken(ctx, net.JoinHostPort(host, strconv.Itoa(int(port))), testiam.Region, user, testiam.Credentials)
		}))
	require.NoError(t, err)
	defer db.Close()
	require.NoError(t, queryOne(db))
	require.EqualValues(t, 1, calls.Load())
	require.EqualValues(t, 1, p.Authentications())
}

// plainServer is a PostgreSQL look-alike without TLS that asks every client
// for a clear-text password, as a spoofed endpoint would, and records every
// byte it receives.
type plainServer struct {
	ln      net.Listener
	accepts atomic.Int64
	mu      sync.Mutex
	got     bytes.Buffer
}

func startPlainServer(t *testing.T) *plainServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &plainServer{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepts.Add(1)
			go s.serve(c)
		}
	}()
	return s
}

func (s *plainServer) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	readMsg := func(typed bool) ([]byte, error) {
		n := 4
		if typed {
			n = 5
		}
		head := make([]byte, n)
		if _, err := io.ReadFull(c, head); err != nil {
			return nil, err
		}
		size := int(binary.BigEndian.Uint32(head[n-4:]))
		if size < 4 || size > 1<<16 {
			return nil, errors.New("bad length")
		}
		body := make([]byte, size-4)
		_, err := io.ReadFull(c, body)
		s.mu.Lock()
		s.got.Write(head)
		s.got.Write(body)
		s.mu.Unlock()
		return body, err
	}
	for {
		body, err := readMsg(false)
		if err != nil {
			return
		}
		if len(body) == 4 && binary.BigEndian.Uint32(body) == 80877103 { // SSLRequest
			c.Write([]byte("N")) // no TLS here
			continue
		}
		break // the startup message
	}
	c.Write([]byte{'R', 0, 0, 0, 8, 0, 0, 0, 3}) // AuthenticationCleartextPassword
	readMsg(true)                                // the password, if the client sends it
}

func (s *plainServer) received() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.got.String()
}

// TestTokenFuncNeedsVerifiedTLS: a token from WithTokenFunc follows the TLS
// rule of iam=true. Against a plain listener that asks for a clear-text
// password, an sslmode that allows plaintext or skips the name check is
// refused by Open before any dial, and verify-full refuses the server;
// either way the token never leaves the process.
func TestTokenFuncNeedsVerifiedTLS(t *testing.T) {
	const token = "tok-S3cr3t-bearer"
	srv := startPlainServer(t)
	var calls atomic.Int64
	tokenFunc := rdsproxy.WithTokenFunc(func(context.Context, string, uint16, string) (string, error) {
		calls.Add(1)
		return token, nil
	})
	base := "postgres://app@" + srv.ln.Addr().String() + "/appdb?connect_timeout=5"
	for _, mode := range []string{"disable", "allow", "prefer", "require", "verify-ca"} {
		dsn := base + "&sslmode=" + mode
		_, err := rdsproxy.Open(dsn, tokenFunc)
		require.ErrorIs(t, err, rdsproxy.ErrInsecureIAM, mode)
		require.Contains(t, err.Error(), "WithTokenFunc")
		_, err = rdsproxy.NewConnector(dsn, tokenFunc)
		require.ErrorIs(t, err, rdsproxy.ErrInsecureIAM, mode)
		_, err = rdsproxy.NewPgxpoolConfig(dsn, tokenFunc)
		require.ErrorIs(t, err, rdsproxy.ErrInsecureIAM, mode)
		cfg, err := rdsproxy.ParseConfig(dsn)
		require.NoError(t, err)
		_, err = rdsproxy.NewConnectorConfig(cfg, tokenFunc)
		require.ErrorIs(t, err, rdsproxy.ErrInsecureIAM, mode)
		// The option changed NewConnectorConfig's copy, not cfg.
		c, err := rdsproxy.NewConnectorConfig(cfg)
		require.NoError(t, err, mode)
		c.Close()
	}
	require.Zero(t, srv.accepts.Load(), "refused before any dial")

	// A Config edited after parsing to drop TLS is caught the same way.
	cfg, err := rdsproxy.ParseConfig(base)
	require.NoError(t, err)
	cfg.ConnConfig.TLSConfig = nil
	_, err = rdsproxy.NewConnectorConfig(cfg, tokenFunc)
	require.ErrorIs(t, err, rdsproxy.ErrInsecureIAM)

	// verify-full (the default) dials, and pgx gives up when the server
	// declines TLS: the token function may run, its token is never sent.
	db, err := rdsproxy.Open(base, tokenFunc)
	require.NoError(t, err)
	defer db.Close()
	require.Error(t, db.Ping())
	require.NotZero(t, srv.accepts.Load(), "the default dials the server")
	require.NotContains(t, srv.received(), token)

	// Control: the server does capture a password sent in clear text.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = pgconn.Connect(ctx, base+"&sslmode=disable&password="+token)
	require.Error(t, err)
	require.Contains(t, srv.received(), token)
}

// TestTokenSourceMarginBounds: a TokenSource's margin is checked where it
// reaches a connector; 0 is the default.
func TestTokenSourceMarginBounds(t *testing.T) {
	const dsn = "postgres://app@my-proxy.proxy-abc.us-east-1.rds.amazonaws.com/appdb?iam=true"
	for _, m := range []time.Duration{-time.Second, time.Nanosecond, 29 * time.Second, 15*time.Minute + 1, time.Hour} {
		ts := rdsproxy.NewTokenSource(rdsproxy.TokenSourceOptions{Credentials: testiam.Credentials, Margin: m})
		_, err := rdsproxy.NewConnector(dsn, rdsproxy.WithTokenSource(ts))
		require.ErrorIs(t, err, rdsproxy.ErrConfig, "margin %s", m)
		require.Contains(t, err.Error(), "Margin")
		require.Contains(t, err.Error(), "from 30s to 15m")
		_, err = rdsproxy.NewPgxpoolConfig(dsn, rdsproxy.WithTokenSource(ts))
		require.ErrorIs(t, err, rdsproxy.ErrConfig, "margin %s", m)
	}
	for _, m := range []time.Duration{0, 30 * time.Second, 3 * time.Minute, 15 * time.Minute} {
		ts := rdsproxy.NewTokenSource(rdsproxy.TokenSourceOptions{Credentials: testiam.Credentials, Margin: m})
		c, err := rdsproxy.NewConnector(dsn, rdsproxy.WithTokenSource(ts))
		require.NoError(t, err, "margin %s", m)
		c.Close()
	}
}
