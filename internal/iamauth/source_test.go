package iamauth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/rds/auth"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rdsproxy/rdsproxy/internal/testclock"
)

const (
	testAKID   = "AKIDEXAMPLE"
	testSecret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
	testSTS    = "FQoGZXIvYXdzEXAMPLESESSIONTOKEN//////////wEaDEXAMPLE"
)

var testKey = Key{Region: "us-east-1", Host: "db.proxy-abc123.us-east-1.rds.amazonaws.com", Port: 5432, User: "app"}

func staticCreds() aws.CredentialsProvider {
	return credentials.NewStaticCredentialsProvider(testAKID, testSecret, "")
}

// countingSign wraps the real auth.BuildAuthToken and counts calls.
func countingSign(n *atomic.Int64) SignFunc {
	return func(ctx context.Context, endpoint, region, user string, creds aws.CredentialsProvider) (string, error) {
		n.Add(1)
		return auth.BuildAuthToken(ctx, endpoint, region, user, creds)
	}
}

func TestTokenRealSigning(t *testing.T) {
	for _, tc := range []struct {
		name    string
		session string
	}{{"static", ""}, {"session token", testSTS}} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewSource(Options{Credentials: credentials.NewStaticCredentialsProvider(testAKID, testSecret, tc.session)})
			tok, err := s.Token(context.Background(), testKey)
			require.NoError(t, err)
			assert.False(t, tok.Cached)
			require.True(t, strings.HasPrefix(tok.Value, testKey.Endpoint()+"?"), "token starts with host:port?")
			u, err := url.Parse("https://" + tok.Value)
			require.NoError(t, err)
			q := u.Query()
			assert.Equal(t, "connect", q.Get("Action"))
			assert.Equal(t, "app", q.Get("DBUser"))
			assert.Equal(t, "900", q.Get("X-Amz-Expires"))
			assert.Equal(t, "AWS4-HMAC-SHA256", q.Get("X-Amz-Algorithm"))
			assert.Regexp(t, `^AKIDEXAMPLE/\d{8}/us-east-1/rds-db/aws4_request$`, q.Get("X-Amz-Credential"))
			assert.Len(t, q.Get("X-Amz-Signature"), 64)
			assert.Equal(t, tc.session, q.Get("X-Amz-Security-Token"))
			assert.Equal(t, TokenLifetime, tok.ExpiresAt.Sub(tok.SignedAt))
		})
	}
}

func TestTokenReuseAndMarginBoundary(t *testing.T) {
	clk := testclock.Start()
	t0 := clk.Now()
	var signs atomic.Int64
	s := NewSource(Options{Credentials: staticCreds(), Sign: countingSign(&signs), Now: clk.Now})
	ctx := context.Background()

	first, err := s.Token(ctx, testKey)
	require.NoError(t, err)
	assert.False(t, first.Cached)
	assert.Equal(t, t0, first.SignedAt)

	// Last instant of reuse: just before lifetime - margin.
	clk.Set(t0.Add(TokenLifetime - DefaultMargin - time.Nanosecond))
	again, err := s.Token(ctx, testKey)
	require.NoError(t, err)
	assert.True(t, again.Cached)
	assert.Equal(t, first.Value, again.Value)
	assert.Equal(t, first.SignedAt, again.SignedAt)
	assert.EqualValues(t, 1, signs.Load())

	// Other keys have their own tokens.
	other := testKey
	other.User = "reporting"
	o, err := s.Token(ctx, other)
	require.NoError(t, err)
	assert.False(t, o.Cached)
	assert.EqualValues(t, 2, signs.Load())

	// At the boundary: exactly Margin left is not "more than Margin".
	boundary := t0.Add(TokenLifetime - DefaultMargin)
	clk.Set(boundary)
	fresh, err := s.Token(ctx, testKey)
	require.NoError(t, err)
	assert.False(t, fresh.Cached)
	assert.Equal(t, boundary, fresh.SignedAt)
	assert.EqualValues(t, 3, signs.Load())

	// Margin >= lifetime disables reuse.
	s2 := NewSource(Options{Credentials: staticCreds(), Sign: countingSign(&signs), Now: clk.Now, Margin: TokenLifetime})
	for range 3 {
		tok, err := s2.Token(ctx, testKey)
		require.NoError(t, err)
		assert.False(t, tok.Cached)
	}
	assert.EqualValues(t, 6, signs.Load())
}

