// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

// pin_check=error: refusing a pinning statement before it is sent.

package rdsproxy

import (
	"context"
	"database/sql/driver"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/stdlib"
)

// pinningError is the refusal of one statement. Its text names the reasons,
// the remedies and the statement's fingerprint (no literal or parameter
// value).
type pinningError struct {
	event *PinEvent
}

func (e *pinningError) Error() string {
	var b strings.Builder
	b.WriteString(ErrPinning.Error())
	b.WriteString(" (reason ")
	b.WriteString(joinReasons(e.event.Reasons))
	b.WriteString("; ")
	b.WriteString(joinRemedies(e.event.Findings))
	b.WriteString("); statement: ")
	b.WriteString(e.event.Fingerprint)
	return b.String()
}

func (e *pinningError) Is(target error) bool { return target == ErrPinning }

// refusedContext is the context pin_check=error hands back to pgx from its
// tracer for a statement that must not run. pgx uses the context a tracer
// returns for the rest of the call, and pgconn checks Done before it writes
// anything: the statement fails at once, nothing reaches the server and the
// connection stays usable. The error pgx returns wraps Err, which is the
// refusal (so errors.Is(err, ErrPinning) holds).
type refusedContext struct {
	context.Context
	err error
}

// closedDone is the Done channel of every refusedContext.
var closedDone = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (c *refusedContext) Done() <-chan struct{}       { return closedDone }
func (c *refusedContext) Err() error                  { return c.err }
func (c *refusedContext) Deadline() (time.Time, bool) { return time.Time{}, false }

// refuse returns the context that makes pgx fail v's statement unsent.
func refuse(ctx context.Context, v *pinVerdict) context.Context {
	return &refusedContext{Context: ctx, err: &pinningError{event: &v.event}}
}

// refusingConn is the connection database/sql gets under pin_check=error.
// stdlib turns every error that pgx marks safe to retry, which includes a
// context done before sending, into driver.ErrBadConn, and database/sql
// then discards the connection and runs the statement again on others: a
// refusal by context would reach the caller as "bad connection", after
// three connections were closed. So under database/sql the statement is
// refused here, above stdlib, with the error itself. (sql.Conn).Raw yields
// this type rather than *stdlib.Conn under pin_check=error; its Conn method
// returns the *pgx.Conn as stdlib's does. Statements run on that *pgx.Conn
// directly are refused by the tracer.
type refusingConn struct {
	*stdConn
	pins *pinChecker
	tel  *telemetry // the pool's, for the pinning counter
}

// stdConn names *stdlib.Conn's embedded field apart from its Conn method,
// which refusingConn must keep.
type stdConn = stdlib.Conn

var (
	_ driver.ExecerContext      = (*refusingConn)(nil)
	_ driver.QueryerContext     = (*refusingConn)(nil)
	_ driver.ConnPrepareContext = (*refusingConn)(nil)
	_ driver.SessionResetter    = (*refusingConn)(nil)
	_ driver.NamedValueChecker  = (*refusingConn)(nil)
	_ driver.ConnBeginTx        = (*refusingConn)(nil)
	_ driver.Pinger             = (*refusingConn)(nil)
)

func (c *refusingConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	if v := c.pins.check(query, PinKindQuery, c.tel); v != nil {
		return nil, &pinningError{event: &v.event}
	}
	return c.stdConn.ExecContext(ctx, query, args)
}

func (c *refusingConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	if v := c.pins.check(query, PinKindQuery, c.tel); v != nil {
		return nil, &pinningError{event: &v.event}
	}
	return c.stdConn.QueryContext(ctx, query, args)
}

// PrepareContext refuses what database/sql would prepare: stdlib always
// prepares a named server-side statement, which pins by itself.
func (c *refusingConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	if v := c.pins.check(query, PinKindPrepare, c.tel); v != nil {
		return nil, &pinningError{event: &v.event}
	}
	return c.stdConn.PrepareContext(ctx, query)
}

func (c *refusingConn) Prepare(query string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), query)
}
