// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

package rdsproxy

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/multitracer"
	"github.com/jackc/pgx/v5/pgxpool"
)

// poolParts is a pgxpool configuration built from a [Config], with the parts
// that act on its connections.
type poolParts struct {
	pc     *pgxpool.Config
	policy *poolPolicy // the pool policy (pool.go); empty outside database/sql
	tel    *telemetry  // OpenTelemetry instruments (telemetry.go)
	pins   *pinChecker // nil under pin_check=off without session_audit
	iam    *iamState   // nil unless iam=true
	out    *checkouts  // connections handed to database/sql (checkouts.go), released by the tracer
}

// apply runs opts on c, in order, then validates the result.
func (c *Config) apply(opts []Option) error {
	for _, opt := range opts {
		if err := opt(c); err != nil {
			return err
		}
	}
	return c.validate()
}

// buildPool turns a validated cfg into a pgxpool configuration: the tracer
// (telemetry, pinning check, the user's tracer), the password or IAM token
// hook, and the pool limits. It dials nothing.
//
// forDatabaseSQL selects the connector's pool: the pool policy enforces
// lifetime, jitter and idle time at checkout (pgxpool's own limits become
// backstops) and telemetry times the connects. Otherwise (NewPgxpoolConfig)
// pgxpool enforces the limits itself, the tracer's policy bookkeeping finds
// no per-connection state and does nothing, and a rejected cached IAM token
// is dropped from the cache by a connect tracer, since no connector retries
// the dial.
func buildPool(cfg *Config, forDatabaseSQL bool) (*poolParts, error) {
	// pgxpool only accepts a Config made by its ParseConfig: copy the one
	// ParseConfig made. Its ConnConfig is replaced by cfg's, which options
	// may have changed.
	p := &poolParts{pc: cfg.parsedPool.Copy(), policy: &poolPolicy{}, tel: newTelemetry(cfg), out: &checkouts{}}
	pc := p.pc
	pc.ConnConfig = cfg.ConnConfig.Copy()
	mode := pinTracerMode{check: cfg.PinCheck != PinCheckOff, refuse: cfg.PinCheck == PinCheckError, audit: cfg.SessionAudit}
	switch {
	case !mode.check && !mode.audit:
	case cfg.sharedPins != nil:
		p.pins = cfg.sharedPins
	default:
		// The audit reports through the checker's queue even with the check off.
		p.pins = newPinChecker(cfg.Logger, cfg.PinHandler)
	}
	if forDatabaseSQL {
		p.policy = &poolPolicy{
			lifetime: cfg.MaxConnLifetime,
			jitter:   cfg.MaxConnLifetimeJitter,
			idle:     cfg.MaxConnIdleTime,
			onRetire: p.tel.onRetire,
		}
		p.policy.configurePool(pc, cfg.MaxConns, cfg.HealthCheckPeriod)
	} else {
		pc.MaxConns = cfg.MaxConns
		pc.MinConns = 0 // never dial in the background: Lambda and cold starts pay only for what they use
		pc.MaxConnLifetime = cfg.MaxConnLifetime
		pc.MaxConnLifetimeJitter = cfg.MaxConnLifetimeJitter
		pc.MaxConnIdleTime = cfg.MaxConnIdleTime
		pc.HealthCheckPeriod = cfg.HealthCheckPeriod
	}
	if cfg.PinCheck == PinCheckRetire {
		p.policy.churn = newChurnGuard(cfg.Logger)
	}
	if cfg.SessionAudit {
		p.policy.audit = newSessionAudit(p.pins)
	}
	if !forDatabaseSQL && (cfg.PinCheck == PinCheckRetire || cfg.SessionAudit) {
		p.policy.configureContainment(pc)
	}
	tr := newTracer(p.tel, p.pins, mode, p.policy, p.out, cfg.Tracer)
	iam, err := installAuth(cfg, pc)
	if err != nil {
		return nil, err
	}
	p.iam = iam
	if forDatabaseSQL {
		pc.ConnConfig.Tracer = tr
		p.tel.wrapConnect(pc) // the connect span and create_time, around the token hook
		return p, nil
	}
	if iam != nil {
		it := &iamDialTracer{iam: iam}
		hook := pc.BeforeConnect
		pc.BeforeConnect = func(ctx context.Context, cc *pgx.ConnConfig) error {
			rec := &dialRecord{}
			if err := hook(context.WithValue(ctx, dialRecordKey{}, rec), cc); err != nil {
				return err
			}
			if used, cached, signedAt := rec.get(); used && cached {
				it.pending.Store(&pendingToken{value: cc.Password, signedAt: signedAt})
			}
			return nil
		}
		tr = multitracer.New(tr, it)
	}
	pc.ConnConfig.Tracer = tr
	return p, nil
}
