// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

package rdsproxy

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rdsproxy/rdsproxy/internal/iamauth"
)

// DSN keys of rdsproxy's own. The pool_* keys have the names and meanings of
// pgxpool's keys of the same name, so a pgxpool connection string carries over.
const (
	keyIAM                       = "iam"
	keyAWSRegion                 = "aws_region"
	keyPinCheck                  = "pin_check"
	keySessionAudit              = "session_audit"
	keyPoolMaxConns              = "pool_max_conns"
	keyPoolMaxConnLifetime       = "pool_max_conn_lifetime"
	keyPoolMaxConnLifetimeJitter = "pool_max_conn_lifetime_jitter"
	keyPoolMaxConnIdleTime       = "pool_max_conn_idle_time"
	keyPoolHealthCheckPeriod     = "pool_health_check_period"
	keyReadHost                  = "read_host"               // OpenCluster only
	keyReadFallback              = "read_fallback"           // OpenCluster only
	keyDefaultQueryExecMode      = "default_query_exec_mode" // pgx's own key; we only need to know if it was set
)

// Accepted values and bounds of the settings that are not durations.
const (
	acceptedBool   = "true or false"
	acceptedRegion = "an AWS region name such as us-east-1"
	acceptedOnOff  = "on or off"
	// maxMaxConns: behind RDS Proxy each in-flight statement holds a
	// database connection; no client needs more than this many, and a
	// larger cap can only be a typo (or a units mistake).
	maxMaxConns = 10000
)

var acceptedMaxConns = fmt.Sprintf("a whole number from 1 to %d", maxMaxConns)

// Accepted values of OpenCluster's keys.
const (
	acceptedReadHost = "the read-only endpoint's host name or address, optionally with :port " +
		"(IPv6 as [addr]:port), one endpoint only"
	acceptedReadFallback = "off or writer"
)

// setting is one of rdsproxy's own settings: its DSN key, the Option that
// sets it and the Config field that holds it. The DSN and the options only
// parse and assign; valid, run by [Config.validate] on every Config however
// it was filled (DSN, option or a direct edit), is the one range check, so
// the same value is accepted or refused alike on each path.
type setting struct {
	key      string // DSN key
	option   string // the Option that sets it ("" if none), named in its errors
	field    string // the Config field that holds it
	accepted string // accepted values, in words, for error messages

	// setDefault assigns the default (the named constants in pool.go),
	// Lambda-aware: c.InLambda is set.
	setDefault func(c *Config)
	// parse reads DSN text into the field; false when the text is not of
	// the field's form (bounds are valid's business).
	parse func(c *Config, v string) bool
	// value renders the field as DSN text: in FormatOwnKeys and as the
	// rejected value of an error. omit says the key is left out of
	// FormatOwnKeys (an unset optional value).
	value func(c *Config) string
	omit  func(c *Config) bool
	// valid reports whether the field's value is accepted.
	valid func(c *Config) bool
}

// pinCheckModes are the accepted values of pin_check, in documentation order.
var pinCheckModes = []PinCheckMode{PinCheckWarn, PinCheckOff, PinCheckRetire, PinCheckError}

// acceptedPinCheck lists pinCheckModes in words: "error, off, retire or warn".
var acceptedPinCheck = func() string {
	names := make([]string, len(pinCheckModes))
	for i, m := range pinCheckModes {
		names[i] = string(m)
	}
	slices.Sort(names)
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}()