// expiringProvider hands out temporary credentials whose expiry the test picks.
type expiringProvider struct {
	mu        sync.Mutex
	expiries  []time.Time // returned in order; the last one repeats
	retrieves int
}

func (p *expiringProvider) Retrieve(context.Context) (aws.Credentials, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	i := min(p.retrieves, len(p.expiries)-1)
	p.retrieves++
	return aws.Credentials{AccessKeyID: testAKID, SecretAccessKey: testSecret, SessionToken: testSTS,
		CanExpire: true, Expires: p.expiries[i]}, nil
}

func (p *expiringProvider) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.retrieves
}

func TestTokenResignsEarlyWhenCredentialsExpire(t *testing.T) {
	clk := testclock.Start()
	t0 := clk.Now()
	prov := &expiringProvider{expiries: []time.Time{t0.Add(5 * time.Minute), t0.Add(time.Hour)}}
	var signs atomic.Int64
	s := NewSource(Options{Credentials: prov, Sign: countingSign(&signs), Now: clk.Now})
	ctx := context.Background()

	tok, err := s.Token(ctx, testKey)
	require.NoError(t, err)
	assert.Equal(t, t0.Add(5*time.Minute), tok.ExpiresAt, "token dies with its credentials")

	// Credentials have 5 min: reusable until 5-3 = 2 min, although the token
	// itself would live 15.
	clk.Set(t0.Add(2*time.Minute - time.Nanosecond))
	tok, err = s.Token(ctx, testKey)
	require.NoError(t, err)
	assert.True(t, tok.Cached)
	assert.EqualValues(t, 1, signs.Load())

	clk.Set(t0.Add(2 * time.Minute))
	tok, err = s.Token(ctx, testKey)
	require.NoError(t, err)
	assert.False(t, tok.Cached)
	assert.EqualValues(t, 2, signs.Load())
	// The SDK cache still held the old credentials (not expired in real time):
	// the Source asked it to refresh, and signed with the new ones.
	assert.Equal(t, 2, prov.count())
	assert.Equal(t, t0.Add(2*time.Minute+TokenLifetime), tok.ExpiresAt)
}

func TestTokenWithCredentialsAlreadyNearExpiry(t *testing.T) {
	clk := testclock.Start()
	t0 := clk.Now()
	// The provider keeps returning credentials with only 1 minute left.
	prov := &expiringProvider{expiries: []time.Time{t0.Add(time.Minute)}}
	var signs atomic.Int64
	s := NewSource(Options{Credentials: prov, Sign: countingSign(&signs), Now: clk.Now})

	tok, err := s.Token(context.Background(), testKey)
	require.NoError(t, err, "usable now, so hand it out")
	assert.Equal(t, t0.Add(time.Minute), tok.ExpiresAt)
	assert.Equal(t, 2, prov.count(), "one refresh attempt, no loop")

	tok, err = s.Token(context.Background(), testKey)
	require.NoError(t, err)
	assert.False(t, tok.Cached, "not reusable: credentials expire within the margin")
	assert.EqualValues(t, 2, signs.Load())
	assert.Equal(t, 2, prov.count(), "the same near-expiry credentials are not refreshed again")
}

