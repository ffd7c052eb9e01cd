// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

package rdsproxy

import (
	"context"
	"database/sql/driver"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/rds/auth"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rdsproxy/rdsproxy/internal/iamauth"
)

// TokenFunc returns the password for one new physical connection to
// host:port as user. With [WithTokenFunc] it replaces AWS signing entirely:
// for tests and for other token schemes. It is called on every dial, so it
// should cache.
type TokenFunc func(ctx context.Context, host string, port uint16, user string) (string, error)

// TokenSourceOptions configures a [TokenSource].
type TokenSourceOptions struct {
	// Credentials sign the tokens. Default: the AWS SDK's default chain
	// (config.LoadDefaultConfig), loaded at the first dial under that dial's
	// context, so building a connector never touches the network.
	Credentials aws.CredentialsProvider
	// Margin is how much life a cached token, and the credentials that
	// signed it, must still have to be reused: 0 for the default of 3
	// minutes, or from 30s to 15m (the token's whole life, which turns reuse
	// off). [WithTokenSource] refuses a source with any other margin.
	Margin time.Duration
	// Now is the clock, for tests. Default: time.Now.
	Now func() time.Time
}

// TokenSource mints RDS IAM tokens with aws-sdk-go-v2 and caches them per
// region, host, port and user. A token is reused while more than the margin
// of its 15 minutes is left and its credentials do not expire within the
// margin; concurrent misses share one signing.
//
// Every connector that signs with the default credential chain shares one
// process-wide source, [DefaultTokenSource]. A connector given credentials
// ([WithCredentialsProvider], [WithAWSConfig]) has a source of its own, and
// [WithTokenSource] shares one explicitly.
type TokenSource struct {
	src      *iamauth.Source
	margin   time.Duration // as given, checked by WithTokenSource
	signings atomic.Int64
}

// NewTokenSource returns a TokenSource. It does no I/O.
func NewTokenSource(opts TokenSourceOptions) *TokenSource {
	return newTokenSource(opts, func(ctx context.Context, endpoint, region, user string, creds aws.CredentialsProvider) (string, error) {
		return auth.BuildAuthToken(ctx, endpoint, region, user, creds)
	})
}

func newTokenSource(opts TokenSourceOptions, sign iamauth.SignFunc) *TokenSource {
	ts := &TokenSource{margin: opts.Margin}
	ts.src = iamauth.NewSource(iamauth.Options{
		Credentials: opts.Credentials,
		Margin:      opts.Margin,
		Now:         opts.Now,
		Sign: func(ctx context.Context, endpoint, region, user string, creds aws.CredentialsProvider) (string, error) {
			ts.signings.Add(1)
			start, span := signStart(ctx) // telemetry of the connector whose dial signs
			tok, err := sign(ctx, endpoint, region, user, creds)
			signEnd(ctx, start, span, err)
			return tok, err
		},
	})
	return ts
}

// defaultSource is the process-wide source, created on first use.
var defaultSource struct {
	mu sync.Mutex
	ts *TokenSource
}

// DefaultTokenSource returns the process-wide TokenSource that every
// connector with iam=true and no credentials, aws.Config, TokenSource or
// TokenFunc option signs with: one cache and one load of the default AWS
// configuration (config.LoadDefaultConfig) per process, however many *sql.DB
// values are opened, plain sql.Open included. The configuration is loaded at
// the first dial that needs a token, never before, so a process that opens a
// database and never uses it makes no AWS call.
//
// Within one process this means one signing per endpoint and user per
// refresh window (the token's 15 minutes less the 3-minute margin, or less
// when the credentials expire sooner). Its Signings counts them.
func DefaultTokenSource() *TokenSource {
	defaultSource.mu.Lock()
	defer defaultSource.mu.Unlock()
	if defaultSource.ts == nil {
		defaultSource.ts = NewTokenSource(TokenSourceOptions{})
	}
	return defaultSource.ts
}

// Signings returns how many tokens this source has signed.
func (ts *TokenSource) Signings() int64 { return ts.signings.Load() }

// String never shows a token.
func (ts *TokenSource) String() string {
	return fmt.Sprintf("rdsproxy.TokenSource{signings=%d}", ts.Signings())
}

// iamOptions holds the IAM settings given as options.
type iamOptions struct {
	source    *TokenSource
	creds     aws.CredentialsProvider
	awsRegion string // from WithAWSConfig
	tokenFunc TokenFunc
	set       string // name of the first IAM option given, for errors
}

