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
	c *Connector
}

var (
	_ pgx.QueryTracer = (*tracer)(nil)
)

// newTracer returns rdsproxy's tracer chained with the user's, if any.
func newTracer(c *Connector, user pgx.QueryTracer) pgx.QueryTracer {
	t := &tracer{c: c}
	if user == nil {
		return t
	}
	return multitracer.New(t, user)
}

func (t *tracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return ctx
}

func (t *tracer) TraceQueryEnd(_ context.Context, conn *pgx.Conn, _ pgx.TraceQueryEndData) {
	t.c.policy.touch(conn)
}
