// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

package rdsproxy

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
)

// errRetire makes database/sql discard a connection that the pool policy
// retired and transparently try another one.
var errRetire = driver.ErrBadConn

// errHandBack makes database/sql release a healthy connection (back to
// pgxpool, for a waiting caller) and transparently try another one. Nothing
// was sent on it, so the retry is safe.
var errHandBack = driver.ErrBadConn

// Connector is a [driver.Connector] for [database/sql.OpenDB]. It owns a pool
// of physical connections (a pgxpool.Pool) and hands database/sql pgx's own
// *stdlib.Conn, unwrapped: (*sql.Conn).Raw yields *stdlib.Conn, CopyFrom and
// notifications work, and every optional driver interface pgx implements is
// there. Close it (or the *sql.DB that owns it) to close its connections.
type Connector struct {
	cfg    *Config
	pool   *pgxpool.Pool
	std    driver.Connector // stdlib's connector over pool
	policy *poolPolicy
	// waiting counts callers inside Connect, for the fairness rule in pool.go.
	waiting atomic.Int64
	// overflow dials a connection outside the pool for a caller stuck at the
	// cap (overflow.go). nil under Open, where database/sql queues callers.
	overflow     driver.Connector
	maxWait      time.Duration // maxWaitAtCap; tests shorten it
	warnOverflow sync.Once
	iam          *iamState   // nil unless iam=true
	pins         *pinChecker // nil under pin_check=off without session_audit
	tel          *telemetry  // OpenTelemetry instruments (telemetry.go)
	closed       atomic.Bool

	// out tracks connections handed to database/sql until pgxpool gets them
	// back, so Close can close leaked ones (checkouts.go).
	out *checkouts
	// closeGrace replaces closeGracePeriod when non-zero (tests).
	closeGrace time.Duration
	// poolClosed is closed once Close has closed the pool, which happens in
	// the background when connections are still out.
	poolClosed chan struct{}
}

// Compile-time checks of the interfaces database/sql looks for.
var (
	_ driver.Connector = (*Connector)(nil)
	_ io.Closer        = (*Connector)(nil) // database/sql calls it from DB.Close
)

// NewConnector parses dsn, applies opts and returns a connector, without
// dialing: nothing touches the network or AWS until the first checkout.
//
// Use it with sql.OpenDB. The connector caps at the configured MaxConns,
// default or not. database/sql keeps up to 2 idle connections the driver
// cannot reclaim, so under sql.OpenDB (or plain sql.Open) without
// db.SetMaxOpenConns a caller stranded behind them at the cap is served by
// a connection opened past the cap (at most 2, each retired at its first
// reuse, the first one logged), and a wait at the cap is bounded (see
// [ErrPoolWaitTimeout]). [Open] sets database/sql's own limits, which queue
// callers at the cap instead.
func NewConnector(dsn string, opts ...Option) (*Connector, error) {
	cfg, err := ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	return newConnector(cfg, opts, false)
}

// NewConnectorConfig is NewConnector for a Config from [ParseConfig], which it
// does not modify. Fields the caller set on the Config are validated like
// the same values given in the DSN or as options; an error names the DSN key.
func NewConnectorConfig(cfg *Config, opts ...Option) (*Connector, error) {
	if cfg == nil || cfg.ConnConfig == nil {
		return nil, &ConfigError{Key: "Config", Value: "nil", Accepted: "a Config returned by ParseConfig"}
	}
	c := *cfg
	c.ConnConfig = cfg.ConnConfig.Copy()
	return newConnector(&c, opts, false)
}

// newConnector builds the connector of a Config that opts are yet to be
// applied to. knobsSetByOpen says Open sets database/sql's limits, so that
// database/sql queues callers at the cap and no overflow is needed.
func newConnector(cfg *Config, opts []Option, knobsSetByOpen bool) (*Connector, error) {
	if err := cfg.apply(opts); err != nil {
		return nil, err
	}
	if err := cfg.checkOneEndpoint(); err != nil {
		return nil, err
	}
	parts, err := buildPool(cfg, true)
	if err != nil {
		return nil, err
	}
	c := &Connector{cfg: cfg, policy: parts.policy, tel: parts.tel, pins: parts.pins, iam: parts.iam, out: parts.out}
	c.policy.contended = c.contended
	pool, err := pgxpool.NewWithConfig(context.Background(), parts.pc)
	if err != nil {
		return nil, err
	}
	c.pool = pool
	c.tel.pinnedOpen = c.policy.pinnedOpen.Load
	c.tel.observePool(pool)
	c.std = c.out.track(stdlib.GetPoolConnector(pool, c.policy.stdlibOptions()...))
	if !knobsSetByOpen {
		c.overflow = c.overflowConnector(parts.pc)
		c.maxWait = maxWaitAtCap
	}
	return c, nil
}

