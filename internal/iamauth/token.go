package iamauth

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"time"
)

// Token is an RDS IAM authentication token together with the times the Source
// used to decide whether it may be reused.
//
// Value is the secret: it is a presigned SigV4 URL, valid for its whole life for
// anyone who sees it. Every way the standard library can render a Token (fmt
// verbs through Format/String/GoString, log/slog through LogValue,
// encoding/json through MarshalJSON) prints a redacted form instead. Copy Value
// out only to hand it to the connection (pgconn.Config.Password).
//
// One hole remains that methods cannot close: fmt prints the fields of a Token
// stored in an *unexported* field of another struct without calling its
// methods. Do not keep Tokens in unexported fields of values that get printed.
type Token struct {
	// Value is the token: "<host>:<port>?Action=connect&DBUser=...&X-Amz-Signature=...".
	Value string
	// Cached reports whether this Token came from the cache rather than a new signing.
	Cached bool
	// SignedAt is the Source clock's time just before signing. The SDK stamps
	// X-Amz-Date with its own clock a moment later, so expiry computed from
	// SignedAt errs on the early side.
	SignedAt time.Time
	// ExpiresAt is when the token stops being usable: SignedAt+TokenLifetime, or
	// earlier if the credentials that signed it expire first (a token is
	// rejected once its signing credentials have expired).
	ExpiresAt time.Time
}

const redactedTimeLayout = "2006-01-02T15:04:05Z07:00"

// String returns a redacted description; it never contains Value.
func (t Token) String() string {
	if t.Value == "" {
		return "iamauth.Token{empty}"
	}
	src := "signed"
	if t.Cached {
		src = "cached, signed"
	}
	return fmt.Sprintf("iamauth.Token{redacted, %s %s, expires %s}",
		src, t.SignedAt.UTC().Format(redactedTimeLayout), t.ExpiresAt.UTC().Format(redactedTimeLayout))
}

// GoString makes %#v redacted too.
func (t Token) GoString() string { return t.String() }

// Format makes every fmt verb redacted. Without it, verbs that do not consult
// Stringer (%d, %x on a struct, ...) would print the fields, Value included.
func (t Token) Format(f fmt.State, verb rune) {
	_, _ = f.Write([]byte(t.String()))
}

// LogValue makes slog attributes redacted (slog.Any("token", tok)).
func (t Token) LogValue() slog.Value {
	return slog.GroupValue(
		slog.Bool("redacted", true),
		slog.Bool("cached", t.Cached),
		slog.Time("signed_at", t.SignedAt),
		slog.Time("expires_at", t.ExpiresAt),
	)
}

// MarshalJSON keeps the value out of JSON output (debug dumps, structured logs
// that bypass slog).
func (t Token) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Redacted  bool      `json:"redacted"`
		Cached    bool      `json:"cached"`
		SignedAt  time.Time `json:"signed_at"`
		ExpiresAt time.Time `json:"expires_at"`
	}{true, t.Cached, t.SignedAt, t.ExpiresAt})
}

// MarshalText covers encoders that prefer encoding.TextMarshaler (e.g. some
// log libraries, map keys).
func (t Token) MarshalText() ([]byte, error) { return []byte(t.String()), nil }
