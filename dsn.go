// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

package rdsproxy

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// reservedPrefixes are name spaces rdsproxy owns: an unknown key under one of
// them is almost certainly a typo of ours, so it is an error rather than a
// startup parameter silently sent to the server (which RDS Proxy would refuse).
var reservedPrefixes = []string{"iam", "aws_", "pin_", "pool_", "read_", "rdsproxy"}

// defaultSSLMode is used when neither the DSN nor PGSSLMODE names an sslmode.
// pgx's own default is prefer, which silently falls back to plaintext; RDS Proxy
// presents certificates that chain to Amazon's public roots, which the system
// trust store has, so full verification works without extra files.
const defaultSSLMode = "verify-full"

// ParseConfig parses a connection string: anything pgx accepts (URL or
// keyword/value) plus rdsproxy's keys, listed in the README's key table.
// Keys are validated up front; an error names the key and the accepted values
// and never contains the password: not even 4 consecutive characters of any
// text that may be one (pgx's own parse errors quote pieces of the string, so
// they are redacted and not wrapped).
//
// A URL is read with pgx's grammar, which is libpq's: '#' is an ordinary
// character, and a password may hold '?', '&' or '#' unescaped. The
// verify-full default is added where pgx reads a query parameter; if that
// would change anything else, ParseConfig asks for an explicit sslmode.
func ParseConfig(dsn string) (*Config, error) {
	if len(dsn) > maxDSNBytes {
		return nil, &ConfigError{Key: "connection string", Value: "(not shown)",
			Accepted: fmt.Sprintf("at most %d bytes", maxDSNBytes)}
	}
	cfg, err := parseConfig(dsn)
	if err != nil {
		return nil, redactDSNError(dsn, err)
	}
	return cfg, nil
}

// maxDSNBytes bounds a connection string. Real ones are well under a
// kilobyte, and a few kilobytes with pgx's inline certificates
// (sslinline); the bound keeps the work an erroneous one costs (parsing
// twice, redacting the error) small whatever it holds.
const maxDSNBytes = 64 << 10

func parseConfig(dsn string) (*Config, error) {
	// Parse once at the pgconn level to see every key as the user wrote it
	// (pgx and pgxpool consume some keys and apply defaults for missing ones).
	orig, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return nil, pgxParseError{err}
	}
	raw := orig
	if withDefault := withDefaultSSLMode(dsn); withDefault != dsn {
		// The default is added to the text, where pgx's grammar (libpq's)
		// puts a query parameter. Check that it changed nothing but TLS:
		// never a password or host read differently, never pgx's
		// plaintext-capable default kept silently.
		raw, err = pgconn.ParseConfig(withDefault)
		// Either the default applies, or (keyword/value) the user's own
		// sslmode, given later, won over it and raw reads like orig.
		if err != nil || !sameExceptTLS(orig, raw) || !serverVerified(raw) && !sameTLSMode(orig, raw) {
			return nil, &ConfigError{Key: "sslmode", Value: "(not given)",
				Accepted: "an explicit sslmode in this connection string (e.g. sslmode=verify-full): " +
					"rdsproxy could not add its default without changing how the rest is read"}
		}
		dsn = withDefault
	}
	given := raw.RuntimeParams

	for key := range given {
		if isOwnKey(key) {
			continue
		}
		// Case-folded: IAM=true is a mistake for iam=true, not a startup
		// parameter for the server (which RDS Proxy would refuse).
		for _, p := range reservedPrefixes {
			if strings.HasPrefix(strings.ToLower(key), p) {
				// The value is not echoed: an unknown key may be a guess such as
				// aws_secret_access_key, and its value a secret.
				return nil, &ConfigError{Key: key, Value: "(not shown)",
					Accepted: "no such key; rdsproxy's keys are " + strings.Join(ownKeys, ", ")}
			}
		}
	}

	cfg := &Config{InLambda: os.Getenv("AWS_LAMBDA_FUNCTION_NAME") != ""}
	cfg.applyDefaults()
	if err := cfg.applyOwnKeys(given); err != nil {
		return nil, err
	}
	// Checked before pgxpool reads the pool_* keys, so that a bad value is
	// reported with rdsproxy's accepted values rather than pgxpool's.
	if err := cfg.checkSettings(); err != nil {
		return nil, err
	}
	_, execModeSet := given[keyDefaultQueryExecMode]

	// pgxpool.ParseConfig reads and strips the pool_* keys (already validated
	// above, so it cannot fail on them) and builds the pgx config.
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, pgxParseError{err}
	}
	cc := pc.ConnConfig
	for _, k := range ownKeys {
		delete(cc.RuntimeParams, k) // never send our keys to the server as startup parameters
	}
	if !execModeSet {
		cc.DefaultQueryExecMode = DefaultQueryExecMode
	}
	cfg.password = hide(cc.Password)
	if cc, err = secretFreeConnConfig(cc); err != nil {
		return nil, err
	}
	pc.ConnConfig = cc
	cfg.ConnConfig = cc
	cfg.parsedPool = pc
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