// overflowConnector dials single connections with the pool's hooks (token,
// telemetry, tracer, pool policy) and no pool: closing one closes it.
func (c *Connector) overflowConnector(pc *pgxpool.Config) driver.Connector {
	cc := pc.ConnConfig.Copy()
	dial := cc.DialFunc
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	cc.DialFunc = c.policy.overflowDial(dial)
	opts := append([]stdlib.OptionOpenDB{
		stdlib.OptionAfterConnect(func(ctx context.Context, conn *pgx.Conn) error {
			if err := c.policy.connected(ctx, conn); err != nil {
				_ = conn.Close(ctx) // stdlib's pool-less connector leaves it open
				return err
			}
			return nil
		}),
	}, c.policy.stdlibOptions()...)
	if pc.BeforeConnect != nil {
		opts = append(opts, stdlib.OptionBeforeConnect(pc.BeforeConnect))
	}
	return stdlib.GetConnector(*cc, opts...)
}

// Connect hands database/sql a connection from the pool, dialing a new one if
// none is idle and the cap allows; at the cap it waits under ctx. Under plain
// sql.Open or sql.OpenDB the wait is bounded and a caller stranded behind
// connections database/sql keeps idle is served by an overflow connection
// (overflow.go).
func (c *Connector) Connect(ctx context.Context) (driver.Conn, error) {
	if c.closed.Load() {
		return nil, ErrClosed
	}
	var conn driver.Conn
	var err error
	start := c.tel.checkoutStart(ctx)
	if c.overflow == nil {
		c.waiting.Add(1)
		conn, err = c.checkout(ctx, c.std)
		c.waiting.Add(-1)
	} else {
		conn, err = c.connectBounded(ctx)
	}
	c.tel.checkoutEnd(ctx, start, err)
	if err != nil {
		if c.closed.Load() {
			return nil, ErrClosed
		}
		return nil, classifyError(err) // the proxy's borrow timeout matches ErrBorrowTimeout
	}
	if sc, ok := conn.(*stdlib.Conn); ok && c.cfg.PinCheck == PinCheckError {
		return &refusingConn{stdConn: sc, pins: c.pins, tel: c.tel}, nil
	}
	return conn, nil
}

// checkout takes a connection through std: the pool, or an overflow dial.
func (c *Connector) checkout(ctx context.Context, std driver.Connector) (driver.Conn, error) {
	if c.iam != nil {
		return c.connectIAM(ctx, std)
	}
	return std.Connect(ctx)
}

// Why a bounded wait at the cap stopped; cancellation causes, never returned.
var (
	errServeOverflow = errors.New("rdsproxy: serve from an overflow connection")
	errWaitedAtCap   = errors.New("rdsproxy: waited the longest allowed at the cap")
)

// connectBounded is Connect under plain sql.Open: it waits in the pool like
// Connect under Open, but at most c.maxWait, and a caller stranded at the
// cap (see overflow.go) gets an overflow connection.
func (c *Connector) connectBounded(ctx context.Context) (driver.Conn, error) {
	w := &capWait{c: c, start: time.Now()}
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	w.cancel = cancel
	w.mu.Lock()
	w.timer = time.AfterFunc(overflowAfter, w.check)
	w.mu.Unlock()

	c.waiting.Add(1)
	conn, err := c.checkout(actx, c.std)
	c.waiting.Add(-1)

	w.mu.Lock()
	w.done = true
	w.timer.Stop()
	reserved := w.reserved
	w.mu.Unlock()
	if err == nil || ctx.Err() != nil {
		if reserved {
			c.policy.overflowDialed(false)
		}
		if err != nil {
			// The caller's context ended, perhaps as the timer cancelled the
			// wait: report the caller's reason, not the timer's.
			return nil, ctx.Err()
		}
		return conn, nil
	}
	switch context.Cause(actx) {
	case errServeOverflow:
		return c.dialOverflow(ctx, w.start)
	case errWaitedAtCap:
		return nil, fmt.Errorf("%w (waited %s; pool_max_conns=%d, %d connections at work, %d open past the cap)",
			ErrPoolWaitTimeout, time.Since(w.start).Round(time.Millisecond), c.cfg.MaxConns,
			c.policy.atWork(), c.policy.registry.overflowOpen.Load())
	case ErrClosed:
		return nil, ErrClosed
	}
	return nil, err
}

