package proxyemu

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/rds/auth"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/rdsproxy/rdsproxy/internal/iamauth"
	"github.com/rdsproxy/rdsproxy/internal/testclock"
	"github.com/rdsproxy/rdsproxy/internal/testdb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

const (
	region     = "us-east-1"
	testAKID   = "AKIDEXAMPLE"
	testSecret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
	testSTS    = "FQoGZXIvYXdzEXAMPLESESSIONTOKEN"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var staticCreds = credentials.NewStaticCredentialsProvider(testAKID, testSecret, "")

func startProxy(t testing.TB, mods ...func(*Config)) (*Proxy, *testclock.Clock) {
	t.Helper()
	clk := testclock.Start()
	cfg := Config{Region: region, Credentials: staticCreds, Backend: testdb.Backend(t), Now: clk.Now}
	for _, m := range mods {
		m(&cfg)
	}
	p, err := Start(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, p.Close()) })
	return p, clk
}

func token(t testing.TB, endpoint, region, user string, creds aws.CredentialsProvider) string {
	t.Helper()
	tok, err := auth.BuildAuthToken(context.Background(), endpoint, region, user, creds)
	require.NoError(t, err)
	return tok
}

func connConfig(t testing.TB, p *Proxy, user, password string, useTLS bool) *pgconn.Config {
	t.Helper()
	cfg, err := pgconn.ParseConfig(fmt.Sprintf("host=%s port=%d user=%s database=postgres sslmode=disable connect_timeout=10",
		p.Host(), p.Port(), user))
	require.NoError(t, err)
	if useTLS {
		// verify-full: CA pinned, host name checked.
		cfg.TLSConfig = &tls.Config{RootCAs: p.CACertPool(), ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	}
	cfg.Password = password
	return cfg
}

func connect(t testing.TB, p *Proxy, user, password string) (*pgconn.PgConn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := pgconn.ConnectConfig(ctx, connConfig(t, p, user, password, true))
	if err == nil {
		t.Cleanup(func() { _ = c.Close(context.Background()) })
	}
	return c, err
}

func selectOne(t *testing.T, c *pgconn.PgConn) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := c.Exec(ctx, "SELECT 1").ReadAll()
	if err != nil {
		return err
	}
	require.Len(t, res, 1)
	require.Equal(t, "1", string(res[0].Rows[0][0]))
	return nil
}

func pgErr(t *testing.T, err error) *pgconn.PgError {
	t.Helper()
	require.Error(t, err)
	var pe *pgconn.PgError
	require.True(t, errors.As(err, &pe), "want *pgconn.PgError, got %T: %v", err, err)
	return pe
}

func TestValidTokenAccepted(t *testing.T) {
	testdb.Require(t)
	p, _ := startProxy(t)
	tok := token(t, p.Addr(), region, "postgres", staticCreds)

	c, err := connect(t, p, "postgres", tok)
	require.NoError(t, err)
	require.NoError(t, selectOne(t, c))
	assert.Equal(t, "on", c.ParameterStatus("integer_datetimes"), "backend ParameterStatus relayed")

	// Same token again: accepted (valid 15 min), one distinct token.
	c2, err := connect(t, p, "postgres", tok)
	require.NoError(t, err)
	require.NoError(t, selectOne(t, c2))
	assert.EqualValues(t, 2, p.Authentications())
	assert.EqualValues(t, 0, p.Rejections())
	assert.Equal(t, 1, p.DistinctTokens())

	// A newly signed token counts as another distinct one. X-Amz-Date has
	// second resolution, so move the signing clock past the first token's second.
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second)))
	_, err = connect(t, p, "postgres", token(t, p.Addr(), region, "postgres", staticCreds))
	require.NoError(t, err)
	assert.Equal(t, 2, p.DistinctTokens())
}