func isOwnKey(key string) bool { return slices.Contains(ownKeys, key) }

// applyOwnKeys reads rdsproxy's keys from the raw parameters.
func (c *Config) applyOwnKeys(given map[string]string) error {
	for _, key := range ownKeys {
		v, ok := given[key]
		if !ok {
			continue
		}
		if err := c.setKey(key, v); err != nil {
			return err
		}
	}
	return nil
}

// FormatOwnKeys renders rdsproxy's settings of c as keyword/value DSN text
// (for example "iam=true pin_check=warn pool_max_conns=5 ..."). Appended to a
// pgx connection string it reproduces c's rdsproxy settings; it never contains
// a password or token.
func (c *Config) FormatOwnKeys() string {
	var b strings.Builder
	for i, kv := range c.ownKeyValues() {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(kv[0])
		b.WriteByte('=')
		b.WriteString(kv[1]) // none of our values contain spaces or quotes
	}
	return b.String()
}

// String describes the config for logs: host, port, database, user and
// rdsproxy's settings. It never includes the password. It has a value
// receiver, like the other formatting methods below, so that a Config printed
// by value, or held by value in another struct, is described the same way as
// a *Config instead of printing pgx's ConnConfig (password included).
func (c Config) String() string {
	if c.ConnConfig == nil {
		return "rdsproxy.Config{}"
	}
	return fmt.Sprintf("rdsproxy.Config{host=%s port=%d database=%s user=%s %s}",
		c.ConnConfig.Host, c.ConnConfig.Port, c.ConnConfig.Database, c.ConnConfig.User, c.FormatOwnKeys())
}

// GoString is String, so %#v cannot print the password either.
func (c Config) GoString() string { return c.String() }

// Format prints String for every verb (%v, %+v, %#v, %s, %q, %x, %d, ...):
// fmt routes only some verbs to String, and prints the fields for the rest;
// with %t or %f it would even print the target of the ConnConfig pointer,
// password included.
func (c Config) Format(f fmt.State, verb rune) {
	switch verb {
	case 'q', 'x', 'X':
		fmt.Fprintf(f, fmt.FormatString(f, verb), c.String())
	default:
		io.WriteString(f, c.String())
	}
}

// LogValue makes log/slog log String, with any handler.
func (c Config) LogValue() slog.Value { return slog.StringValue(c.String()) }

// MarshalJSON writes String as a JSON string, so a Config inside a struct
// marshalled to JSON (or logged by a JSON handler) never shows the password.
func (c Config) MarshalJSON() ([]byte, error) { return json.Marshal(c.String()) }

