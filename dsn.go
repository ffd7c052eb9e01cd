// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

package rdsproxy

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rdsproxy/rdsproxy/internal/iamauth"
)

// DSN keys of rdsproxy's own. The pool_* keys have the names and meanings of
// pgxpool's keys of the same name, so a pgxpool connection string carries over.
const (
	keyIAM                       = "iam"
	keyAWSRegion                 = "aws_region"
	keyPinCheck                  = "pin_check"
	keyPoolMaxConns              = "pool_max_conns"
	keyPoolMaxConnLifetime       = "pool_max_conn_lifetime"
	keyPoolMaxConnLifetimeJitter = "pool_max_conn_lifetime_jitter"
	keyPoolMaxConnIdleTime       = "pool_max_conn_idle_time"
	keyPoolHealthCheckPeriod     = "pool_health_check_period"
	keyDefaultQueryExecMode      = "default_query_exec_mode" // pgx's own key; we only need to know if it was set
)

// ownKeys lists every key rdsproxy reads, in documentation order.
var ownKeys = []string{keyIAM, keyAWSRegion, keyPinCheck, keyPoolMaxConns, keyPoolMaxConnLifetime,
	keyPoolMaxConnLifetimeJitter, keyPoolMaxConnIdleTime, keyPoolHealthCheckPeriod}

// reservedPrefixes are name spaces rdsproxy owns: an unknown key under one of
// them is almost certainly a typo of ours, so it is an error rather than a
// startup parameter silently sent to the server (which RDS Proxy would refuse).
var reservedPrefixes = []string{"iam", "aws_", "pin_", "pool_", "rdsproxy"}

const (
	acceptedBool     = "true or false"
	acceptedRegion   = "an AWS region name such as us-east-1"
	acceptedPinCheck = "off or warn"
	acceptedMaxConns = "a whole number from 1 to 10000"
	maxMaxConns      = 10000
)

// defaultSSLMode is used when neither the DSN nor PGSSLMODE names an sslmode.
// pgx's own default is prefer, which silently falls back to plaintext; RDS Proxy
// presents certificates that chain to Amazon's public roots, which the system
// trust store has, so full verification works without extra files.
const defaultSSLMode = "verify-full"

