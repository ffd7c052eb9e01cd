// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

package rdsproxy

import (
	"context"
	"reflect"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// dialTel follows one physical connect from BeforeConnect to pgx's
// TraceConnectEnd. It travels in the dial's context, so the token hooks find
// the connect span (their parent) and the connector's instruments.
type dialTel struct {
	tel   *telemetry
	ctx   context.Context // carries span and this record
	span  trace.Span
	start time.Time
}

type dialTelKey struct{}

func dialTelFrom(ctx context.Context) *dialTel {
	d, _ := ctx.Value(dialTelKey{}).(*dialTel)
	return d
}

// wrapConnect makes pc's BeforeConnect start the connect span (and the
// create_time clock) before whatever BeforeConnect was installed (the IAM
// token hook), which then runs under the span. pgxpool passes one context
// value, unique to the dial, to BeforeConnect and then to pgx.ConnectConfig,
// whose connect tracer picks the record up (see connectStart).
func (t *telemetry) wrapConnect(pc *pgxpool.Config) {
	inner := pc.BeforeConnect
	pc.BeforeConnect = func(ctx context.Context, cc *pgx.ConnConfig) error {
		d := t.startDial(ctx)
		if inner == nil {
			return nil
		}
		ictx := ctx
		if d != nil {
			ictx = d.ctx
		}
		if err := inner(ictx, cc); err != nil {
			if d != nil {
				t.dials.Delete(ctx)
				d.end(err)
			}
			return err
		}
		return nil
	}
}

func (t *telemetry) startDial(ctx context.Context) *dialTel {
	if rt := reflect.TypeOf(ctx); rt == nil || !rt.Comparable() {
		return nil // cannot be a map key; go without a span
	}
	d := &dialTel{tel: t, start: time.Now()}
	sctx, span := t.tracer.Start(ctx, spanConnect, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(t.serverAttrs...),
		trace.WithAttributes(semconv.DBSystemNamePostgreSQL, semconv.DBClientConnectionPoolName(t.poolName)))
	d.span = span
	d.ctx = context.WithValue(sctx, dialTelKey{}, d)
	if _, loaded := t.dials.LoadOrStore(ctx, d); loaded {
		span.End() // two dials under one context: leave the second untraced
		return nil
	}
	return d
}

// connectStart is pgx's TraceConnectStart: it swaps in the dial's context so
// TraceConnectEnd finds the record even through a multitracer.
func (t *telemetry) connectStart(ctx context.Context) context.Context {
	if t == nil {
		return ctx
	}
	if v, ok := t.dials.LoadAndDelete(ctx); ok {
		return v.(*dialTel).ctx
	}
	return ctx
}

func (t *telemetry) connectEnd(ctx context.Context, err error) {
	if t == nil {
		return
	}
	if d := dialTelFrom(ctx); d != nil && d.tel == t {
		d.end(err)
	}
}

// end records create_time for a successful connect and ends the span.
func (d *dialTel) end(err error) {
	if err != nil {
		failSpan(d.span, err)
	} else {
		d.tel.createTime.Inst().Record(d.ctx, time.Since(d.start).Seconds(), d.tel.poolOpt)
	}
	d.span.End()
}

// tokenStart starts the token-acquisition span, a child of the connect span.
// Outside a connector's dial (no record in ctx) it does nothing.
func tokenStart(ctx context.Context) (context.Context, trace.Span) {
	d := dialTelFrom(ctx)
	if d == nil {
		return ctx, nil
	}
	return d.tel.tracer.Start(ctx, spanToken)
}

// tokenEnd records the cache outcome: hit (from the cache) or miss (signed
// by this dial, which then has a rdsproxy.iam.sign child span, or by a
// concurrent dial it waited for).
func tokenEnd(ctx context.Context, span trace.Span, cached bool, err error) {
	d := dialTelFrom(ctx)
	if d == nil || span == nil {
		return
	}
	switch {
	case err != nil:
		failSpan(span, err)
	case cached:
		span.SetAttributes(attrTokenCache.String("hit"))
		d.tel.cacheHits.Add(ctx, 1, d.tel.poolOpt)
	default:
		span.SetAttributes(attrTokenCache.String("miss"))
	}
	span.End()
}

// signStart and signEnd wrap one signing by a TokenSource. The signing runs
// under the context of the dial that started it, whose connector gets the
// metrics (a TokenSource may be shared between connectors).
func signStart(ctx context.Context) (time.Time, trace.Span) {
	d := dialTelFrom(ctx)
	if d == nil {
		return time.Time{}, nil
	}
	_, span := d.tel.tracer.Start(ctx, spanSign)
	return time.Now(), span
}

func signEnd(ctx context.Context, start time.Time, span trace.Span, err error) {
	d := dialTelFrom(ctx)
	if d == nil || span == nil {
		return
	}
	t := d.tel
	t.signings.Add(ctx, 1, t.poolOpt)
	if err != nil {
		failSpan(span, err)
	} else {
		t.signDuration.Record(ctx, time.Since(start).Seconds(), t.poolOpt)
	}
	span.End()
}

// iamAuthFailed counts a dial the proxy rejected; cached tells whether the
// rejected token came from the cache (then the dial is retried once).
func (t *telemetry) iamAuthFailed(ctx context.Context, cached bool) {
	if t == nil || !t.authFailures.Enabled(ctx) {
		return
	}
	t.authFailures.Add(ctx, 1, metric.WithAttributes(semconv.DBClientConnectionPoolName(t.poolName), attrTokenCached.Bool(cached)))
}

func (t *telemetry) iamAuthRetried(ctx context.Context) {
	if t == nil {
		return
	}
	t.authRetries.Add(ctx, 1, t.poolOpt)
}