// withDefaultSSLMode adds sslmode=verify-full to a connection string that names
// no sslmode (and when PGSSLMODE is unset). It works on the text because pgx
// has no other way to set a default (and net/url rejects pgx's multi-host
// URLs, postgres://h1:5432,h2:5432/db); for URLs it follows pgx's grammar,
// which is libpq's: '#' has no special meaning, a '?' or '&' before the '@'
// that ends the user information belongs to it, and the query starts at the
// first '?' after it.
func withDefaultSSLMode(dsn string) string {
	if os.Getenv("PGSSLMODE") != "" {
		return dsn
	}
	rest, ok := strings.CutPrefix(dsn, "postgresql://")
	if !ok {
		rest, ok = strings.CutPrefix(dsn, "postgres://")
	}
	if !ok {
		// keyword/value: a later key overrides an earlier one, so a default
		// placed first loses to any sslmode the user wrote.
		return "sslmode=" + defaultSSLMode + " " + dsn
	}
	query, hasQuery := urlQuery(rest)
	if !hasQuery {
		return dsn + "?sslmode=" + defaultSSLMode
	}
	for pair := range strings.SplitSeq(query, "&") {
		k, v, _ := strings.Cut(pair, "=")
		if k, err := url.PathUnescape(strings.TrimSpace(k)); err == nil && (k == "sslmode" || k == "ssl" && v == "true") {
			return dsn
		}
	}
	if query == "" || strings.HasSuffix(query, "&") {
		return dsn + "sslmode=" + defaultSSLMode
	}
	return dsn + "&sslmode=" + defaultSSLMode
}

// urlQuery returns the query of a connection URL (rest is what follows
// postgres://), as pgx reads it: past the user information, which ends at
// the first '@' that comes before any '/', the query starts at the first '?'
// outside an IPv6 address's brackets.
func urlQuery(rest string) (string, bool) {
	if i := strings.IndexAny(rest, "@/"); i >= 0 && rest[i] == '@' {
		rest = rest[i+1:]
	}
	for i := 0; i < len(rest); i++ {
		switch rest[i] {
		case '[':
			j := strings.IndexByte(rest[i:], ']')
			if j < 0 {
				return "", false // pgx refuses it
			}
			i += j
		case '/':
			// The path (database name) ends at the first '?'.
			q := strings.IndexByte(rest[i:], '?')
			if q < 0 {
				return "", false
			}
			return rest[i+q+1:], true
		case '?':
			return rest[i+1:], true
		}
	}
	return "", false
}

// sameExceptTLS reports whether a and b, two parses of one connection string,
// differ at most in their TLS settings.
func sameExceptTLS(a, b *pgconn.Config) bool {
	if a.Database != b.Database || a.User != b.User || a.Password != b.Password ||
		a.ConnectTimeout != b.ConnectTimeout || a.KerberosSrvName != b.KerberosSrvName ||
		a.KerberosSpn != b.KerberosSpn || !maps.Equal(a.RuntimeParams, b.RuntimeParams) {
		return false
	}
	return slices.Equal(hostPorts(a), hostPorts(b))
}

// sameTLSMode reports whether a and b use TLS alike: same use of TLS, of
// verification and of fallbacks.
func sameTLSMode(a, b *pgconn.Config) bool {
	mode := func(c *pgconn.Config) []string {
		var m []string
		for _, tc := range append([]*tls.Config{c.TLSConfig}, fallbackTLS(c)...) {
			m = append(m, fmt.Sprint(tc != nil, tc != nil && tc.InsecureSkipVerify))
		}
		return m
	}
	return slices.Equal(mode(a), mode(b))
}

func fallbackTLS(c *pgconn.Config) []*tls.Config {
	var t []*tls.Config
	for _, fb := range c.Fallbacks {
		t = append(t, fb.TLSConfig)
	}
	return t
}

// hostPorts lists the host:port pairs c tries, each once: sslmode=prefer and
// allow try a host twice (with and without TLS).
func hostPorts(c *pgconn.Config) []string {
	hp := []string{net.JoinHostPort(c.Host, strconv.Itoa(int(c.Port)))}
	for _, fb := range c.Fallbacks {
		if s := net.JoinHostPort(fb.Host, strconv.Itoa(int(fb.Port))); s != hp[len(hp)-1] {
			hp = append(hp, s)
		}
	}
	return hp
}
