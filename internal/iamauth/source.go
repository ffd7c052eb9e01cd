// Package iamauth mints and caches RDS IAM authentication tokens for rdsproxy.
//
// A Source signs with auth.BuildAuthToken (never hand-written SigV4), caches one
// token per Key, reuses it while it has enough life left, shares one signing
// among concurrent misses, and loads AWS credentials lazily so that merely
// constructing a connector never touches the network.
package iamauth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/rds/auth"
	"golang.org/x/sync/singleflight"
)

const (
	// TokenLifetime is how long RDS (and RDS Proxy) accept a token after its
	// X-Amz-Date: BuildAuthToken always signs with X-Amz-Expires=900.
	TokenLifetime = 900 * time.Second

	// DefaultMargin is how much life a cached token (and the credentials that
	// signed it) must still have to be reused. It covers the time between
	// handing out the token and the proxy checking it: a dial that waits on DNS,
	// TCP and TLS, a connect timeout of up to ~15 s while Aurora Serverless
	// resumes, retries, and clock skew between this host and AWS (SigV4
	// tolerates a few minutes). Three minutes still reuses a token for 12 of
	// its 15 minutes, so signing stays rare.
	DefaultMargin = 3 * time.Minute

	// MaxCachedKeys bounds the cache. A process talks to a handful of
	// (endpoint, user) pairs; the bound only stops a bug (e.g. a user name per
	// request) from growing memory without limit.
	MaxCachedKeys = 256
)

// Key identifies a cached token. A token is bound to all four fields: the
// proxy checks the host:port it was signed for, the region of the credential
// scope and the DBUser.
type Key struct {
	Region string
	Host   string
	Port   uint16
	User   string
}

// Endpoint returns "host:port" as BuildAuthToken expects (IPv6 hosts bracketed).
func (k Key) Endpoint() string {
	return net.JoinHostPort(k.Host, strconv.Itoa(int(k.Port)))
}

// SignFunc has the shape of auth.BuildAuthToken without the options.
type SignFunc func(ctx context.Context, endpoint, region, user string, creds aws.CredentialsProvider) (string, error)

// Options configure a Source. The zero value is usable.
type Options struct {
	// Credentials signs the tokens. When nil, the default AWS configuration is
	// loaded (LoadConfig) on the first Token call.
	Credentials aws.CredentialsProvider
	// LoadConfig loads the AWS configuration when Credentials is nil. Default:
	// config.LoadDefaultConfig(ctx).
	LoadConfig func(ctx context.Context) (aws.Config, error)
	// Sign builds a token. Default: auth.BuildAuthToken. Tests wrap it to count.
	Sign SignFunc
	// Now is the clock used for cache decisions. Default: time.Now.
	Now func() time.Time
	// Margin: see DefaultMargin (used when Margin <= 0). A Margin of
	// TokenLifetime or more disables reuse.
	Margin time.Duration
}

// Source hands out IAM tokens. It is safe for concurrent use.
type Source struct {
	sign       SignFunc
	now        func() time.Time
	margin     time.Duration
	loadConfig func(ctx context.Context) (aws.Config, error)

	// creds is nil until credentials are known. loadSem is a one-slot
	// semaphore rather than a sync.Once or Mutex: a failed load must be retried
	// by the next caller, and callers waiting for someone else's load must be
	// able to give up when their own ctx ends.
	creds        atomic.Pointer[credsHolder]
	loadSem      chan struct{}
	refreshedFor atomic.Int64 // see retrieve

	mu    sync.RWMutex
	cache map[Key]entry

	group singleflight.Group
}

type credsHolder struct{ p aws.CredentialsProvider }

type entry struct {
	tok Token
	// reuseUntil is the last instant the token may be handed out from cache:
	// min(signed+lifetime, credentials expiry) - margin.
	reuseUntil time.Time
}

