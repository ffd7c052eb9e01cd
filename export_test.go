package rdsproxy

import (
	"context"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// NewTokenSourceWithSigner lets black-box tests sign at an injected time
// (auth.BuildAuthToken always signs at time.Now).
func NewTokenSourceWithSigner(opts TokenSourceOptions,
	sign func(ctx context.Context, endpoint, region, user string, creds aws.CredentialsProvider) (string, error)) *TokenSource {
	return newTokenSource(opts, sign)
}

// ProbeAfterIdle is how recently a connection must have answered for the
// checkout to skip the socket probe. Tests that kill or drop connections and
// then expect no caller error let them sit idle this long first, as a real
// idle connection would: a kill inside the window is the same race as one
// during the next statement.
const ProbeAfterIdle = probeAfterIdle

// DialPassword is the password a dial of cfg sends when the caller set none
// on ConnConfig: the connection string's, kept apart from ConnConfig.
func DialPassword(cfg *Config) string { return cfg.password.get() }

// ResetDefaultTokenSource forgets the process-wide token source, its cached
// tokens and loaded credentials, so that a test can set the default chain
// (environment variables) and count signings from zero. It returns the new
// source, built like DefaultTokenSource's but signing with sign when non-nil.
func ResetDefaultTokenSource(sign func(ctx context.Context, endpoint, region, user string, creds aws.CredentialsProvider) (string, error)) *TokenSource {
	defaultSource.mu.Lock()
	defer defaultSource.mu.Unlock()
	defaultSource.ts = nil
	if sign != nil {
		defaultSource.ts = newTokenSource(TokenSourceOptions{}, sign)
	}
	return defaultSource.ts
}

// SetReaderProbeInterval shortens how often a cluster under
// read_fallback=writer tries the reader endpoint again, so that tests do not
// wait readerProbeInterval. Call it before the first read.
func SetReaderProbeInterval(c *Cluster, d time.Duration) {
	if c.rc != nil {
		c.rc.probeEvery = d
	}
}