func TestValidTokenWithPgxAndStartupParams(t *testing.T) {
	testdb.Require(t)
	p, _ := startProxy(t)
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=127.0.0.1 port=%d user=postgres database=postgres sslmode=disable application_name=emu-test", p.Port()))
	require.NoError(t, err)
	cfg.TLSConfig = &tls.Config{RootCAs: p.CACertPool(), ServerName: "127.0.0.1"}
	cfg.Password = token(t, p.Addr(), region, "postgres", staticCreds)
	ctx := context.Background()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	require.NoError(t, err)
	defer conn.Close(ctx)

	var one int
	var app string
	var ssl bool
	require.NoError(t, conn.QueryRow(ctx, "SELECT 1, current_setting('application_name'), $1::bool", true).Scan(&one, &app, &ssl))
	assert.Equal(t, 1, one)
	assert.Equal(t, "emu-test", app, "startup parameters reach the backend")

	// Extended protocol, a transaction and COPY all go through the relay.
	tx, err := conn.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "CREATE TEMP TABLE t (n int)")
	require.NoError(t, err)
	n, err := tx.CopyFrom(ctx, pgx.Identifier{"t"}, []string{"n"}, pgx.CopyFromRows([][]any{{1}, {2}, {3}}))
	require.NoError(t, err)
	assert.EqualValues(t, 3, n)
	var sum int
	require.NoError(t, tx.QueryRow(ctx, "SELECT sum(n) FROM t").Scan(&sum))
	assert.Equal(t, 6, sum)
	require.NoError(t, tx.Rollback(ctx))
}

func TestSessionTokenCredentials(t *testing.T) {
	testdb.Require(t)
	sts := credentials.NewStaticCredentialsProvider(testAKID, testSecret, testSTS)
	p, _ := startProxy(t, func(c *Config) { c.Credentials = sts })
	c, err := connect(t, p, "postgres", token(t, p.Addr(), region, "postgres", sts))
	require.NoError(t, err)
	require.NoError(t, selectOne(t, c))

	// A token without the session token (or another one) is refused.
	_, err = connect(t, p, "postgres", token(t, p.Addr(), region, "postgres", staticCreds))
	assert.Equal(t, CodeAuthFailed, pgErr(t, err).Code)
	assert.Equal(t, ReasonSessionToken, p.LastRejectReason())
}

// Rejections happen before any backend is dialled: these run without PostgreSQL.
func TestRejections(t *testing.T) {
	p, clk := startProxy(t, func(c *Config) { c.Backend = "127.0.0.1:1" })
	otherPort := fmt.Sprintf("127.0.0.1:%d", int(p.Port())%65535+1)
	wrongSecret := credentials.NewStaticCredentialsProvider(testAKID, "not-the-secret", "")
	wrongKey := credentials.NewStaticCredentialsProvider("AKIDOTHER", testSecret, "")
	withSTS := credentials.NewStaticCredentialsProvider(testAKID, testSecret, testSTS)
	valid := token(t, p.Addr(), region, "postgres", staticCreds)

	cases := []struct {
		name   string
		token  func() string
		reason string
		clock  time.Duration // moved before connecting, moved back after
	}{
		{"wrong region", func() string { return token(t, p.Addr(), "eu-west-1", "postgres", staticCreds) }, ReasonRegion, 0},
		{"wrong user", func() string { return token(t, p.Addr(), region, "alice", staticCreds) }, ReasonDBUser, 0},
		{"wrong port", func() string { return token(t, otherPort, region, "postgres", staticCreds) }, ReasonEndpoint, 0},
		{"wrong host name", func() string {
			return token(t, fmt.Sprintf("localhost:%d", p.Port()), region, "postgres", staticCreds)
		}, ReasonEndpoint, 0},
		{"expired", func() string { return valid }, ReasonExpired, 16 * time.Minute},
		{"from the future", func() string { return valid }, ReasonNotYetValid, -10 * time.Minute},
		{"tampered signature", func() string {
			last := valid[len(valid)-1]
			repl := byte('0')
			if last == '0' {
				repl = '1'
			}
			return valid[:len(valid)-1] + string(repl)
		}, ReasonSignature, 0},
		{"extra parameter", func() string { return valid + "&Extra=1" }, ReasonSignature, 0},
		{"wrong secret key", func() string { return token(t, p.Addr(), region, "postgres", wrongSecret) }, ReasonSignature, 0},
		{"wrong access key", func() string { return token(t, p.Addr(), region, "postgres", wrongKey) }, ReasonAccessKey, 0},
		{"unexpected session token", func() string { return token(t, p.Addr(), region, "postgres", withSTS) }, ReasonSessionToken, 0},
		{"plain password", func() string { return "hunter2" }, ReasonEndpoint, 0},
		{"garbage", func() string { return "%%%" }, ReasonMalformed, 0},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tok := tc.token()
			clk.Advance(tc.clock)
			defer clk.Advance(-tc.clock)
			_, err := connect(t, p, "postgres", tok)
			pe := pgErr(t, err)
			assert.Equal(t, "FATAL", pe.Severity)
			assert.Equal(t, CodeAuthFailed, pe.Code)
			assert.Equal(t, "IAM authentication failed for user postgres. Check the IAM token for this user and try again.", pe.Message)
			assert.Equal(t, tc.reason, p.LastRejectReason())
			assert.EqualValues(t, i+1, p.Rejections())
			assert.NotContains(t, err.Error(), "X-Amz-Signature", "the error does not echo the token")
		})
	}
	assert.EqualValues(t, 0, p.Authentications())
	assert.Equal(t, 0, p.DistinctTokens())
}

