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

// pinTracer is tracer plus the runtime pinning check (pin_check=warn, retire
// or error) and the session audit's record of statements. It is a separate
// type so that with pin_check=off and no audit pgx does not even call the
// prepare hooks: the check then costs nothing at all. (tracer has batch and
// connect hooks of its own, for telemetry: a batch is one operation, timed
// as such.)
type pinTracer struct {
	tracer
	pinTracerMode
	pins *pinChecker
}

// pinTracerMode says what pinTracer does besides reporting.
type pinTracerMode struct {
	check  bool // run the pinning check (pin_check is not off)
	refuse bool // pin_check=error
	audit  bool // session_audit=on: record statements as suspects
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
// user's tracer, if any. pins is nil with pin_check=off and no session audit;
// mode says what the pinning tracer does. multitracer calls every interface
// each of them implements.
func newTracer(tel *telemetry, pins *pinChecker, mode pinTracerMode, policy *poolPolicy, out *checkouts, user pgx.QueryTracer) pgx.QueryTracer {
	base := tracer{policy: policy, tel: tel, out: out}
	var t pgx.QueryTracer = &base
	if pins != nil {
		t = &pinTracer{tracer: base, pinTracerMode: mode, pins: pins}
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
	ctx = t.tracer.TraceQueryStart(ctx, conn, data)
	return t.checked(ctx, conn, data.SQL, PinKindQuery)
}

// TraceBatchStart checks every statement of a batch before any is sent:
// pgx sends a batch in one go, so under pin_check=error one pinning
// statement refuses the whole batch, and under retire the connection is
// marked before the batch runs.
func (t *pinTracer) TraceBatchStart(ctx context.Context, conn *pgx.Conn, data pgx.TraceBatchStartData) context.Context {
	ctx = t.tracer.TraceBatchStart(ctx, conn, data)
	if data.Batch == nil {
		return ctx
	}
	for _, q := range data.Batch.QueuedQueries {
		if refused := t.checked(ctx, conn, q.SQL, PinKindBatch); refused != ctx {
			return refused
		}
	}
	return ctx
}

// TraceBatchQuery has nothing left to do: TraceBatchStart checked the batch.
func (t *pinTracer) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}

// TracePrepareStart checks named prepares. An unnamed one ("") is pgx
// describing a statement it is about to run through Query or Exec, which
// TraceQueryStart already checked.
func (t *pinTracer) TracePrepareStart(ctx context.Context, conn *pgx.Conn, data pgx.TracePrepareStartData) context.Context {
	if data.Name == "" {
		return ctx
	}
	return t.checked(ctx, conn, data.SQL, PinKindPrepare)
}

func (t *pinTracer) TracePrepareEnd(_ context.Context, _ *pgx.Conn, _ pgx.TracePrepareEndData) {}

// checked runs the pinning check on one statement about to be sent on conn
// and acts on it by mode: it returns the context pgx is to use, which under
// pin_check=error refuses a pinning statement. It also records the statement
// for the session audit.
func (t *pinTracer) checked(ctx context.Context, conn *pgx.Conn, sql, kind string) context.Context {
	if t.check {
		if v := t.pins.check(sql, kind, t.tel); v != nil {
			if t.refuse {
				return refuse(ctx, v)
			}
			t.policy.onPinned(conn, v)
		}
	}
	if t.audit {
		if a := auditOf(conn); a != nil {
			a.ran(sql)
		}
	}
	return ctx
}