func TestTokenSingleflightStorm(t *testing.T) {
	const callers = 500
	var signs atomic.Int64
	release := make(chan struct{})
	sign := func(ctx context.Context, endpoint, region, user string, creds aws.CredentialsProvider) (string, error) {
		signs.Add(1)
		<-release // hold the signing until the storm has gathered
		return auth.BuildAuthToken(ctx, endpoint, region, user, creds)
	}
	s := NewSource(Options{Credentials: staticCreds(), Sign: sign})

	var started, done sync.WaitGroup
	started.Add(callers)
	done.Add(callers)
	values := make([]string, callers)
	errs := make([]error, callers)
	for i := range callers {
		go func() {
			defer done.Done()
			started.Done()
			tok, err := s.Token(context.Background(), testKey)
			values[i], errs[i] = tok.Value, err
		}()
	}
	started.Wait()
	close(release)
	done.Wait()

	// Exactly one signing whatever the interleaving: late arrivals find the
	// fresh token in the cache.
	assert.EqualValues(t, 1, signs.Load())
	for i := range callers {
		require.NoError(t, errs[i])
		require.Equal(t, values[0], values[i])
	}
}

func TestInvalidate(t *testing.T) {
	clk := testclock.Start()
	t0 := clk.Now()
	var signs atomic.Int64
	s := NewSource(Options{Credentials: staticCreds(), Sign: countingSign(&signs), Now: clk.Now})
	ctx := context.Background()

	tok1, err := s.Token(ctx, testKey)
	require.NoError(t, err)

	// A failure of an older token does not drop the newer one.
	s.Invalidate(testKey, t0.Add(-time.Second))
	tok, err := s.Token(ctx, testKey)
	require.NoError(t, err)
	assert.True(t, tok.Cached)

	// Failure of this very token drops it.
	s.Invalidate(testKey, tok1.SignedAt)
	clk.Set(t0.Add(time.Second))
	tok2, err := s.Token(ctx, testKey)
	require.NoError(t, err)
	assert.False(t, tok2.Cached)
	assert.EqualValues(t, 2, signs.Load())

	// A second goroutine reporting the same old failure late keeps tok2.
	s.Invalidate(testKey, tok1.SignedAt)
	tok, err = s.Token(ctx, testKey)
	require.NoError(t, err)
	assert.True(t, tok.Cached)
	assert.Equal(t, tok2.SignedAt, tok.SignedAt)

	// Unknown keys are a no-op.
	s.Invalidate(Key{Host: "nope"}, t0)
}

func TestLazyLoadConfigFailureThenRecovery(t *testing.T) {
	var loads atomic.Int64
	fail := atomic.Bool{}
	fail.Store(true)
	s := NewSource(Options{LoadConfig: func(ctx context.Context) (aws.Config, error) {
		loads.Add(1)
		if fail.Load() {
			return aws.Config{}, errors.New("no EC2 IMDS role found")
		}
		return aws.Config{Credentials: staticCreds()}, nil
	}})
	assert.EqualValues(t, 0, loads.Load(), "NewSource does no I/O")

	_, err := s.Token(context.Background(), testKey)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "rdsproxy: IAM: load AWS config: no EC2 IMDS role found")

	fail.Store(false)
	tok, err := s.Token(context.Background(), testKey)
	require.NoError(t, err, "a failed load is retried")
	assert.NotEmpty(t, tok.Value)

	other := testKey
	other.User = "other"
	_, err = s.Token(context.Background(), other)
	require.NoError(t, err)
	assert.EqualValues(t, 2, loads.Load(), "a successful load is kept")
}

func TestLoadConfigNoCredentials(t *testing.T) {
	s := NewSource(Options{LoadConfig: func(context.Context) (aws.Config, error) { return aws.Config{}, nil }})
	_, err := s.Token(context.Background(), testKey)
	require.ErrorContains(t, err, "no credentials provider")
}

