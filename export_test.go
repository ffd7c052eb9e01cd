package rdsproxy

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// NewTokenSourceWithSigner lets black-box tests sign at an injected time
// (auth.BuildAuthToken always signs at time.Now).
func NewTokenSourceWithSigner(opts TokenSourceOptions,
	sign func(ctx context.Context, endpoint, region, user string, creds aws.CredentialsProvider) (string, error)) *TokenSource {
	return newTokenSource(opts, sign)
}
