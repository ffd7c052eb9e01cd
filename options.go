// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

package rdsproxy

import (
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// Option changes a [Config] after its connection string was parsed, so options
// win over DSN keys, which win over defaults. An option with a bad value makes
// NewConnector or Open fail with a [ConfigError] naming the option. The
// options that set a Config field accept exactly what the field accepts when
// set from the DSN or directly (see [Config]).
type Option func(*Config) error

// WithMaxConns sets the connection cap (DSN key pool_max_conns).
func WithMaxConns(n int) Option {
	return func(c *Config) error {
		c.MaxConns = clampInt32(n)
		return c.checkKeys("WithMaxConns", keyPoolMaxConns)
	}
}

// WithMaxConnLifetime sets the lifetime and its jitter (DSN keys
// pool_max_conn_lifetime and pool_max_conn_lifetime_jitter).
func WithMaxConnLifetime(lifetime, jitter time.Duration) Option {
	return func(c *Config) error {
		c.MaxConnLifetime, c.MaxConnLifetimeJitter = lifetime, jitter
		return c.checkKeys("WithMaxConnLifetime", keyPoolMaxConnLifetime, keyPoolMaxConnLifetimeJitter)
	}
}

// WithMaxConnIdleTime sets the idle time (DSN key pool_max_conn_idle_time).
func WithMaxConnIdleTime(d time.Duration) Option {
	return func(c *Config) error {
		c.MaxConnIdleTime = d
		return c.checkKeys("WithMaxConnIdleTime", keyPoolMaxConnIdleTime)
	}
}

// WithHealthCheckPeriod sets how often idle connections parked in the pool
// are checked for lifetime and idle time (DSN key pool_health_check_period).
func WithHealthCheckPeriod(d time.Duration) Option {
	return func(c *Config) error {
		c.HealthCheckPeriod = d
		return c.checkKeys("WithHealthCheckPeriod", keyPoolHealthCheckPeriod)
	}
}

// WithPinCheck sets the pinning check mode (DSN key pin_check).
func WithPinCheck(mode PinCheckMode) Option {
	return func(c *Config) error {
		c.PinCheck = mode
		return c.checkKeys("WithPinCheck", keyPinCheck)
	}
}

// WithLogger sends the driver's warnings to l instead of slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(c *Config) error {
		if l == nil {
			return &ConfigError{Key: "WithLogger", Value: "nil", Accepted: "a non-nil *slog.Logger"}
		}
		c.Logger = l
		return nil
	}
}

// WithTracer chains the caller's pgx tracer with rdsproxy's own. It may also
// implement pgx's BatchTracer, PrepareTracer, ConnectTracer and the rest; every
// interface it implements is called. (Setting ConnConfig.Tracer directly would
// be replaced, because rdsproxy installs its own tracer there.)
func WithTracer(t pgx.QueryTracer) Option {
	return func(c *Config) error {
		if t == nil {
			return &ConfigError{Key: "WithTracer", Value: "nil", Accepted: "a non-nil pgx.QueryTracer"}
		}
		c.Tracer = t
		return nil
	}
}

// WithPinHandler registers h to be called once per distinct statement that
// pins the RDS Proxy session, with the same deduplication as the warning log
// but without its rate limit: every distinct pinning statement reaches h.
// Tests use it to fail on pinning. It has no effect with pin_check=off.
//
// h runs on a background goroutine, one event at a time and in the order the
// statements were first seen, so a slow h never holds up a query; it must be
// safe to call while queries run (it may call t.Errorf, not t.Fatal). Events
// carry fingerprints, never parameter values or literals. If more than 1024
// events wait for a slow h, further ones are dropped.
func WithPinHandler(h func(PinEvent)) Option {
	return func(c *Config) error {
		if h == nil {
			return &ConfigError{Key: "WithPinHandler", Value: "nil", Accepted: "a non-nil func(rdsproxy.PinEvent)"}
		}
		c.PinHandler = h
		return nil
	}
}

// WithMeterProvider sends the driver's metrics to mp instead of
// OpenTelemetry's global MeterProvider.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *Config) error {
		if mp == nil {
			return &ConfigError{Key: "WithMeterProvider", Value: "nil", Accepted: "a non-nil metric.MeterProvider"}
		}
		c.MeterProvider = mp
		return nil
	}
}

// WithTracerProvider sends the driver's spans to tp instead of
// OpenTelemetry's global TracerProvider.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *Config) error {
		if tp == nil {
			return &ConfigError{Key: "WithTracerProvider", Value: "nil", Accepted: "a non-nil trace.TracerProvider"}
		}
		c.TracerProvider = tp
		return nil
	}
}

// WithPoolName sets the db.client.connection.pool.name attribute of every
// instrument (default server.address:server.port/db.namespace). Give each
// connector in a process its own name.
func WithPoolName(name string) Option {
	return func(c *Config) error {
		if name == "" {
			return &ConfigError{Key: "WithPoolName", Value: `""`, Accepted: "a non-empty name"}
		}
		c.PoolName = name
		return nil
	}
}

// WithQuerySpans turns on a span per statement and per batch (off by
// default, so that otelsql or otelpgx users do not get duplicates).
func WithQuerySpans(on bool) Option {
	return func(c *Config) error {
		c.QuerySpans = on
		return nil
	}
}

// WithQueryFingerprintAttribute adds statement fingerprints (literals
// replaced by ?) to the pinning counter and to query spans. Off by default.
func WithQueryFingerprintAttribute(on bool) Option {
	return func(c *Config) error {
		c.QueryFingerprintAttribute = on
		return nil
	}
}