func TestExpiryBoundary(t *testing.T) {
	p, clk := startProxy(t)
	tok := token(t, p.Addr(), region, "postgres", staticCreds)
	ctx := context.Background()
	// The token's own X-Amz-Date (second resolution) is at or after clk's start.
	clk.Advance(tokenLifetime - time.Second)
	assert.Empty(t, p.verifyToken(ctx, tok, "postgres"))
	clk.Advance(2 * time.Second)
	assert.Equal(t, ReasonExpired, p.verifyToken(ctx, tok, "postgres"))
}

func TestPlaintextRefused(t *testing.T) {
	p, _ := startProxy(t, func(c *Config) { c.Backend = "127.0.0.1:1" })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := pgconn.ConnectConfig(ctx, connConfig(t, p, "postgres", token(t, p.Addr(), region, "postgres", staticCreds), false))
	pe := pgErr(t, err)
	assert.Equal(t, "FATAL", pe.Severity)
	assert.Equal(t, CodeSSLRequired, pe.Code)
	assert.Equal(t, "IAM authentication is allowed only with SSL connections.", pe.Message)
	assert.EqualValues(t, 0, p.Rejections()+p.Authentications(), "refused before authentication")
}

func TestCommandLineOptionsRefused(t *testing.T) {
	p, _ := startProxy(t, func(c *Config) { c.Backend = "127.0.0.1:1" })
	cfg := connConfig(t, p, "postgres", token(t, p.Addr(), region, "postgres", staticCreds), true)
	cfg.RuntimeParams["options"] = "-c search_path=x"
	_, err := pgconn.ConnectConfig(context.Background(), cfg)
	pe := pgErr(t, err)
	assert.Equal(t, CodeNotSupported, pe.Code)
	assert.Equal(t, MsgOptionsRefused, pe.Message)
}

func TestUntrustedClientRefusesEmulatorCert(t *testing.T) {
	p, _ := startProxy(t, func(c *Config) { c.Backend = "127.0.0.1:1" })
	cfg := connConfig(t, p, "postgres", "x", true)
	cfg.TLSConfig.RootCAs = nil // system roots do not know the test CA
	_, err := pgconn.ConnectConfig(context.Background(), cfg)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "certificate")
}

func TestRejectNextAuth(t *testing.T) {
	testdb.Require(t)
	p, _ := startProxy(t)
	tok := token(t, p.Addr(), region, "postgres", staticCreds)
	p.RejectNextAuth(1)
	_, err := connect(t, p, "postgres", tok)
	assert.Equal(t, CodeAuthFailed, pgErr(t, err).Code)
	assert.Equal(t, ReasonForced, p.LastRejectReason())

	c, err := connect(t, p, "postgres", tok)
	require.NoError(t, err, "only the next one is rejected")
	require.NoError(t, selectOne(t, c))
	assert.EqualValues(t, 1, p.Rejections())
	assert.EqualValues(t, 1, p.Authentications())
}

