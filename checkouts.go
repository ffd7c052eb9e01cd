// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

package rdsproxy

import (
	"context"
	"database/sql/driver"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
)

const (
	// closeGracePeriod is how long Close lets connections still checked out
	// come back before closing them. database/sql calls Close (DB.Close) while
	// a statement, Rows, a *sql.Conn or a transaction may still hold a
	// connection, and a caller that finishes and releases it in that time must
	// not notice the close. A connection out for longer is taken as leaked
	// (Rows never closed, a *sql.Conn never closed, a transaction never ended):
	// waiting for it would hold its server session, the proxy's client
	// connection and a goroutine for the life of the process. 30 s is what a
	// service gets to finish in-flight work when it is stopped (Kubernetes'
	// default termination grace period), and a statement still running after
	// that is not going to be waited for anyway.
	closeGracePeriod = 30 * time.Second

	// closeSettlePeriod is how long Close waits, after closing the sockets of
	// the connections still out, for their holders to release them before it
	// releases them itself. A holder blocked on the socket gets an error at
	// once and releases its connection; releasing it from under a holder that
	// is still using it would race with that holder. It also bounds how long
	// Close waits for the pool when no connection is out (connector.go).
	closeSettlePeriod = time.Second
)

// checkouts tracks the connections the connector has handed to database/sql
// and not yet got back, so Close can close the ones an application leaked.
// Its zero value is ready to use.
type checkouts struct {
	n        atomic.Int64 // len(out), read without the lock on every release
	mu       sync.Mutex
	out      map[*pgx.Conn]*stdlib.Conn
	released chan struct{} // signalled (capacity 1) when an entry is removed
}

// trackingConnector records every connection its connector hands out.
type trackingConnector struct {
	driver.Connector
	out *checkouts
}

// track wraps std (stdlib's connector over the pool) so that every
// connection it hands out is recorded until pgxpool gets it back.
func (k *checkouts) track(std driver.Connector) driver.Connector {
	return &trackingConnector{Connector: std, out: k}
}

func (t *trackingConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := t.Connector.Connect(ctx)
	if sc, ok := conn.(*stdlib.Conn); ok && err == nil {
		t.out.add(sc)
	}
	return conn, err
}

func (k *checkouts) add(sc *stdlib.Conn) {
	k.mu.Lock()
	if k.out == nil {
		k.out = make(map[*pgx.Conn]*stdlib.Conn)
		k.released = make(chan struct{}, 1)
	}
	k.out[sc.Conn()] = sc
	k.n.Store(int64(len(k.out)))
	k.mu.Unlock()
}

// release forgets conn, which is back in pgxpool. A pool that never handed a
// connection to database/sql (NewPgxpoolConfig) pays one atomic load.
func (k *checkouts) release(conn *pgx.Conn) {
	if k.n.Load() == 0 {
		return
	}
	k.mu.Lock()
	if _, ok := k.out[conn]; ok {
		delete(k.out, conn)
		k.n.Store(int64(len(k.out)))
		select {
		case k.released <- struct{}{}:
		default:
		}
	}
	k.mu.Unlock()
}

// snapshot returns the connections still out.
func (k *checkouts) snapshot() []*stdlib.Conn {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make([]*stdlib.Conn, 0, len(k.out))
	for _, sc := range k.out {
		out = append(out, sc)
	}
	return out
}

// take removes and returns the connections still out.
func (k *checkouts) take() []*stdlib.Conn {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make([]*stdlib.Conn, 0, len(k.out))
	for _, sc := range k.out {
		out = append(out, sc)
	}
	clear(k.out)
	k.n.Store(0)
	return out
}

// waitReleased waits until no connection is out or d has passed.
func (k *checkouts) waitReleased(d time.Duration) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for k.n.Load() > 0 {
		select {
		case <-k.released:
		case <-timer.C:
			return
		}
	}
}

// TraceRelease is pgxpool's ReleaseTracer: a connection is back in the pool.
func (t *tracer) TraceRelease(_ *pgxpool.Pool, data pgxpool.TraceReleaseData) {
	t.out.release(data.Conn)
}

var _ pgxpool.ReleaseTracer = (*tracer)(nil)

// closePool closes the pool once every connection database/sql holds is
// back, or, for those still out after the grace period, by closing them. It
// runs in the background when Close finds connections out, and closes
// c.poolClosed when the pool is closed.
func (c *Connector) closePool() {
	defer close(c.poolClosed)
	done := make(chan struct{})
	go func() {
		c.pool.Close() // returns when every checked-out connection is back and destroyed
		close(done)
	}()
	timer := time.NewTimer(c.closeGraceOrDefault())
	defer timer.Stop()
	select {
	case <-done:
		return
	case <-timer.C:
	}
	c.closeLeaked()
	<-done
}

// closeLeaked closes the connections still checked out after the grace
// period. It first closes their sockets, which ends their server sessions
// and fails whatever a holder is still doing on them, so an active holder
// releases its connection itself; the rest are released here, which makes
// pgxpool destroy them (the pool is closed).
func (c *Connector) closeLeaked() {
	leaked := c.out.snapshot()
	if len(leaked) == 0 {
		return
	}
	logger := c.cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	logger.Warn("rdsproxy: closing connections still checked out after the connector was closed "+
		"(Rows, *sql.Conn or transactions never closed)",
		slog.Int("connections", len(leaked)), slog.Duration("grace_period", c.closeGraceOrDefault()),
		slog.String("pool", c.tel.poolName))
	for _, sc := range leaked {
		_ = sc.Conn().PgConn().Conn().Close() // a net.Conn may be closed from any goroutine
	}
	c.out.waitReleased(closeSettlePeriod)
	for _, sc := range c.out.take() {
		_ = sc.Close() // releases it to the closed pool, which destroys it
	}
}

// closeGraceOrDefault is closeGracePeriod, unless a test set another.
func (c *Connector) closeGraceOrDefault() time.Duration {
	if c.closeGrace == 0 {
		return closeGracePeriod
	}
	return c.closeGrace
}
