// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

package rdsproxy

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
)

// observePool registers the asynchronous instruments that read pool's
// statistics at collection time.
func (t *telemetry) observePool(pool *pgxpool.Pool) {
	t.pool = pool
	reg, err := t.meter.RegisterCallback(t.observe,
		t.count.Inst(), t.max.Inst(), t.idleMax.Inst(), t.idleMin.Inst(), t.retired, t.pinnedConns)
	if err != nil {
		otel.Handle(err)
		return
	}
	t.reg = reg
}

// observe reports the pool's state. Every physical connection the connector
// holds is either used or idle (connections being dialed are in neither):
//
//   - parked in the connector's pool: idle;
//   - checked out to database/sql and held by the application (a running
//     statement, open Rows, a *sql.Conn or a transaction): used;
//   - checked out to database/sql but idle in its free list: idle when the
//     *sql.DB is known (Open, ObserveDB), whose InUse count tells the two
//     apart; otherwise used, since a driver cannot see database/sql's list.
func (t *telemetry) observe(_ context.Context, o metric.Observer) error {
	st := t.pool.Stat()
	out := int64(st.AcquiredConns())
	used := out
	if db := t.db.Load(); db != nil {
		// The two counts are read one after the other: min keeps used+idle
		// equal to the connections held when a checkout falls between them.
		used = min(int64(db.Stats().InUse), out)
	}
	o.ObserveInt64(t.count.Inst(), used, t.usedOpt)
	o.ObserveInt64(t.count.Inst(), int64(st.IdleConns())+out-used, t.idleOpt)
	o.ObserveInt64(t.max.Inst(), t.maxConns, t.poolOpt)
	o.ObserveInt64(t.idleMax.Inst(), t.maxConns, t.poolOpt) // every connection may be parked idle
	o.ObserveInt64(t.idleMin.Inst(), 0, t.poolOpt)          // MinConns is 0: nothing is dialed in the background
	// The policy's own retirements, plus pgxpool's health check, which
	// retires connections parked in it without going through the policy.
	o.ObserveInt64(t.retired, t.retireCount[0].Load()+st.MaxLifetimeDestroyCount(), t.retireOpts[0])
	o.ObserveInt64(t.retired, t.retireCount[1].Load()+st.MaxIdleDestroyCount(), t.retireOpts[1])
	for i := 2; i < len(retireReasons); i++ {
		o.ObserveInt64(t.retired, t.retireCount[i].Load(), t.retireOpts[i])
	}
	if t.pinnedOpen != nil {
		o.ObserveInt64(t.pinnedConns, t.pinnedOpen(), t.poolOpt)
	}
	return nil
}

// observeDB makes the connection count tell connections the application
// holds from those idle in db's free list.
func (t *telemetry) observeDB(db *sql.DB) {
	if t != nil {
		t.db.Store(db)
	}
}

// errNotRdsproxyDB is ObserveDB's error for a *sql.DB of another driver.
var errNotRdsproxyDB = errors.New("rdsproxy: ObserveDB: the *sql.DB was not opened with rdsproxy " +
	"(rdsproxy.Open, sql.Open(\"rdsproxy\", dsn) or sql.OpenDB of an rdsproxy Connector)")

// ObserveDB makes the db.client.connection.count metric of db's connector
// exact under sql.Open("rdsproxy", dsn) or sql.OpenDB(connector): with it,
// state="used" counts only the connections the application holds (running a
// statement, open Rows, a *sql.Conn, a transaction) and the connections idle
// in database/sql's own free list count as state="idle". Without it they
// count as used, since a driver cannot see that list. [Open] does this
// itself. Call it once, right after opening db; it returns an error only if
// db is not on an rdsproxy connector.
func ObserveDB(db *sql.DB) error {
	if db == nil {
		return errNotRdsproxyDB
	}
	d, ok := db.Driver().(*Driver)
	if !ok || d.connector == nil {
		return errNotRdsproxyDB
	}
	d.connector.tel.observeDB(db)
	return nil
}

// close unregisters the pool callback, so a closed connector stops reporting.
func (t *telemetry) close() {
	if t != nil && t.reg != nil {
		if err := t.reg.Unregister(); err != nil {
			otel.Handle(err)
		}
	}
}

// onRetire counts a retirement decided by the pool policy.
func (t *telemetry) onRetire(reason retireReason) {
	if i := int(reason) - 1; i >= 0 && i < len(t.retireCount) {
		t.retireCount[i].Add(1)
	}
}

// checkoutStart is called when database/sql asks the connector for a
// connection. It returns the start time, or the zero time when no checkout
// instrument is enabled.
func (t *telemetry) checkoutStart(ctx context.Context) time.Time {
	if t == nil {
		return time.Time{}
	}
	waited := t.waitedAtCap.Enabled(ctx)
	if !waited && !t.waitTime.Inst().Enabled(ctx) && !t.timeouts.Inst().Enabled(ctx) {
		return time.Time{}
	}
	if waited && t.pool != nil {
		if st := t.pool.Stat(); st.IdleConns() == 0 && st.TotalConns() >= st.MaxConns() {
			t.waitedAtCap.Add(ctx, 1, t.poolOpt)
		}
	}
	return time.Now()
}

// checkoutEnd records the checkout's wait (db.client.connection.wait_time,
// which includes a dial when one was needed) or its timeout.
func (t *telemetry) checkoutEnd(ctx context.Context, start time.Time, err error) {
	if t == nil || start.IsZero() {
		return
	}
	if err == nil {
		t.waitTime.Inst().Record(ctx, time.Since(start).Seconds(), t.poolOpt)
		return
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrPoolWaitTimeout) {
		t.timeouts.Inst().Add(ctx, 1, t.poolOpt)
	}
}