// settings lists every key rdsproxy reads, in documentation order (the
// README's key table). A new setting is one row here, a Config field and,
// if it has one, its Option.
var settings = []setting{
	{
		// Off by default: password authentication is what a DSN means
		// unless it says otherwise.
		key: keyIAM, field: "IAM", accepted: acceptedBool,
		setDefault: func(c *Config) { c.IAM = false },
		parse:      func(c *Config, v string) bool { return parseBool(v, &c.IAM) },
		value:      func(c *Config) string { return strconv.FormatBool(c.IAM) },
		valid:      func(*Config) bool { return true },
	},
	{
		// Empty by default: the region is resolved at the first dial
		// (options, environment, host name; see resolveRegion).
		key: keyAWSRegion, field: "AWSRegion", accepted: acceptedRegion,
		setDefault: func(c *Config) { c.AWSRegion = "" },
		parse:      func(c *Config, v string) bool { c.AWSRegion = v; return true },
		value:      func(c *Config) string { return c.AWSRegion },
		omit:       func(c *Config) bool { return c.AWSRegion == "" },
		valid:      func(c *Config) bool { return c.AWSRegion == "" || iamauth.ValidRegion(c.AWSRegion) },
	},
	{
		// warn by default: a pinned session silently stops multiplexing.
		key: keyPinCheck, option: "WithPinCheck", field: "PinCheck", accepted: acceptedPinCheck,
		setDefault: func(c *Config) { c.PinCheck = PinCheckWarn },
		parse:      func(c *Config, v string) bool { c.PinCheck = PinCheckMode(v); return true },
		value:      func(c *Config) string { return string(c.PinCheck) },
		valid:      func(c *Config) bool { return slices.Contains(pinCheckModes, c.PinCheck) },
	},
	{
		// Off by default: one catalog query per checkout (about 1.5 ms,
		// BENCHMARKS.md) is for staging and CI, not production.
		key: keySessionAudit, option: "WithSessionAudit", field: "SessionAudit", accepted: acceptedOnOff,
		setDefault: func(c *Config) { c.SessionAudit = false },
		parse:      func(c *Config, v string) bool { return parseOnOff(v, &c.SessionAudit) },
		value:      func(c *Config) string { return onOff(c.SessionAudit) },
		valid:      func(*Config) bool { return true },
	},
	{
		key: keyPoolMaxConns, option: "WithMaxConns", field: "MaxConns", accepted: acceptedMaxConns,
		setDefault: func(c *Config) {
			c.MaxConns = DefaultMaxConns
			if c.InLambda {
				c.MaxConns = DefaultLambdaMaxConns
			}
		},
		parse: func(c *Config, v string) bool {
			n, err := strconv.ParseInt(v, 10, 32)
			c.MaxConns = int32(n)
			return err == nil && v[0] != '+' // "a whole number", as written in the key table
		},
		value: func(c *Config) string { return strconv.Itoa(int(c.MaxConns)) },
		valid: func(c *Config) bool { return c.MaxConns >= 1 && c.MaxConns <= maxMaxConns },
	},
	{
		key: keyPoolMaxConnLifetime, option: "WithMaxConnLifetime", field: "MaxConnLifetime", accepted: acceptedLifetime,
		setDefault: func(c *Config) { c.MaxConnLifetime = DefaultMaxConnLifetime },
		parse:      func(c *Config, v string) bool { return parseDuration(v, &c.MaxConnLifetime) },
		value:      func(c *Config) string { return c.MaxConnLifetime.String() },
		valid: func(c *Config) bool {
			return c.MaxConnLifetime >= minMaxConnLifetime && c.MaxConnLifetime < maxMaxConnLifetime
		},
	},
	{
		key: keyPoolMaxConnLifetimeJitter, option: "WithMaxConnLifetime", field: "MaxConnLifetimeJitter", accepted: acceptedJitter,
		setDefault: func(c *Config) { c.MaxConnLifetimeJitter = DefaultMaxConnLifetimeJitter },
		parse:      func(c *Config, v string) bool { return parseDuration(v, &c.MaxConnLifetimeJitter) },
		value:      func(c *Config) string { return c.MaxConnLifetimeJitter.String() },
		valid: func(c *Config) bool {
			// Compared by subtraction: lifetime+jitter can overflow to a
			// negative value.
			return c.MaxConnLifetimeJitter >= 0 && c.MaxConnLifetimeJitter < maxMaxConnLifetime-c.MaxConnLifetime
		},
	},
	{
		key: keyPoolMaxConnIdleTime, option: "WithMaxConnIdleTime", field: "MaxConnIdleTime", accepted: acceptedIdleTime,
		setDefault: func(c *Config) {
			c.MaxConnIdleTime = DefaultMaxConnIdleTime
			if c.InLambda {
				c.MaxConnIdleTime = DefaultLambdaMaxConnIdleTime
			}
		},
		parse: func(c *Config, v string) bool { return parseDuration(v, &c.MaxConnIdleTime) },
		value: func(c *Config) string { return c.MaxConnIdleTime.String() },
		valid: func(c *Config) bool {
			return c.MaxConnIdleTime >= minMaxConnIdleTime && c.MaxConnIdleTime <= maxMaxConnIdleTime
		},
	},
	{
		key: keyPoolHealthCheckPeriod, option: "WithHealthCheckPeriod", field: "HealthCheckPeriod", accepted: acceptedHealthCheckPeriod,
		setDefault: func(c *Config) { c.HealthCheckPeriod = DefaultHealthCheckPeriod },
		parse:      func(c *Config, v string) bool { return parseDuration(v, &c.HealthCheckPeriod) },
		value:      func(c *Config) string { return c.HealthCheckPeriod.String() },
		valid: func(c *Config) bool {
			return c.HealthCheckPeriod >= minHealthCheckPeriod && c.HealthCheckPeriod <= maxHealthCheckPeriod
		},
	},
	{
		// Empty by default: Cluster.Reader is the writer pool. Only
		// OpenCluster opens it; the other constructors refuse it
		// (checkOneEndpoint) rather than ignore it.
		key: keyReadHost, field: "ReadHost", accepted: acceptedReadHost,
		setDefault: func(c *Config) { c.ReadHost = "" },
		parse:      func(c *Config, v string) bool { c.ReadHost = v; return true },
		value:      func(c *Config) string { return c.ReadHost },
		omit:       func(c *Config) bool { return c.ReadHost == "" },
		valid: func(c *Config) bool {
			if c.ReadHost == "" {
				return true
			}
			_, _, err := parseReadHost(c.ReadHost)
			return err == nil
		},
	},
	{
		// off by default: the writer may have no room for the reads, and a
		// reader outage should be seen.
		key: keyReadFallback, field: "ReadFallback", accepted: acceptedReadFallback,
		setDefault: func(c *Config) { c.ReadFallback = ReadFallbackOff },
		parse:      func(c *Config, v string) bool { c.ReadFallback = ReadFallbackMode(v); return true },
		value:      func(c *Config) string { return string(c.ReadFallback) },
		valid: func(c *Config) bool {
			return c.ReadFallback == ReadFallbackOff || c.ReadFallback == ReadFallbackWriter
		},
	},
}