func TestContextCancelDuringLoadConfig(t *testing.T) {
	entered := make(chan struct{})
	var block atomic.Bool
	var blockedLoads atomic.Int64
	block.Store(true)
	s := NewSource(Options{LoadConfig: func(ctx context.Context) (aws.Config, error) {
		if block.Load() {
			if blockedLoads.Add(1) == 1 {
				close(entered)
			}
			<-ctx.Done() // like an IMDS call on a machine without IMDS
			return aws.Config{}, ctx.Err()
		}
		return aws.Config{Credentials: staticCreds()}, nil
	}})

	ctx1, cancel1 := context.WithCancel(context.Background())
	res1 := make(chan error, 1)
	go func() { _, err := s.Token(ctx1, testKey); res1 <- err }()
	<-entered

	// A second caller waits for the load and must be able to give up on its own.
	ctx2, cancel2 := context.WithCancel(context.Background())
	res2 := make(chan error, 1)
	go func() { _, err := s.Token(ctx2, Key{Region: "eu-west-1", Host: "h", Port: 1, User: "u"}); res2 <- err }()
	cancel2()
	require.ErrorIs(t, <-res2, context.Canceled)

	cancel1()
	require.ErrorIs(t, <-res1, context.Canceled)

	require.EqualValues(t, 1, blockedLoads.Load(), "only the first caller may start a load while it is in progress")
	block.Store(false)
	_, err := s.Token(context.Background(), testKey)
	require.NoError(t, err, "cancellation is not cached")
}

// A caller whose ctx is fine must not fail because the caller that started the
// shared signing was cancelled.
func TestSharedSigningSurvivesLeaderCancel(t *testing.T) {
	entered := make(chan struct{}, 1)
	var calls atomic.Int64
	sign := func(ctx context.Context, endpoint, region, user string, creds aws.CredentialsProvider) (string, error) {
		if calls.Add(1) == 1 {
			entered <- struct{}{}
			<-ctx.Done()
			return "", ctx.Err()
		}
		return auth.BuildAuthToken(ctx, endpoint, region, user, creds)
	}
	s := NewSource(Options{Credentials: staticCreds(), Sign: sign})
	leaderCtx, cancel := context.WithCancel(context.Background())
	leader := make(chan error, 1)
	go func() { _, err := s.Token(leaderCtx, testKey); leader <- err }()
	<-entered
	follower := make(chan error, 1)
	go func() { _, err := s.Token(context.Background(), testKey); follower <- err }()
	cancel()
	require.ErrorIs(t, <-leader, context.Canceled)
	require.NoError(t, <-follower)
}

type failingProvider struct{}

func (failingProvider) Retrieve(context.Context) (aws.Credentials, error) {
	return aws.Credentials{}, errors.New("sts: AccessDenied")
}

func TestErrorsDoNotLeakSecrets(t *testing.T) {
	s := NewSource(Options{Credentials: failingProvider{}})
	_, err := s.Token(context.Background(), testKey)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "rdsproxy: IAM: retrieve AWS credentials:")
	assert.Contains(t, err.Error(), "sts: AccessDenied")

	// A signing error: report user, endpoint and region, never the secret.
	s = NewSource(Options{Credentials: credentials.NewStaticCredentialsProvider(testAKID, testSecret, testSTS),
		Sign: func(ctx context.Context, endpoint, region, user string, creds aws.CredentialsProvider) (string, error) {
			if _, err := auth.BuildAuthToken(ctx, endpoint, region, user, creds); err != nil {
				return "", err
			}
			return "", errors.New("boom")
		}})
	_, err = s.Token(context.Background(), testKey)
	require.Error(t, err)
	msg := fmt.Sprintf("%v %+v %#v", err, err, err)
	assert.Contains(t, msg, `rdsproxy: IAM: sign token for user "app" at db.proxy-abc123.us-east-1.rds.amazonaws.com:5432 (us-east-1): boom`)
	for _, secret := range []string{testSecret, testSTS, "X-Amz-Signature"} {
		assert.NotContains(t, msg, secret)
	}
}