// dialOverflow opens an overflow connection for a caller whose reservation
// was granted, under ctx but no later than c.maxWait after start.
func (c *Connector) dialOverflow(ctx context.Context, start time.Time) (driver.Conn, error) {
	// A context of its own (unique, as the telemetry's dial record needs).
	dctx, cancel := context.WithDeadline(ctx, start.Add(c.maxWait))
	defer cancel()
	conn, err := c.checkout(dctx, c.overflow)
	c.policy.overflowDialed(err == nil)
	if err != nil {
		return nil, err
	}
	c.warnOverflow.Do(func() {
		logger := c.cfg.Logger
		if logger == nil {
			logger = slog.Default()
		}
		logger.Warn("rdsproxy: a caller waited at the connection cap while connections sat idle in database/sql, "+
			"out of the driver's reach; it was served by a connection opened past the cap. Under sql.Open the "+
			"driver cannot reclaim database/sql's idle connections: open the database with rdsproxy.Open, or call "+
			"db.SetMaxOpenConns with the cap", "pool_max_conns", c.cfg.MaxConns)
	})
	return conn, nil
}

// capWait is one bounded wait at the cap. Its timer looks, every
// overflowAfter, whether the caller should stop waiting in the pool: to be
// served by an overflow connection, or with ErrPoolWaitTimeout.
type capWait struct {
	c      *Connector
	start  time.Time
	cancel context.CancelCauseFunc

	mu       sync.Mutex
	timer    *time.Timer
	done     bool          // the wait in the pool returned
	reserved bool          // an overflow slot was reserved for this caller
	atCap    time.Duration // of the wait, the time every connection was checked out (counted per check)
}

func (w *capWait) check() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return
	}
	c := w.c
	// Only time at the cap counts towards the bound: a wait for a slow dial
	// (a proxy holding a new connection for its borrow timeout) is below the
	// cap, and ends with the dial's own result.
	atCap := c.pool.Stat().AcquiredConns() >= c.cfg.MaxConns
	if atCap {
		w.atCap += overflowAfter
	}
	switch {
	case c.closed.Load():
		w.cancel(ErrClosed)
		return
	case atCap && c.policy.reserveOverflow(c.cfg.MaxConns):
		w.reserved = true
		w.cancel(errServeOverflow)
		return
	case w.atCap >= c.maxWait:
		w.cancel(errWaitedAtCap)
		return
	}
	w.timer.Reset(overflowAfter)
}

// contended reports whether a caller waits in Connect while every connection
// is checked out. Stat takes pgxpool's lock, so it is read only when someone
// is in Connect at all.
func (c *Connector) contended() bool {
	return c.waiting.Load() > 0 && c.pool.Stat().AcquiredConns() >= c.cfg.MaxConns
}

// Driver returns the rdsproxy driver. It knows c, so that [ObserveDB] finds
// the connector of a *sql.DB (through DB.Driver).
func (c *Connector) Driver() driver.Driver { return &Driver{connector: c} }

// Config returns a copy of the connector's effective configuration.
func (c *Connector) Config() *Config {
	cp := *c.cfg
	cp.ConnConfig = c.cfg.ConnConfig.Copy()
	return &cp
}

// Close closes every connection of the connector and stops its background
// health check. database/sql calls it from DB.Close. It is safe to call twice.
//
// Connections still checked out (a running statement, Rows, a *sql.Conn or a
// transaction) keep working until they are released: Close returns at once
// and the pool finishes closing with the last release. A pooled connection
// still out 30 seconds after Close is taken as leaked and closed, and a
// warning with the count goes to the configured logger. (An overflow
// connection, opened past the cap under plain sql.Open, is not pooled: it
// closes when database/sql releases it.)
func (c *Connector) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	// pgxpool.Close waits until every checked-out connection is back. database/sql
	// calls Close while a *sql.Conn, Tx or Rows may still hold one, and code like
	// "conn := db.Conn(); db.Close(); conn.Close()" must not hang: database/sql
	// itself closes such connections when they are released. So when some are
	// still out, the pool closes in the background (closePool). When none is
	// out, Close waits for it, so the server sessions are gone when it
	// returns; but only for closeSettlePeriod, since a Connect that passed
	// its closed check just before may still take a connection and hold it.
	c.poolClosed = make(chan struct{})
	go c.closePool()
	if c.pool.Stat().AcquiredConns() == 0 {
		select {
		case <-c.poolClosed:
		case <-time.After(closeSettlePeriod):
		}
	}
	c.tel.close()
	if c.pins != nil {
		c.pins.flush()
	}
	return nil
}
