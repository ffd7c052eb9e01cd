// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

package rdsproxy

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rdsproxy/rdsproxy/internal/iamauth"
)

// NewPgxpoolConfig parses dsn (the same connection strings and options as
// [Open]) and returns a *pgxpool.Config for native pgx users, to pass to
// pgxpool.NewWithConfig. Nothing is dialed. The config carries:
//
//   - the IAM token hook (BeforeConnect) of iam=true, [WithTokenSource],
//     [WithCredentialsProvider], [WithAWSConfig] or [WithTokenFunc]: every new
//     connection gets a token from the same cache the database/sql connector
//     uses;
//   - the pinning check (pin_check=warn, [WithLogger], [WithPinHandler]) as
//     ConnConfig.Tracer, chained with [WithTracer]'s tracer. Replacing
//     ConnConfig.Tracer afterwards removes the check (and the IAM cache
//     invalidation below): pass your tracer with WithTracer instead;
//   - the proxy-tuned pool settings, enforced by pgxpool itself, since no
//     database/sql layer holds connections here: MaxConns, MaxConnLifetime,
//     MaxConnLifetimeJitter, MaxConnIdleTime and HealthCheckPeriod from the
//     pool_* keys and their defaults, and MinConns 0 (nothing dialed in the
//     background);
//   - pgx's cache_describe exec mode ([DefaultQueryExecMode]) unless the DSN
//     sets default_query_exec_mode.
//   - with pin_check=retire or session_audit=on, the AfterConnect, ShouldPing,
//     PrepareConn, AfterRelease and BeforeClose hooks that retire a
//     connection at its release and run the audit at checkout; call them
//     from your own if you replace them.
//
// Differences from the database/sql connector: pgxpool cannot retry a dial,
// so when the proxy rejects a cached IAM token the Acquire that dialed fails;
// the token is dropped from the cache at that moment, and the next dial signs
// a fresh one. The connector's MSG_PEEK liveness probe is not installed:
// pgxpool pings connections idle for over a second before handing them out.
// Pinning warnings still queued when the pool closes are delivered in the
// background.
//
// The returned config may be changed before use (AfterConnect, MaxConns and
// the rest); keep BeforeConnect, or call the one installed here from yours:
// it sets each dial's password (the connection string's, or an IAM token).
func NewPgxpoolConfig(dsn string, opts ...Option) (*pgxpool.Config, error) {
	cfg, err := ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	if err := cfg.apply(opts); err != nil {
		return nil, err
	}
	if err := cfg.checkOneEndpoint(); err != nil {
		return nil, err
	}
	parts, err := buildPool(cfg, false)
	if err != nil {
		return nil, err
	}
	return parts.pc, nil
}

// iamDialTracer drops a cached IAM token from the cache when the proxy
// rejected a dial that used it, so that pgxpool's next dial signs a fresh one
// (the connector retries the dial itself instead). BeforeConnect records the
// cached tokens it hands out, keyed by value, because pgx copies the
// ConnConfig between BeforeConnect and the connect tracer. Only the latest
// cached token is remembered: every dial of the pool uses the same key, a dial
// whose token was replaced meanwhile needs no invalidation (the new one is
// newer), and nothing accumulates if the user replaces the tracer.
type iamDialTracer struct {
	iam     *iamState
	pending atomic.Pointer[pendingToken]
}

type pendingToken struct {
	value    string
	signedAt time.Time
}

type iamDialKey struct{}

var (
	_ pgx.QueryTracer   = (*iamDialTracer)(nil)
	_ pgx.ConnectTracer = (*iamDialTracer)(nil)
)

func (t *iamDialTracer) TraceConnectStart(ctx context.Context, data pgx.TraceConnectStartData) context.Context {
	if p := t.pending.Load(); p != nil && p.value == data.ConnConfig.Password {
		return context.WithValue(ctx, iamDialKey{}, p.signedAt)
	}
	return ctx
}

func (t *iamDialTracer) TraceConnectEnd(ctx context.Context, data pgx.TraceConnectEndData) {
	if data.Err == nil || !iamauth.IsAuthFailure(data.Err) {
		return
	}
	if signedAt, ok := ctx.Value(iamDialKey{}).(time.Time); ok {
		t.iam.tokens.src.Invalidate(t.iam.key, signedAt)
	}
}

func (t *iamDialTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return ctx
}

func (t *iamDialTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
