// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

package rdsproxy

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/multitracer"
)

// tracer is rdsproxy's pgx tracer: pgx calls it for every statement on every
// connection, which makes it the one place that sees Query, Exec, statements in
// transactions and batches, and named prepares. It must stay allocation-free.
type tracer struct {
	policy *poolPolicy
	tel    *telemetry
	out    *checkouts // the connector's checked-out connections (checkouts.go)
}

// pinTracer is tracer plus the runtime pinning check (pin_check=warn). It is a
// separate type so that with pin_check=off pgx does not even call the prepare
// hooks: the check then costs nothing at all. (tracer has batch and connect
// hooks of its own, for telemetry: a batch is one operation, timed as such.)
type pinTracer struct {
	tracer
	pins *pinChecker
}

var (
	_ pgx.QueryTracer   = (*tracer)(nil)
	_ pgx.BatchTracer   = (*tracer)(nil)
	_ pgx.ConnectTracer = (*tracer)(nil)
	_ pgx.QueryTracer   = (*pinTracer)(nil)
	_ pgx.BatchTracer   = (*pinTracer)(nil)
	_ pgx.PrepareTracer = (*pinTracer)(nil)
)

// newTracer returns rdsproxy's tracer over the given parts (out receives
// pgxpool's releases), chained with the
// user's tracer, if any. pins is nil with pin_check=off. multitracer calls
// every interface each of them implements.
func newTracer(tel *telemetry, pins *pinChecker, policy *poolPolicy, out *checkouts, user pgx.QueryTracer) pgx.QueryTracer {
	base := tracer{policy: policy, tel: tel, out: out}
	var t pgx.QueryTracer = &base
	if pins != nil {
		t = &pinTracer{tracer: base, pins: pins}
	}
	if user == nil {
		return t
	}
	return multitracer.New(t, user)
}

func (t *tracer) TraceQueryStart(ctx context.Context, conn *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	t.policy.statementStarted(stateOf(conn))
	return t.tel.queryStart(ctx, conn, data.SQL, 0)
}

// TraceQueryEnd looks the connection's state up once for both the pool
// policy and telemetry: it runs after every statement.
func (t *tracer) TraceQueryEnd(ctx context.Context, conn *pgx.Conn, data pgx.TraceQueryEndData) {
	s := stateOf(conn)
	t.policy.statementEnded(ctx, s, conn, data.Err)
	t.tel.queryEnd(ctx, s, data.Err)
}

// TraceBatchStart and TraceBatchEnd time a batch as one operation (BATCH).
func (t *tracer) TraceBatchStart(ctx context.Context, conn *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	t.policy.statementStarted(stateOf(conn))
	return t.tel.queryStart(ctx, conn, "", opBatch)
}

func (t *tracer) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}

func (t *tracer) TraceBatchEnd(ctx context.Context, conn *pgx.Conn, data pgx.TraceBatchEndData) {
	s := stateOf(conn)
	t.policy.statementEnded(ctx, s, conn, data.Err)
	t.tel.queryEnd(ctx, s, data.Err)
}

// TraceConnectStart and TraceConnectEnd close the connect span and record
// create_time (telemetry_dial.go); the span starts in BeforeConnect, before the
// token is fetched.
func (t *tracer) TraceConnectStart(ctx context.Context, _ pgx.TraceConnectStartData) context.Context {
	return t.tel.connectStart(ctx)
}

func (t *tracer) TraceConnectEnd(ctx context.Context, data pgx.TraceConnectEndData) {
	t.tel.connectEnd(ctx, data.Err)
}

// TraceQueryStart checks the statement before it is sent. data.Args are never
// looked at: parameter values must not reach a log.
func (t *pinTracer) TraceQueryStart(ctx context.Context, conn *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	t.pins.check(data.SQL, PinKindQuery)
	return t.tracer.TraceQueryStart(ctx, conn, data)
}

// TraceBatchQuery checks each statement of a batch as its result is read.
func (t *pinTracer) TraceBatchQuery(_ context.Context, _ *pgx.Conn, data pgx.TraceBatchQueryData) {
	t.pins.check(data.SQL, PinKindBatch)
}

// TracePrepareStart reports named prepares. An unnamed one ("") is pgx
// describing a statement it is about to run through Query or Exec, which
// TraceQueryStart already checks.
func (t *pinTracer) TracePrepareStart(ctx context.Context, _ *pgx.Conn, data pgx.TracePrepareStartData) context.Context {
	if data.Name != "" {
		t.pins.check(data.SQL, PinKindPrepare)
	}
	return ctx
}

func (t *pinTracer) TracePrepareEnd(_ context.Context, _ *pgx.Conn, _ pgx.TracePrepareEndData) {}