// ownKeys lists every key rdsproxy reads, in documentation order.
var ownKeys = func() []string {
	keys := make([]string, len(settings))
	for i, s := range settings {
		keys[i] = s.key
	}
	return keys
}()

// settingOf returns the row of a DSN key, or nil.
func settingOf(key string) *setting {
	for i := range settings {
		if settings[i].key == key {
			return &settings[i]
		}
	}
	return nil
}

// clampInt32 converts n, keeping a value outside int32's range out of it
// in the same direction, so that a check refuses it rather than a wrapped
// value passing.
func clampInt32(n int) int32 {
	return int32(max(math.MinInt32, min(n, math.MaxInt32)))
}

func parseBool(v string, b *bool) bool {
	switch v {
	case "true":
		*b = true
	case "false":
		*b = false
	default:
		return false
	}
	return true
}

// parseOnOff reads a key whose values are on and off.
func parseOnOff(v string, b *bool) bool {
	switch v {
	case "on":
		*b = true
	case "off":
		*b = false
	default:
		return false
	}
	return true
}

// onOff renders b as on or off.
func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func parseDuration(v string, d *time.Duration) bool {
	p, err := time.ParseDuration(v)
	*d = p
	return err == nil
}

// applyDefaults sets every setting of c to its default.
func (c *Config) applyDefaults() {
	for i := range settings {
		settings[i].setDefault(c)
	}
}

// setKey parses one of rdsproxy's keys into c: the single place where DSN
// text becomes a typed value. The value's bounds are checked by validate.
func (c *Config) setKey(key, v string) error {
	s := settingOf(key)
	if s == nil {
		return &ConfigError{Key: key, Value: v, Accepted: "no such key; rdsproxy's keys are " + strings.Join(ownKeys, ", ")}
	}
	if !s.parse(c, v) {
		return &ConfigError{Key: key, Value: v, Accepted: s.accepted}
	}
	return nil
}

// checkSettings runs the settings' checks, in table order, and names the
// first failure by its DSN key.
func (c *Config) checkSettings() error {
	for i := range settings {
		if s := &settings[i]; !s.valid(c) {
			return &ConfigError{Key: s.key, Value: s.value(c), Accepted: s.accepted}
		}
	}
	return nil
}

