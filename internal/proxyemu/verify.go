package proxyemu

import (
	"context"
	"crypto/subtle"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

const (
	// tokenLifetime is the longest X-Amz-Expires RDS accepts (and the value
	// auth.BuildAuthToken always uses).
	tokenLifetime = 900 * time.Second
	// maxClockSkew is how far in the future an X-Amz-Date may be: SigV4
	// services tolerate about five minutes of client clock skew.
	maxClockSkew = 5 * time.Minute

	signingService   = "rds-db"
	signingAlgorithm = "AWS4-HMAC-SHA256"
	amzDateLayout    = "20060102T150405Z"
	// emptyPayloadHash is SHA-256 of "", what BuildAuthToken signs as payload.
	emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
)

// Reasons recorded by LastRejectReason. They never contain the token.
const (
	ReasonMalformed      = "malformed token"
	ReasonEndpoint       = "endpoint mismatch"
	ReasonAction         = "action is not connect"
	ReasonDBUser         = "DBUser does not match the startup user"
	ReasonAlgorithm      = "unsupported algorithm"
	ReasonScope          = "credential scope is not <date>/<region>/rds-db/aws4_request"
	ReasonRegion         = "region mismatch"
	ReasonAccessKey      = "unknown access key id"
	ReasonExpired        = "token expired"
	ReasonNotYetValid    = "token date in the future"
	ReasonSessionToken   = "security token mismatch"
	ReasonSignature      = "signature mismatch"
	ReasonCredentials    = "emulator could not retrieve its credentials"
	ReasonForced         = "rejected by RejectNextAuth"
	ReasonSignedHeaders  = "signed headers are not host"
	ReasonExpiresInvalid = "invalid X-Amz-Expires"
)

// Parameters the SigV4 presigner adds itself; everything else in the token's
// query is part of the request that was signed.
var presignParams = map[string]bool{
	"X-Amz-Algorithm": true, "X-Amz-Credential": true, "X-Amz-Date": true,
	"X-Amz-SignedHeaders": true, "X-Amz-Security-Token": true, "X-Amz-Signature": true,
}

// verifyToken checks an IAM token the way RDS Proxy's front door does and
// returns "" when it is valid, otherwise the reason. The signature is checked
// by re-presigning the same request with the SDK's signer and comparing in
// constant time: verification built on the SDK, not hand-written SigV4.
func (p *Proxy) verifyToken(ctx context.Context, token, user string) string {
	u, err := url.Parse("https://" + token)
	if err != nil || u.User != nil || (u.Path != "" && u.Path != "/") || u.Fragment != "" {
		return ReasonMalformed
	}
	if u.Host != p.addr {
		return ReasonEndpoint
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return ReasonMalformed
	}
	for _, vs := range q {
		if len(vs) != 1 {
			return ReasonMalformed
		}
	}
	if q.Get("Action") != "connect" {
		return ReasonAction
	}
	if q.Get("DBUser") != user {
		return ReasonDBUser
	}
	if q.Get("X-Amz-Algorithm") != signingAlgorithm {
		return ReasonAlgorithm
	}
	if q.Get("X-Amz-SignedHeaders") != "host" {
		return ReasonSignedHeaders
	}
	scope := strings.Split(q.Get("X-Amz-Credential"), "/")
	if len(scope) != 5 || scope[3] != signingService || scope[4] != "aws4_request" {
		return ReasonScope
	}
	akid, scopeDate, region := scope[0], scope[1], scope[2]
	if region != p.cfg.Region {
		return ReasonRegion
	}
	signedAt, err := time.Parse(amzDateLayout, q.Get("X-Amz-Date"))
	if err != nil || signedAt.Format("20060102") != scopeDate {
		return ReasonScope
	}
	expiresStr := q.Get("X-Amz-Expires")
	expires, err := strconv.Atoi(expiresStr)
	if err != nil || expires <= 0 || time.Duration(expires)*time.Second > tokenLifetime {
		return ReasonExpiresInvalid
	}
	now := p.now()
	if now.After(signedAt.Add(time.Duration(expires) * time.Second)) {
		return ReasonExpired
	}
	if signedAt.After(now.Add(maxClockSkew)) {
		return ReasonNotYetValid
	}

	creds, err := p.cfg.Credentials.Retrieve(ctx)
	if err != nil {
		return ReasonCredentials
	}
	if akid != creds.AccessKeyID {
		return ReasonAccessKey
	}
	if subtle.ConstantTimeCompare([]byte(q.Get("X-Amz-Security-Token")), []byte(creds.SessionToken)) != 1 {
		return ReasonSessionToken
	}

	unsigned := url.Values{}
	for k, vs := range q {
		if !presignParams[k] {
			unsigned[k] = vs
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+u.Host, nil)
	if err != nil {
		return ReasonMalformed
	}
	req.URL.RawQuery = unsigned.Encode()
	signed, _, err := v4.NewSigner().PresignHTTP(ctx, creds, req, emptyPayloadHash, signingService, region, signedAt)
	if err != nil {
		return ReasonSignature
	}
	su, err := url.Parse(signed)
	if err != nil {
		return ReasonSignature
	}
	want := su.Query().Get("X-Amz-Signature")
	if want == "" || subtle.ConstantTimeCompare([]byte(want), []byte(q.Get("X-Amz-Signature"))) != 1 {
		return ReasonSignature
	}
	return ""
}