// NewSource returns a Source. It does no I/O.
func NewSource(opts Options) *Source {
	s := &Source{
		sign:       opts.Sign,
		now:        opts.Now,
		margin:     opts.Margin,
		loadConfig: opts.LoadConfig,
		loadSem:    make(chan struct{}, 1),
		cache:      make(map[Key]entry),
	}
	if s.sign == nil {
		s.sign = func(ctx context.Context, endpoint, region, user string, creds aws.CredentialsProvider) (string, error) {
			return auth.BuildAuthToken(ctx, endpoint, region, user, creds)
		}
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.margin <= 0 {
		s.margin = DefaultMargin
	}
	if s.loadConfig == nil {
		s.loadConfig = func(ctx context.Context) (aws.Config, error) { return config.LoadDefaultConfig(ctx) }
	}
	if opts.Credentials != nil {
		s.creds.Store(&credsHolder{p: wrapCache(opts.Credentials, 0)})
	}
	return s
}

// wrapCache puts p behind an aws.CredentialsCache unless it already is one:
// BuildAuthToken calls Retrieve on every signing, and an uncached provider
// (STS, IMDS, process) would make a network call each time.
func wrapCache(p aws.CredentialsProvider, window time.Duration) aws.CredentialsProvider {
	if _, ok := p.(*aws.CredentialsCache); ok {
		return p
	}
	return aws.NewCredentialsCache(p, func(o *aws.CredentialsCacheOptions) { o.ExpiryWindow = window })
}

// Token returns a token for k: a cached one while it has more than Margin of
// life left and its signing credentials do not expire within Margin, otherwise
// a freshly signed one. Concurrent misses for the same key share one signing.
func (s *Source) Token(ctx context.Context, k Key) (Token, error) {
	if t, ok := s.cached(k); ok {
		return t, nil
	}
	return s.signShared(ctx, k)
}

// cached returns k's cached token while it may still be reused.
func (s *Source) cached(k Key) (Token, bool) {
	now := s.now()
	s.mu.RLock()
	e, ok := s.cache[k]
	s.mu.RUnlock()
	if !ok || !now.Before(e.reuseUntil) {
		return Token{}, false
	}
	t := e.tok
	t.Cached = true
	return t, true
}

func (s *Source) signShared(ctx context.Context, k Key) (Token, error) {
	// The shared call runs under the ctx of whichever caller started it. If that
	// caller gives up, the others would receive its context error; they retry
	// (joining or starting another call) as long as their own ctx is alive.
	sfKey := k.Region + "\x00" + k.Endpoint() + "\x00" + k.User
	for {
		ch := s.group.DoChan(sfKey, func() (any, error) { return s.signAndStore(ctx, k) })
		select {
		case <-ctx.Done():
			return Token{}, fmt.Errorf("rdsproxy: IAM: token for user %q at %s: %w", k.User, k.Endpoint(), ctx.Err())
		case r := <-ch:
			if r.Err != nil {
				if ctx.Err() == nil && isContextErr(r.Err) {
					continue // another caller's cancellation, not ours
				}
				return Token{}, r.Err
			}
			return r.Val.(Token), nil
		}
	}
}

func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

func (s *Source) signAndStore(ctx context.Context, k Key) (Token, error) {
	// A goroutine that lost the race to start this call may arrive after
	// another call already stored a fresh token.
	if t, ok := s.cached(k); ok {
		return t, nil
	}
	now := s.now()

	provider, err := s.credentials(ctx)
	if err != nil {
		return Token{}, err
	}
	creds, err := s.retrieve(ctx, provider, now)
	if err != nil {
		return Token{}, err
	}

	// Sign with exactly the credentials just inspected, so the expiry we
	// record is the one of the credentials inside the token.
	pinned := aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) { return creds, nil })
	endpoint := k.Endpoint()
	value, err := s.sign(ctx, endpoint, k.Region, k.User, pinned)
	if err != nil {
		return Token{}, fmt.Errorf("rdsproxy: IAM: sign token for user %q at %s (%s): %w", k.User, endpoint, k.Region, err)
	}

	tok := Token{Value: value, SignedAt: now, ExpiresAt: now.Add(TokenLifetime)}
	if creds.CanExpire && creds.Expires.Before(tok.ExpiresAt) {
		tok.ExpiresAt = creds.Expires
	}
	s.store(k, entry{tok: tok, reuseUntil: tok.ExpiresAt.Add(-s.margin)})
	return tok, nil
}

