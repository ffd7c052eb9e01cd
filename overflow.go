// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

package rdsproxy

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Serving callers stranded at the cap under plain sql.Open.
//
// Under sql.Open or sql.OpenDB without db.SetMaxOpenConns, database/sql does
// not queue callers: each one without an idle connection of its own calls
// Connector.Connect, which waits in pgxpool at the cap. database/sql keeps up
// to 2 released connections idle in its own free list (defaultMaxIdleConns),
// tells the driver nothing when it does (pgx's *stdlib.Conn has no
// driver.Validator), and hands them only to callers that come later, never to
// one already waiting in Connect. The hand-back rule in pool.go returns such
// a connection to pgxpool at its next reuse. Until then the waiters share
// what is left of the cap; when nobody reuses it (the end of a burst, or a
// cap of 1 or 2 wholly idle there), a waiter would wait forever.
//
// The driver cannot take a connection back from database/sql's free list: it
// cannot tell one idle there from one an application holds in a *sql.Conn
// between statements, and one physical connection must never have two
// holders. So the stranded caller gets a connection of its own instead:
//
//   - A caller that has waited overflowAfter at the cap, while fewer than cap
//     connections are at work (running a statement pgx traces, inside a
//     transaction, or answered within overflowAfter), gets an overflow
//     connection: dialed outside pgxpool with the same hooks (IAM token and
//     its retry, telemetry, tracer and pinning check, pool policy). So an
//     overflow connection never takes the count at work past the cap when it
//     is opened. The count can pass it afterwards only when a quiet
//     connection comes back to work while overflow connections still run a
//     statement: an application resuming a *sql.Conn it held, or a stranded
//     connection reused and handed back; by at most maxOverflowConns, until
//     those statements end. At most maxOverflowConns are open at once: the
//     total never exceeds the cap plus database/sql's idle ones.
//   - An overflow connection is retired at its first reuse (retirement reason
//     "overflow"), or closed by database/sql at release if its free list is
//     full; it never enters pgxpool.
//   - The first overflow logs one warning naming the fix: rdsproxy.Open, or
//     db.SetMaxOpenConns(cap), under which database/sql queues callers itself
//     and none of this comes into play (Open does not even arm it).
//   - A caller that has waited maxWaitAtCap in the connector without being
//     served (every connection at work, or maxOverflowConns already open)
//     gets ErrPoolWaitTimeout, whatever its context: under plain sql.Open no
//     wait in the connector is unbounded. A failed overflow dial returns its
//     error at once, as a failed pooled dial would.
//
// The rest of the program keeps moving: only a caller stranded behind idle
// connections waits overflowAfter, and the overflow connection's next reuse
// reaches the stranded connection behind it in database/sql's free list,
// which the hand-back rule then gives to the next waiter.
const (
	// overflowAfter is how long a caller waits at the cap before an overflow
	// connection is considered, and how long a connection must have been
	// quiet to count as possibly stranded. The hand-back rule serves a waiter
	// within one statement of another caller, typically a millisecond or
	// two; a tenth of a second is long past that and still short for the one
	// caller at the end of a burst that pays it.
	overflowAfter = 100 * time.Millisecond

	// maxOverflowConns caps overflow connections open at once: database/sql
	// strands at most 2 (its default idle count), and one overflow per
	// stranded connection keeps every waiter moving.
	maxOverflowConns = 2

	// maxWaitAtCap bounds a wait in the connector at the cap under plain
	// sql.Open, whatever the caller's context. Half a minute is longer than
	// any wait for a connection a request path survives (API Gateway gives up
	// after 29 s), and short enough that a program that forgot
	// SetMaxOpenConns gets an error naming it rather than a hang.
	maxWaitAtCap = 30 * time.Second
)

// connRegistry knows every open connection of a connector, pooled or
// overflow, so that a stuck caller can count those at work. It is touched
// when a connection opens or closes, and read only by a caller that has
// waited overflowAfter at the cap.
type connRegistry struct {
	mu    sync.Mutex
	conns map[*connState]struct{}

	overflowOpen    atomic.Int32 // overflow connections open or being dialed
	overflowDialing atomic.Int32 // of which being dialed: counted as at work
	overflowDials   atomic.Int64 // overflow connections opened, ever
	reserveMu       sync.Mutex   // makes a reservation's check and count one step
}