func TestBorrowTimeout(t *testing.T) {
	testdb.Require(t)
	p, _ := startProxy(t)
	tok := token(t, p.Addr(), region, "postgres", staticCreds)
	ctx := context.Background()

	open, err := connect(t, p, "postgres", tok)
	require.NoError(t, err)
	inTx, err := connect(t, p, "postgres", tok)
	require.NoError(t, err)
	_, err = inTx.Exec(ctx, "BEGIN").ReadAll()
	require.NoError(t, err)

	p.SetBorrowTimeout(true)

	// New session: FATAL after authentication.
	_, err = connect(t, p, "postgres", tok)
	pe := pgErr(t, err)
	assert.Equal(t, MsgBorrowTimeout, pe.Message)
	assert.Equal(t, "FATAL", pe.Severity)

	// Open session, simple and extended protocol: ERROR, session survives.
	pe = pgErr(t, selectOne(t, open))
	assert.Equal(t, MsgBorrowTimeout, pe.Message)
	assert.Equal(t, CodeBorrowTimeout, pe.Code)
	err = open.ExecParams(ctx, "SELECT $1::int", [][]byte{[]byte("7")}, nil, nil, nil).Read().Err
	assert.Equal(t, MsgBorrowTimeout, pgErr(t, err).Message)

	// Inside a transaction the backend is already held.
	require.NoError(t, selectOne(t, inTx))
	_, err = inTx.Exec(ctx, "COMMIT").ReadAll()
	require.NoError(t, err)

	p.SetBorrowTimeout(false)
	require.NoError(t, selectOne(t, open))
	res := open.ExecParams(ctx, "SELECT $1::int", [][]byte{[]byte("7")}, nil, nil, nil).Read()
	require.NoError(t, res.Err)
	assert.Equal(t, "7", string(res.Rows[0][0]))
}

func TestIdleClientTimeout(t *testing.T) {
	testdb.Require(t)
	p, _ := startProxy(t, func(c *Config) { c.IdleClientTimeout = 100 * time.Millisecond })
	c, err := connect(t, p, "postgres", token(t, p.Addr(), region, "postgres", staticCreds))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return p.ClientConnections() == 0 }, 10*time.Second, 10*time.Millisecond)
	require.Error(t, selectOne(t, c), "the client sees the closed connection on next use")
}

func TestDropIdleClients(t *testing.T) {
	testdb.Require(t)
	p, _ := startProxy(t)
	tok := token(t, p.Addr(), region, "postgres", staticCreds)
	c1, err := connect(t, p, "postgres", tok)
	require.NoError(t, err)
	c2, err := connect(t, p, "postgres", tok)
	require.NoError(t, err)
	assert.Equal(t, 2, p.DropIdleClients())
	require.Error(t, selectOne(t, c1))
	require.Error(t, selectOne(t, c2))
	require.Eventually(t, func() bool { return p.ClientConnections() == 0 }, 10*time.Second, 10*time.Millisecond)
}

func TestBackendUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := l.Addr().String()
	require.NoError(t, l.Close())
	p, _ := startProxy(t, func(c *Config) { c.Backend = dead })
	_, err = connect(t, p, "postgres", token(t, p.Addr(), region, "postgres", staticCreds))
	assert.Contains(t, pgErr(t, err).Message, "cannot reach backend")
	assert.EqualValues(t, 1, p.Authentications(), "the token itself was fine")
}

func TestGSSEncAndCancelRequests(t *testing.T) {
	p, _ := startProxy(t, func(c *Config) { c.Backend = "127.0.0.1:1" })

	// GSSEncRequest is declined with 'N'; SSLRequest may follow.
	c, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer c.Close()
	fe := pgproto3.NewFrontend(c, c)
	fe.Send(&pgproto3.GSSEncRequest{})
	require.NoError(t, fe.Flush())
	b := make([]byte, 1)
	_, err = io.ReadFull(c, b)
	require.NoError(t, err)
	assert.Equal(t, byte('N'), b[0])
	fe.Send(&pgproto3.SSLRequest{})
	require.NoError(t, fe.Flush())
	_, err = io.ReadFull(c, b)
	require.NoError(t, err)
	assert.Equal(t, byte('S'), b[0])

	// CancelRequest: not supported, the connection is just closed.
	c2, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer c2.Close()
	fe2 := pgproto3.NewFrontend(c2, c2)
	fe2.Send(&pgproto3.CancelRequest{ProcessID: 1, SecretKey: []byte{0, 0, 0, 1}})
	require.NoError(t, fe2.Flush())
	_ = c2.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = c2.Read(b)
	assert.ErrorIs(t, err, io.EOF)
}