func (o *iamOptions) note(name string) {
	if o.set == "" {
		o.set = name
	}
}

// editIAM returns a copy of c's IAM options for an option to change, and
// points c at it. The options are kept hidden (see hidden) so that a Config
// printed field by field never shows a credentials provider's keys; the copy
// keeps a Config copied by NewConnectorConfig independent of the caller's.
func (c *Config) editIAM() *iamOptions {
	o := &iamOptions{}
	if c.iamOpts != nil {
		*o = *c.iamOpts()
	}
	c.iamOpts = hide(o)
	return o
}

// iam returns c's IAM options for reading; never nil.
func (c *Config) iam() *iamOptions {
	if c.iamOpts == nil {
		return &iamOptions{}
	}
	return c.iamOpts()
}

// WithAWSConfig signs IAM tokens with cfg's credentials, and uses cfg.Region
// when the DSN has no aws_region.
func WithAWSConfig(cfg aws.Config) Option {
	return func(c *Config) error {
		if cfg.Credentials == nil {
			return &ConfigError{Key: "WithAWSConfig", Value: "aws.Config without Credentials", Accepted: "an aws.Config from config.LoadDefaultConfig or with Credentials set"}
		}
		o := c.editIAM()
		o.creds, o.awsRegion = cfg.Credentials, cfg.Region
		o.note("WithAWSConfig")
		return nil
	}
}

// WithCredentialsProvider signs IAM tokens with p instead of the default chain.
func WithCredentialsProvider(p aws.CredentialsProvider) Option {
	return func(c *Config) error {
		if p == nil {
			return &ConfigError{Key: "WithCredentialsProvider", Value: "nil", Accepted: "a non-nil aws.CredentialsProvider"}
		}
		o := c.editIAM()
		o.creds = p
		o.note("WithCredentialsProvider")
		return nil
	}
}

// WithTokenSource shares ts (its cache and credentials) with other connectors.
func WithTokenSource(ts *TokenSource) Option {
	return func(c *Config) error {
		if ts == nil {
			return &ConfigError{Key: "WithTokenSource", Value: "nil", Accepted: "a *TokenSource from NewTokenSource"}
		}
		if err := checkTokenMargin("WithTokenSource: TokenSourceOptions.Margin", ts.margin); err != nil {
			return err
		}
		o := c.editIAM()
		o.source = ts
		o.note("WithTokenSource")
		return nil
	}
}

// WithTokenFunc sets every new connection's password from f instead of AWS
// signing. It does not need iam=true, but it follows the same TLS rule: the
// token goes only to a server verified by sslmode=verify-full (the default),
// else NewConnector and Open fail with [ErrInsecureIAM].
func WithTokenFunc(f TokenFunc) Option {
	return func(c *Config) error {
		if f == nil {
			return &ConfigError{Key: "WithTokenFunc", Value: "nil", Accepted: "a non-nil TokenFunc"}
		}
		c.editIAM().tokenFunc = f
		return nil
	}
}

// resolveRegion finds the signing region: the aws_region key, then
// WithAWSConfig's region, then AWS_REGION, AWS_DEFAULT_REGION, and last the
// region in an RDS host name.
func (c *Config) resolveRegion() (string, error) {
	for _, r := range []string{c.AWSRegion, c.iam().awsRegion, os.Getenv("AWS_REGION"), os.Getenv("AWS_DEFAULT_REGION")} {
		if r != "" {
			if !iamauth.ValidRegion(r) {
				return "", &ConfigError{Key: keyAWSRegion, Value: r, Accepted: acceptedRegion}
			}
			return r, nil
		}
	}
	if r, ok := iamauth.RegionFromHost(c.ConnConfig.Host); ok {
		return r, nil
	}
	return "", ErrNoRegion
}

// dialRecord tells Connect which token a dial used, so that an
// authentication failure with a cached token (revoked, or signed with since
// revoked credentials) can be retried once with a fresh one. It travels in
// the context: pgxpool passes the acquiring context's values to BeforeConnect
// even when the dial finishes in the background.
type dialRecord struct {
	mu       sync.Mutex
	used     bool
	cached   bool
	signedAt time.Time
}

type dialRecordKey struct{}

func (r *dialRecord) set(tok iamauth.Token) {
	r.mu.Lock()
	r.used, r.cached, r.signedAt = true, tok.Cached, tok.SignedAt
	r.mu.Unlock()
}

func (r *dialRecord) get() (used, cached bool, signedAt time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.used, r.cached, r.signedAt
}

// iamState is a connector's IAM wiring.
type iamState struct {
	tokens *TokenSource
	key    iamauth.Key
}