// retrieve gets credentials and, when they expire within the margin, asks the
// cache to refresh them once. A token signed by credentials about to expire
// dies with them, and SDK caches (ExpiryWindow 0) would otherwise hand out the
// same near-expiry credentials until they are actually expired. If the refresh
// still yields near-expiry credentials they are used: the token works now, it
// just will not be reused.
//
// refreshedFor remembers the expiry of credentials already refreshed once, so
// that a provider that keeps returning near-expiry credentials costs one
// refresh, not one per signing.
func (s *Source) retrieve(ctx context.Context, p aws.CredentialsProvider, now time.Time) (aws.Credentials, error) {
	creds, err := p.Retrieve(ctx)
	nearExpiry := func(c aws.Credentials) bool { return c.CanExpire && !now.Add(s.margin).Before(c.Expires) }
	if err == nil && nearExpiry(creds) && s.refreshedFor.Load() != creds.Expires.UnixNano() {
		if c, ok := p.(*aws.CredentialsCache); ok {
			s.refreshedFor.Store(creds.Expires.UnixNano())
			c.Invalidate()
			creds, err = p.Retrieve(ctx)
			if err == nil && nearExpiry(creds) {
				s.refreshedFor.Store(creds.Expires.UnixNano())
			}
		}
	}
	if err != nil {
		return aws.Credentials{}, fmt.Errorf("rdsproxy: IAM: retrieve AWS credentials: %w", err)
	}
	return creds, nil
}

func (s *Source) store(k Key, e entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, exists := s.cache[k]; !exists && len(s.cache) >= MaxCachedKeys {
		s.evictLocked()
	}
	s.cache[k] = e
}

// evictLocked drops stale entries, or an arbitrary one if none is stale. The
// bound is a safety net, not a hot path, so no LRU bookkeeping on hits.
func (s *Source) evictLocked() {
	now := s.now()
	for k, e := range s.cache {
		if !now.Before(e.reuseUntil) {
			delete(s.cache, k)
		}
	}
	if len(s.cache) < MaxCachedKeys {
		return
	}
	for k := range s.cache {
		delete(s.cache, k)
		return
	}
}

// credentials returns the provider, loading the AWS config on first use under
// ctx. A failed load is not remembered: the next call tries again.
func (s *Source) credentials(ctx context.Context) (aws.CredentialsProvider, error) {
	if h := s.creds.Load(); h != nil {
		return h.p, nil
	}
	select {
	case s.loadSem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("rdsproxy: IAM: load AWS config: %w", ctx.Err())
	}
	defer func() { <-s.loadSem }()
	if h := s.creds.Load(); h != nil {
		return h.p, nil
	}
	// select picks at random when the slot and ctx.Done are both ready: a
	// caller that already gave up must not start a load (an IMDS call) that
	// nobody waits for.
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("rdsproxy: IAM: load AWS config: %w", err)
	}
	cfg, err := s.loadConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("rdsproxy: IAM: load AWS config: %w", err)
	}
	if cfg.Credentials == nil {
		return nil, errors.New("rdsproxy: IAM: load AWS config: no credentials provider configured")
	}
	// ExpiryWindow = margin: refresh credentials before they get too close to
	// expiry to sign a reusable token (ignored if the config's provider is
	// already a cache with its own settings).
	p := wrapCache(cfg.Credentials, s.margin)
	s.creds.Store(&credsHolder{p: p})
	return p, nil
}

// Invalidate drops the cached token for k if it was signed at or before
// failedSignedAt, the SignedAt of the token that the server rejected. A token
// signed later (by another goroutine after the failure) is kept.
//
// It does not invalidate the credentials: a rejection caused by a missing IAM
// policy would otherwise turn every failed dial into a credentials refresh.
func (s *Source) Invalidate(k Key, failedSignedAt time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.cache[k]; ok && !e.tok.SignedAt.After(failedSignedAt) {
		delete(s.cache, k)
	}
}