// checkKeys runs the checks of the given keys' rows and names a failure
// name: an Option reports its own name for the settings it assigns.
func (c *Config) checkKeys(name string, keys ...string) error {
	for _, k := range keys {
		if s := settingOf(k); !s.valid(c) {
			return &ConfigError{Key: name, Value: s.value(c), Accepted: s.accepted}
		}
	}
	return nil
}

// ownKeyValues renders rdsproxy's keys of c as DSN values, for FormatOwnKeys
// and the round-trip fuzz test.
func (c *Config) ownKeyValues() [][2]string {
	kv := make([][2]string, 0, len(settings))
	for _, s := range settings {
		if s.omit != nil && s.omit(c) {
			continue
		}
		kv = append(kv, [2]string{s.key, s.value(c)})
	}
	return kv
}

// Bounds of the duration settings, checked by the settings table above and
// checkTokenMargin.
const (
	// minMaxConnLifetime: every retirement opens a new connection (TCP, TLS,
	// the proxy's token check); a shorter lifetime turns a busy pool into
	// about a connection per checkout.
	minMaxConnLifetime = time.Minute
	// maxMaxConnLifetime (exclusive, for the lifetime plus its jitter): RDS
	// Proxy closes every client connection at 24h, possibly mid-statement.
	maxMaxConnLifetime = proxyClientMaxLife

	// minMaxConnIdleTime: a shorter idle limit retires connections between the
	// statements of one request, reconnecting for nothing.
	minMaxConnIdleTime = time.Second
	// maxMaxConnIdleTime: no connection lives longer than the lifetime, which
	// is below 24h, so a longer idle limit can only be a typo.
	maxMaxConnIdleTime = proxyClientMaxLife

	// minHealthCheckPeriod: the check only compares clocks with the lifetime
	// and idle limits, at least a second each; running it more often only
	// wakes the process (a period of a nanosecond keeps a core busy).
	minHealthCheckPeriod = time.Second
	// maxHealthCheckPeriod: the check is what closes connections parked past
	// their idle limit; a longer period leaves them open at the proxy for no
	// gain.
	maxHealthCheckPeriod = proxyClientMaxLife

	// minTokenMargin (for TokenSourceOptions.Margin; 0 means the default):
	// a cached token handed out with less life left can expire during the
	// dial (DNS, TCP, TLS, a connect timeout while Aurora resumes) or under
	// clock skew, and be refused by the proxy.
	minTokenMargin = 30 * time.Second
	// maxTokenMargin: a token lives 15 minutes; a margin of all of it turns
	// reuse off (a signing per dial), anything longer can only be a typo.
	maxTokenMargin = iamauth.TokenLifetime
)

// Accepted values of the duration settings, in words, from the bounds above.
var (
	acceptedLifetime = fmt.Sprintf("a Go duration from %s, below %s (RDS Proxy's fixed client connection life) "+
		"together with its jitter", fmtDuration(minMaxConnLifetime), fmtDuration(maxMaxConnLifetime))
	acceptedJitter = fmt.Sprintf("a Go duration from 0s, with the lifetime below %s (RDS Proxy's fixed client "+
		"connection life)", fmtDuration(maxMaxConnLifetime))
	acceptedIdleTime = fmt.Sprintf("a Go duration from %s to %s", fmtDuration(minMaxConnIdleTime),
		fmtDuration(maxMaxConnIdleTime))
	acceptedHealthCheckPeriod = fmt.Sprintf("a Go duration from %s to %s", fmtDuration(minHealthCheckPeriod),
		fmtDuration(maxHealthCheckPeriod))
	acceptedTokenMargin = fmt.Sprintf("0 (the default, %s) or a duration from %s to %s (the token's whole life: no reuse)",
		fmtDuration(iamauth.DefaultMargin), fmtDuration(minTokenMargin), fmtDuration(maxTokenMargin))
)

// fmtDuration writes d as a user would type it: 1m, 24h, 1s (not 1m0s).
func fmtDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// checkTokenMargin checks a TokenSource's margin (0 selects the default).
func checkTokenMargin(key string, d time.Duration) error {
	if d != 0 && (d < minTokenMargin || d > maxTokenMargin) {
		return &ConfigError{Key: key, Value: d.String(), Accepted: acceptedTokenMargin}
	}
	return nil
}