// installAuth validates cfg's IAM settings and installs the password hook as
// pc.BeforeConnect. It returns the IAM wiring, nil unless iam=true.
func installAuth(cfg *Config, pc *pgxpool.Config) (*iamState, error) {
	o := cfg.iam()
	if !cfg.IAM && o.set != "" {
		return nil, &ConfigError{Key: o.set, Value: "set without iam=true", Accepted: "add iam=true to the DSN, or remove " + o.set}
	}
	if o.tokenFunc != nil {
		f := o.tokenFunc
		pc.BeforeConnect = func(ctx context.Context, cc *pgx.ConnConfig) error {
			pw, err := f(ctx, cc.Host, cc.Port, cc.User)
			if err != nil {
				return fmt.Errorf("rdsproxy: token function: %w", err)
			}
			cc.Password = pw
			return nil
		}
		return nil, nil
	}
	if !cfg.IAM {
		if pw := cfg.password.get(); pw != "" {
			// The connection string's password, kept apart from ConnConfig
			// (see secretFreeConnConfig). A password set on ConnConfig by the
			// caller wins.
			pc.BeforeConnect = func(_ context.Context, cc *pgx.ConnConfig) error {
				if cc.Password == "" {
					cc.Password = pw
				}
				return nil
			}
		}
		return nil, nil
	}
	if len(cfg.ConnConfig.Fallbacks) > 0 {
		return nil, &ConfigError{Key: "host", Value: fmt.Sprintf("%d hosts", len(cfg.ConnConfig.Fallbacks)+1),
			Accepted: "one host with iam=true: a token is signed for one host:port (the proxy endpoint)"}
	}
	region, err := cfg.resolveRegion()
	if err != nil {
		return nil, err
	}
	cfg.AWSRegion = region
	ts := o.source
	switch {
	case ts != nil:
	case o.creds != nil:
		ts = NewTokenSource(TokenSourceOptions{Credentials: o.creds})
	default:
		ts = DefaultTokenSource()
	}
	cc := cfg.ConnConfig
	iam := &iamState{tokens: ts, key: iamauth.Key{Region: region, Host: cc.Host, Port: cc.Port, User: cc.User}}
	key := iam.key
	pc.BeforeConnect = func(ctx context.Context, cc *pgx.ConnConfig) error {
		tctx, span := tokenStart(ctx) // child span of the connect span, when a connector dials
		tok, err := ts.src.Token(tctx, key)
		tokenEnd(tctx, span, tok.Cached, err)
		if err != nil {
			return err // iamauth's errors name the step and never the secret
		}
		if rec, ok := ctx.Value(dialRecordKey{}).(*dialRecord); ok {
			rec.set(tok)
		}
		cc.Password = tok.Value
		return nil
	}
	return iam, nil
}

// connectIAM is Connect for iam=true, through std (the pool, or an overflow
// dial): one retry with a fresh token when the proxy rejects a cached one, and
// an actionable error when a fresh one fails.
func (c *Connector) connectIAM(ctx context.Context, std driver.Connector) (driver.Conn, error) {
	rec := &dialRecord{}
	conn, err := std.Connect(context.WithValue(ctx, dialRecordKey{}, rec))
	if err == nil || !iamauth.IsAuthFailure(err) {
		return conn, err
	}
	used, cached, signedAt := rec.get()
	c.tel.iamAuthFailed(ctx, cached)
	if used && cached {
		c.tel.iamAuthRetried(ctx)
		c.iam.tokens.src.Invalidate(c.iam.key, signedAt)
		rec = &dialRecord{}
		conn, err = std.Connect(context.WithValue(ctx, dialRecordKey{}, rec))
		if err == nil || !iamauth.IsAuthFailure(err) {
			return conn, err
		}
		c.tel.iamAuthFailed(ctx, false)
	}
	return nil, c.iamAuthError(err)
}

func (c *Connector) iamAuthError(err error) error {
	k := c.iam.key
	return fmt.Errorf("%w for user %q at %s (region %s) with a freshly signed token; check that the IAM policy of "+
		"the calling role allows rds-db:connect on arn:aws:rds-db:%s:<account-id>:dbuser:prx-<proxy-resource-id>/%s, "+
		"that %q is a user the proxy's Secrets Manager secrets know, that the region and host name are the proxy's, "+
		"and that this machine's clock is correct: %w", ErrIAMAuth, k.User, k.Endpoint(), k.Region, k.Region, k.User, k.User, err)
}