// ParseConfig parses a connection string: anything pgx accepts (URL or
// keyword/value) plus rdsproxy's keys, documented in the package overview.
// Keys are validated up front; an error names the key and the accepted values
// and never contains the password.
func ParseConfig(dsn string) (*Config, error) {
	withDefault := withDefaultSSLMode(dsn)

	// Parse once at the pgconn level to see every key as the user wrote it
	// (pgx and pgxpool consume some keys and apply defaults for missing ones).
	raw, err := pgconn.ParseConfig(withDefault)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if withDefault != dsn {
		// The default is added to the text. A URL whose password holds an
		// unescaped '#' or '?' (pgx accepts them) could be cut in the wrong
		// place; then say so instead of silently keeping pgx's plaintext-capable
		// default.
		orig, err := pgconn.ParseConfig(dsn)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		if orig.User != raw.User || orig.Password != raw.Password || orig.Host != raw.Host ||
			orig.Port != raw.Port || orig.Database != raw.Database {
			return nil, &ConfigError{Key: "sslmode", Value: "(not given)",
				Accepted: "an explicit sslmode in this URL (e.g. sslmode=verify-full): the default could not be added " +
					"because the URL has an unescaped '#' or '?' before its query; percent-encode it (%23, %3F) or set sslmode"}
		}
	}
	dsn = withDefault
	given := raw.RuntimeParams

	for key := range given {
		if isOwnKey(key) {
			continue
		}
		for _, p := range reservedPrefixes {
			if strings.HasPrefix(key, p) {
				// The value is not echoed: an unknown key may be a guess such as
				// aws_secret_access_key, and its value a secret.
				return nil, &ConfigError{Key: key, Value: "(not shown)",
					Accepted: "no such key; rdsproxy's keys are " + strings.Join(ownKeys, ", ")}
			}
		}
	}

	cfg := &Config{PinCheck: PinCheckWarn, InLambda: os.Getenv("AWS_LAMBDA_FUNCTION_NAME") != ""}
	applyPoolDefaults(cfg)
	if err := cfg.applyOwnKeys(given); err != nil {
		return nil, err
	}
	_, cfg.execModeSet = given[keyDefaultQueryExecMode]

	// pgxpool.ParseConfig reads and strips the pool_* keys (already validated
	// above, so it cannot fail on them) and builds the pgx config.
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	cc := pc.ConnConfig
	for _, k := range ownKeys {
		delete(cc.RuntimeParams, k) // never send our keys to the server as startup parameters
	}
	if !cfg.execModeSet {
		cc.DefaultQueryExecMode = DefaultQueryExecMode
	}
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

// setKey parses one of rdsproxy's keys into c. It is the single place where
// DSN text becomes a typed value, used by ParseConfig and the fuzz tests.
func (c *Config) setKey(key, v string) error {
	bad := func(accepted string, err error) error {
		return &ConfigError{Key: key, Value: v, Accepted: accepted, Err: err}
	}
	switch key {
	case keyIAM:
		switch v {
		case "true":
			c.IAM = true
		case "false":
			c.IAM = false
		default:
			return bad(acceptedBool, nil)
		}
	case keyAWSRegion:
		if !iamauth.ValidRegion(v) {
			return bad(acceptedRegion, nil)
		}
		c.AWSRegion = v
	case keyPinCheck:
		switch PinCheckMode(v) {
		case PinCheckWarn, PinCheckOff:
			c.PinCheck = PinCheckMode(v)
		default:
			return bad(acceptedPinCheck, nil)
		}
	case keyPoolMaxConns:
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil || n < 1 || n > maxMaxConns {
			return bad(acceptedMaxConns, nil)
		}
		c.MaxConns, c.maxConnsSet = int32(n), true
	case keyPoolMaxConnLifetime:
		d, err := time.ParseDuration(v)
		if err != nil {
			return bad(acceptedLifetime, nil)
		}
		if err := checkLifetime(key, d); err != nil {
			return err
		}
		c.MaxConnLifetime, c.lifetimeSet = d, true
	case keyPoolMaxConnLifetimeJitter:
		d, err := time.ParseDuration(v)
		if err != nil {
			return bad(acceptedJitter, nil)
		}
		// Against no lifetime here; validate checks the sum once both are known.
		if err := checkJitter(key, 0, d); err != nil {
			return err
		}
		c.MaxConnLifetimeJitter, c.jitterSet = d, true
	case keyPoolMaxConnIdleTime:
		d, err := time.ParseDuration(v)
		if err != nil {
			return bad(acceptedIdleTime, nil)
		}
		if err := checkIdleTime(key, d); err != nil {
			return err
		}
		c.MaxConnIdleTime, c.idleTimeSet = d, true
	case keyPoolHealthCheckPeriod:
		d, err := time.ParseDuration(v)
		if err != nil {
			return bad(acceptedHealthCheckPeriod, nil)
		}
		if err := checkHealthCheckPeriod(key, d); err != nil {
			return err
		}
		c.HealthCheckPeriod, c.healthCheckSet = d, true
	default:
		return &ConfigError{Key: key, Value: v, Accepted: "no such key; rdsproxy's keys are " + strings.Join(ownKeys, ", ")}
	}
	return nil
}

// ownKeyValues renders rdsproxy's keys of c as DSN values, for FormatDSN and
// for the round-trip fuzz test.
func (c *Config) ownKeyValues() [][2]string {
	kv := [][2]string{
		{keyIAM, strconv.FormatBool(c.IAM)},
	}
	if c.AWSRegion != "" {
		kv = append(kv, [2]string{keyAWSRegion, c.AWSRegion})
	}
	return append(kv,
		[2]string{keyPinCheck, string(c.PinCheck)},
		[2]string{keyPoolMaxConns, strconv.Itoa(int(c.MaxConns))},
		[2]string{keyPoolMaxConnLifetime, c.MaxConnLifetime.String()},
		[2]string{keyPoolMaxConnLifetimeJitter, c.MaxConnLifetimeJitter.String()},
		[2]string{keyPoolMaxConnIdleTime, c.MaxConnIdleTime.String()},
		[2]string{keyPoolHealthCheckPeriod, c.HealthCheckPeriod.String()},
	)
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
// without it, verbs that fmt does not route to String, such as %d, would
// print the fields, and with them any credentials an option holds.
func (c Config) Format(f fmt.State, verb rune) {
	switch verb {
	case 'q', 'x', 'X':
		fmt.Fprintf(f, fmt.FormatString(f, verb), c.String())
	default:
		io.WriteString(f, c.String()) //nolint:errcheck // fmt.State reports no useful error
	}
}

// LogValue makes log/slog log String, with any handler.
func (c Config) LogValue() slog.Value { return slog.StringValue(c.String()) }

// MarshalJSON writes String as a JSON string, so a Config inside a struct
// marshalled to JSON (or logged by a JSON handler) never shows the password.
func (c Config) MarshalJSON() ([]byte, error) { return json.Marshal(c.String()) }

// withDefaultSSLMode adds sslmode=verify-full to a connection string that names
// no sslmode (and when PGSSLMODE is unset). It works on the text rather than a
// parsed URL because net/url rejects pgx's multi-host URLs
// (postgres://h1:5432,h2:5432/db).
func withDefaultSSLMode(dsn string) string {
	if os.Getenv("PGSSLMODE") != "" {
		return dsn
	}
	if !strings.HasPrefix(dsn, "postgres://") && !strings.HasPrefix(dsn, "postgresql://") {
		// keyword/value: a later key overrides an earlier one, so a default
		// placed first loses to any sslmode the user wrote.
		return "sslmode=" + defaultSSLMode + " " + dsn
	}
	body, fragment, hasFragment := strings.Cut(dsn, "#")
	_, query, hasQuery := strings.Cut(body, "?")
	if hasQuery {
		if q, err := url.ParseQuery(query); err == nil && q.Has("sslmode") {
			return dsn
		}
		body += "&sslmode=" + defaultSSLMode
	} else {
		body += "?sslmode=" + defaultSSLMode
	}
	if hasFragment {
		body += "#" + fragment
	}
	return body
}
