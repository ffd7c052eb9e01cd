// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

package rdsproxy

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/semconv/v1.43.0/dbconv"
	"go.opentelemetry.io/otel/trace"

	"github.com/rdsproxy/rdsproxy/internal/pinning"
)

// opNames is the bounded set of db.operation.name values: the first keyword
// of a statement, upper-cased. Index 0 means unknown (no attribute); the SQL
// text itself never becomes an attribute.
var opNames = [...]string{"",
	"SELECT", "INSERT", "UPDATE", "DELETE", "MERGE", "VALUES", "TABLE", "CALL", "DO", "COPY",
	"BEGIN", "START", "COMMIT", "END", "ROLLBACK", "SAVEPOINT", "RELEASE", "ABORT",
	"PREPARE", "EXECUTE", "DEALLOCATE", "SET", "RESET", "SHOW", "DISCARD",
	"LISTEN", "UNLISTEN", "NOTIFY", "DECLARE", "FETCH", "MOVE", "CLOSE", "LOCK",
	"CREATE", "ALTER", "DROP", "TRUNCATE", "COMMENT", "GRANT", "REVOKE",
	"EXPLAIN", "ANALYZE", "VACUUM", "REFRESH", "REINDEX", "CLUSTER", "CHECKPOINT", "LOAD",
	"BATCH",
}

var opIndexByName = func() map[string]uint32 {
	m := make(map[string]uint32, len(opNames))
	for i, n := range opNames[1:] {
		m[n] = uint32(i + 1)
	}
	return m
}()

var opBatch = opIndexByName["BATCH"]

// operationIndex returns the index in opNames of sql's first keyword
// (pinning.FirstKeyword, the analyzer's tokenizer), or 0. It allocates
// nothing.
func operationIndex(sql string) uint32 {
	kw := pinning.FirstKeyword(sql)
	var upper [16]byte // longer than any name in opNames
	if kw == "" || len(kw) > len(upper) {
		return 0
	}
	for i := range len(kw) {
		c := kw[i]
		if c >= 'a' && c <= 'z' {
			c -= 'a' - 'A'
		}
		upper[i] = c
	}
	return opIndexByName[string(upper[:len(kw)])]
}

// querySpanKey holds rdsproxy's own query span, so the end hook ends it and
// not a span another tracer (otelpgx) put in the same context.
type querySpanKey struct{}

// queryStart is called by pgx before every statement (and batch). The start
// time and operation go into the connection's state, since one pgx.Conn runs
// one statement at a time: no context value, no allocation.
func (t *telemetry) queryStart(ctx context.Context, conn *pgx.Conn, sql string, op uint32) context.Context {
	if t == nil {
		return ctx
	}
	if t.opDuration.Inst().Enabled(ctx) {
		if s := stateOf(conn); s != nil {
			if op == 0 {
				op = operationIndex(sql)
			}
			s.opName.Store(op)
			s.opStart.Store(time.Now().UnixNano())
		}
	}
	if t.querySpans {
		ctx = t.startQuerySpan(ctx, sql, op)
	}
	return ctx
}

func (t *telemetry) queryEnd(ctx context.Context, s *connState, err error) {
	if t == nil {
		return
	}
	if t.opDuration.Inst().Enabled(ctx) {
		if s != nil {
			if start := s.opStart.Swap(0); start != 0 {
				d := time.Duration(time.Now().UnixNano() - start).Seconds()
				op := s.opName.Load()
				if err == nil {
					t.opDuration.Inst().Record(ctx, d, t.opOpts[op])
				} else {
					t.recordFailedOp(ctx, d, op, err)
				}
			}
		}
	}
	if t.querySpans {
		if span, ok := ctx.Value(querySpanKey{}).(trace.Span); ok {
			if err != nil {
				et := errorType(err)
				span.SetAttributes(semconv.ErrorTypeKey.String(et))
				if len(et) == 5 {
					span.SetAttributes(semconv.DBResponseStatusCode(et))
				}
				span.SetStatus(codes.Error, et)
			}
			span.End()
		}
	}
}

func (t *telemetry) recordFailedOp(ctx context.Context, d float64, op uint32, err error) {
	et := errorType(err)
	kv := []attribute.KeyValue{semconv.DBClientConnectionPoolName(t.poolName), semconv.DBSystemNamePostgreSQL,
		semconv.ErrorTypeKey.String(et)}
	if op != 0 {
		kv = append(kv, semconv.DBOperationName(opNames[op]))
	}
	if len(et) == 5 { // a SQLSTATE
		kv = append(kv, semconv.DBResponseStatusCode(et))
	}
	t.opDuration.Inst().Record(ctx, d, metric.WithAttributes(kv...))
}

func (t *telemetry) startQuerySpan(ctx context.Context, sql string, op uint32) context.Context {
	if op == 0 {
		op = operationIndex(sql)
	}
	name := opNames[op]
	attrs := make([]attribute.KeyValue, 0, 6)
	attrs = append(attrs, semconv.DBSystemNamePostgreSQL)
	attrs = append(attrs, t.serverAttrs...)
	if name != "" {
		attrs = append(attrs, semconv.DBOperationName(name))
	} else {
		name = string(dbconv.SystemNamePostgreSQL)
	}
	if t.fingerprint && op != opBatch {
		fp, _ := pinning.Fingerprint(sql)
		attrs = append(attrs, semconv.DBQueryText(fp))
	}
	ctx, span := t.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	return context.WithValue(ctx, querySpanKey{}, span)
}