func TestCloseLeavesNoGoroutines(t *testing.T) {
	testdb.Require(t)
	clk := testclock.Start()
	p, err := Start(Config{Region: region, Credentials: staticCreds, Backend: testdb.Backend(t), Now: clk.Now,
		IdleClientTimeout: time.Hour})
	require.NoError(t, err)
	tok := token(t, p.Addr(), region, "postgres", staticCreds)

	var conns []*pgconn.PgConn
	for range 3 {
		cfg := connConfig(t, p, "postgres", tok, true)
		c, err := pgconn.ConnectConfig(context.Background(), cfg)
		require.NoError(t, err)
		require.NoError(t, selectOne(t, c))
		conns = append(conns, c)
	}
	// One client stuck before TLS, one inside TLS setup.
	stuck, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer stuck.Close()

	require.Eventually(t, func() bool { return p.ClientConnections() == 4 }, 10*time.Second, 5*time.Millisecond)
	require.NoError(t, p.Close())
	assert.Equal(t, 0, p.ClientConnections())
	for _, c := range conns {
		require.Error(t, selectOne(t, c), "relayed connections are closed")
		_ = c.Close(context.Background())
	}
	_, err = net.DialTimeout("tcp", p.Addr(), time.Second)
	require.Error(t, err, "listener closed")
	require.NoError(t, p.Close(), "Close is idempotent")
	goleak.VerifyNone(t)
}

func TestMD5Password(t *testing.T) {
	// Reference value computed independently: "md5" + md5(md5(password+user) + salt).
	assert.Equal(t, "md5bb41a296aab6baccb36ff243a562abff", md5Password("postgres", "secret", [4]byte{1, 2, 3, 4}))
}

func TestStartValidation(t *testing.T) {
	_, err := Start(Config{})
	require.Error(t, err)
}

func TestCAPEM(t *testing.T) {
	p, _ := startProxy(t, func(c *Config) { c.Backend = "127.0.0.1:1" })
	assert.True(t, strings.HasPrefix(string(p.CAPEM()), "-----BEGIN CERTIFICATE-----"))
	assert.Equal(t, "127.0.0.1", p.Host())
	assert.Equal(t, fmt.Sprintf("127.0.0.1:%d", p.Port()), p.Addr())
}

// The connector's flow: token from iamauth.Source, auth failure detected with
// iamauth.IsAuthFailure, Invalidate, one retry.
func TestWithIAMAuthSource(t *testing.T) {
	testdb.Require(t)
	p, _ := startProxy(t)
	src := iamauth.NewSource(iamauth.Options{Credentials: staticCreds})
	key := iamauth.Key{Region: region, Host: p.Host(), Port: p.Port(), User: "postgres"}
	ctx := context.Background()

	dial := func() (*pgconn.PgConn, error) {
		tok, err := src.Token(ctx, key)
		require.NoError(t, err)
		c, err := connect(t, p, "postgres", tok.Value)
		if iamauth.IsAuthFailure(err) {
			src.Invalidate(key, tok.SignedAt)
			tok, err = src.Token(ctx, key)
			require.NoError(t, err)
			assert.False(t, tok.Cached, "retry uses a freshly signed token")
			c, err = connect(t, p, "postgres", tok.Value)
		}
		return c, err
	}

	c, err := dial()
	require.NoError(t, err)
	require.NoError(t, selectOne(t, c))

	p.RejectNextAuth(1)
	c, err = dial()
	require.NoError(t, err)
	require.NoError(t, selectOne(t, c))
	assert.EqualValues(t, 1, p.Rejections())
	assert.EqualValues(t, 2, p.Authentications())
}