// track records a newly opened connection. An overflow connection (dialed
// through overflowDial) is marked as such and remembered by its socket, whose
// Close releases its overflow slot.
func (p *poolPolicy) track(conn *pgx.Conn, s *connState) {
	if oc := overflowSocket(conn); oc != nil {
		s.flags.Or(flagOverflow)
		oc.adopt(s)
	}
	r := &p.registry
	r.mu.Lock()
	if r.conns == nil {
		r.conns = make(map[*connState]struct{})
	}
	r.conns[s] = struct{}{}
	r.mu.Unlock()
}

// untrack forgets a closed connection.
func (p *poolPolicy) untrack(s *connState) {
	if s.flags.Load()&flagPinned != 0 {
		p.pinnedOpen.Add(-1)
	}
	r := &p.registry
	r.mu.Lock()
	delete(r.conns, s)
	r.mu.Unlock()
}

// atWork counts open connections that are running a statement, inside a
// transaction, or answered within overflowAfter (about to be reused, or just
// handed out), plus overflow connections being dialed.
func (p *poolPolicy) atWork() int {
	now := p.clock().mono
	r := &p.registry
	n := int(r.overflowDialing.Load())
	r.mu.Lock()
	for s := range r.conns {
		if s.active.Load() || now-s.lastAnswer.Load() < int64(overflowAfter) {
			n++
		}
	}
	r.mu.Unlock()
	return n
}

// reserveOverflow takes an overflow slot if the rule above allows one for a
// pool capped at maxConns. The caller must call overflowDialed after its
// dial.
func (p *poolPolicy) reserveOverflow(maxConns int32) bool {
	r := &p.registry
	r.reserveMu.Lock()
	defer r.reserveMu.Unlock()
	if r.overflowOpen.Load() >= maxOverflowConns || p.atWork() >= int(maxConns) {
		return false
	}
	r.overflowOpen.Add(1)
	r.overflowDialing.Add(1)
	return true
}

// overflowDialed ends a reservation's dial. A failed dial gives its slot
// back; a connection keeps it until it is closed.
func (p *poolPolicy) overflowDialed(ok bool) {
	p.registry.overflowDialing.Add(-1)
	if ok {
		p.registry.overflowDials.Add(1)
	} else {
		p.registry.overflowOpen.Add(-1)
	}
}

// overflowDial wraps a dial function so that the sockets it opens mark their
// connection as an overflow one (see track) and release its slot when closed.
// It wraps the raw socket, under TLS, so pgconn still sees a *tls.Conn (SCRAM
// channel binding) and the liveness probe still reaches the socket.
func (p *poolPolicy) overflowDial(dial pgconn.DialFunc) pgconn.DialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		nc, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &overflowNetConn{Conn: nc, policy: p}, nil
	}
}

// overflowNetConn is the socket of an overflow connection. Sockets of failed
// connection attempts are never adopted and release nothing.
type overflowNetConn struct {
	net.Conn
	policy *poolPolicy
	state  atomic.Pointer[connState] // set by track once the connection is up
	closed atomic.Bool
}

func (c *overflowNetConn) adopt(s *connState) { c.state.Store(s) }

// connected is the AfterConnect hook of every connection, pooled or
// overflow: the policy's per-connection state, then the session audit's
// baseline. When the baseline fails the connect fails, and the connection is
// forgotten here, before it is closed: pgxpool calls BeforeClose only for
// connections it finished creating, and the overflow connect gives its slot
// back itself (overflowDialed).
func (p *poolPolicy) connected(ctx context.Context, conn *pgx.Conn) error {
	p.afterConnect(conn)
	err := p.baseline(ctx, conn)
	if err != nil {
		if s := stateOf(conn); s != nil {
			if oc := overflowSocket(conn); oc != nil {
				oc.state.Store(nil) // its Close must not count the slot again
			}
			p.untrack(s)
		}
	}
	return err
}

// overflowSocket is conn's overflow socket, or nil for a pooled connection.
func overflowSocket(conn *pgx.Conn) *overflowNetConn {
	nc := conn.PgConn().Conn()
	if u, ok := nc.(interface{ NetConn() net.Conn }); ok { // TLS
		nc = u.NetConn()
	}
	oc, _ := nc.(*overflowNetConn)
	return oc
}

func (c *overflowNetConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		if s := c.state.Load(); s != nil {
			c.policy.untrack(s)
			c.policy.registry.overflowOpen.Add(-1)
		}
	}
	return c.Conn.Close()
}

// SyscallConn lets the liveness probe (internal/conncheck) reach the socket.
func (c *overflowNetConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, syscall.EINVAL
}