func TestTokenNeverPrintsValue(t *testing.T) {
	s := NewSource(Options{Credentials: credentials.NewStaticCredentialsProvider(testAKID, testSecret, testSTS)})
	tok, err := s.Token(context.Background(), testKey)
	require.NoError(t, err)
	sig := tok.Value[strings.Index(tok.Value, "X-Amz-Signature=")+len("X-Amz-Signature="):]
	require.Len(t, sig, 64)

	type Exported struct{ Tok Token }
	var outs []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%T"} {
		outs = append(outs, fmt.Sprintf(verb, tok), fmt.Sprintf(verb, &tok), fmt.Sprintf(verb, Exported{tok}))
	}
	outs = append(outs, fmt.Sprint(tok), fmt.Sprintln(tok, &tok), tok.String(), tok.GoString())
	j, err := json.Marshal(tok)
	require.NoError(t, err)
	outs = append(outs, string(j))
	j, err = json.Marshal(map[string]any{"t": tok, "p": &tok})
	require.NoError(t, err)
	outs = append(outs, string(j))
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "token", tok, "ptr", &tok)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "token", tok, slog.Any("ptr", &tok))
	outs = append(outs, buf.String())

	all := strings.Join(outs, "\n")
	for _, secret := range []string{tok.Value, sig, testSTS, "X-Amz-", "Action=connect"} {
		assert.NotContains(t, all, secret)
	}
	assert.Contains(t, fmt.Sprintf("%+v", tok), "iamauth.Token{redacted, signed ")
	assert.Contains(t, buf.String(), `"redacted":true`)
	assert.Equal(t, "iamauth.Token{empty}", Token{}.String())
}

func TestUserProviderIsCached(t *testing.T) {
	var retrieves atomic.Int64
	p := aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
		retrieves.Add(1)
		return aws.Credentials{AccessKeyID: testAKID, SecretAccessKey: testSecret}, nil
	})
	s := NewSource(Options{Credentials: p})
	for _, u := range []string{"a", "b", "c"} {
		k := testKey
		k.User = u
		_, err := s.Token(context.Background(), k)
		require.NoError(t, err)
	}
	assert.EqualValues(t, 1, retrieves.Load(), "provider wrapped in aws.CredentialsCache")
}

func TestCacheBounded(t *testing.T) {
	s := NewSource(Options{Credentials: staticCreds(),
		Sign: func(context.Context, string, string, string, aws.CredentialsProvider) (string, error) {
			return "t", nil
		}})
	for i := range MaxCachedKeys + 50 {
		k := testKey
		k.User = fmt.Sprint("u", i)
		_, err := s.Token(context.Background(), k)
		require.NoError(t, err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	assert.LessOrEqual(t, len(s.cache), MaxCachedKeys)
}

func TestKeyEndpoint(t *testing.T) {
	assert.Equal(t, "h.example:5432", Key{Host: "h.example", Port: 5432}.Endpoint())
	assert.Equal(t, "[::1]:6432", Key{Host: "::1", Port: 6432}.Endpoint())
}

func BenchmarkTokenCachedHit(b *testing.B) {
	s := NewSource(Options{Credentials: staticCreds()})
	ctx := context.Background()
	if _, err := s.Token(ctx, testKey); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		tok, err := s.Token(ctx, testKey)
		if err != nil || !tok.Cached {
			b.Fatal("expected cache hit", err)
		}
	}
}

func BenchmarkTokenCachedHitParallel(b *testing.B) {
	s := NewSource(Options{Credentials: staticCreds()})
	ctx := context.Background()
	if _, err := s.Token(ctx, testKey); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Token(ctx, testKey); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkTokenSigning(b *testing.B) {
	// Margin = lifetime: nothing is reusable, every call signs.
	s := NewSource(Options{Credentials: staticCreds(), Margin: TokenLifetime})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		tok, err := s.Token(ctx, testKey)
		if err != nil || tok.Cached {
			b.Fatal("expected signing", err)
		}
	}
}
