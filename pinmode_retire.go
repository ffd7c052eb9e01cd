// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

// pin_check=retire: retiring the connection that ran a pinning statement,
// within the churn guard's limits.
//
// The connection is marked before the statement is sent, and closed at the
// earliest point the library can tell nobody holds it: under pgxpool
// (NewPgxpoolConfig) its release, through AfterRelease. Under database/sql
// the driver is not told when database/sql takes a connection back (pgx's
// *stdlib.Conn, handed out unwrapped, has no driver.Validator), so it is its
// next checkout: stdlib's ShouldPing and ResetSession hooks find the mark and
// database/sql discards the connection and takes another, before anything
// runs on it. If database/sql closes it first (its idle limit, a full free
// list, DB.Close), pgxpool's release destroys it. The holder (*sql.Conn,
// Tx, pgxpool.Conn) keeps the connection, and its session state, until then.

package rdsproxy

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Limits of pin_check=retire's churn guard. Retiring a connection costs a
// reconnect (a TLS handshake and a proxy login) at its next checkout; that
// is worth it for a statement a few requests run, not for one that runs on
// every connection, whose replacement pins again at once.
const (
	// pinChurnStreak: a statement that pinned this many connections in a
	// row, each before its first reuse, runs on every connection (a connect
	// hook, or the start of every request). Its connections are kept from
	// then on, as under warn, and one warning names its fingerprint. A
	// statement one request in ten runs does this once in 10^8 streaks.
	pinChurnStreak = 8

	// pinRetireCeiling retirements per pinRetireWindow at most, per
	// connector: ten reconnects a second keeps a fleet of a few dozen
	// instances under the ~200 new IAM connections a second AWS advises per
	// database. Past it, pinning connections are kept for the rest of the
	// window (and one warning says so); the ones already marked still go.
	pinRetireCeiling = 600
	pinRetireWindow  = time.Minute
)

// churnGuard decides, for pin_check=retire, whether a connection that just
// pinned is retired. Safe for concurrent use.
type churnGuard struct {
	logger *slog.Logger // nil: slog.Default()
	now    func() time.Time

	mu          sync.Mutex
	windowStart time.Time
	retired     int                 // retirements in the current window
	streak      map[uint64]int      // per fingerprint hash: first-use pins in a row
	churning    map[uint64]struct{} // statements that run on every connection
	warnedCeil  bool
}

func newChurnGuard(logger *slog.Logger) *churnGuard {
	return &churnGuard{logger: logger, now: time.Now, streak: make(map[uint64]int), churning: make(map[uint64]struct{})}
}

// allow reports whether the connection v's statement just pinned is to be
// retired. firstUse says the connection had not been reused yet.
func (g *churnGuard) allow(v *pinVerdict, firstUse bool) bool {
	h := v.key.hash
	g.mu.Lock()
	if _, ok := g.churning[h]; ok {
		g.mu.Unlock()
		return false
	}
	if firstUse {
		g.streak[h]++
	} else {
		delete(g.streak, h)
	}
	if g.streak[h] >= pinChurnStreak {
		delete(g.streak, h)
		if len(g.churning) < maxPinReported {
			g.churning[h] = struct{}{}
		}
		g.mu.Unlock()
		g.warn("rdsproxy: pin_check=retire keeps connections pinned by a statement that runs on every connection: "+
			"retiring them would only reconnect at every checkout. Move its session state to startup parameters "+
			"or the proxy's InitQuery", v)
		return false
	}
	if now := g.now(); now.Sub(g.windowStart) >= pinRetireWindow {
		g.windowStart, g.retired = now, 0
	}
	if g.retired >= pinRetireCeiling {
		warn := !g.warnedCeil
		g.warnedCeil = true
		g.mu.Unlock()
		if warn {
			g.warn("rdsproxy: pin_check=retire reached its ceiling of retirements a minute; "+
				"connections that pin are kept until the minute is over", v)
		}
		return false
	}
	g.retired++
	if len(g.streak) > maxPinReported {
		clear(g.streak)
	}
	g.mu.Unlock()
	return true
}

func (g *churnGuard) warn(msg string, v *pinVerdict) {
	logger := g.logger
	if logger == nil {
		logger = slog.Default()
	}
	logger.LogAttrs(context.Background(), slog.LevelWarn, msg,
		slog.String("reason", joinReasons(v.event.Reasons)),
		slog.String("fingerprint", v.event.Fingerprint),
		slog.String("fingerprint_hash", v.event.FingerprintHash))
}

// onPinned acts on a statement that pins, run on conn, according to mode:
// it records that the connection is pinned (the pinned gauge) and, under
// retire, retires it. It runs before the statement is sent.
func (p *poolPolicy) onPinned(conn *pgx.Conn, v *pinVerdict) {
	s := stateOf(conn)
	if s == nil {
		return
	}
	old := s.flags.Or(flagPinned)
	if old&flagPinned == 0 {
		p.pinnedOpen.Add(1)
	}
	if p.churn == nil || old&flagPinned != 0 || retireReason(s.retire.Load()) != notRetired {
		return
	}
	if p.churn.allow(v, old&flagReused == 0) {
		p.markRetired(conn, retirePinned)
	}
}

// noteCheckout records a checkout of the connection with state s, telling
// its first checkout from a reuse (the churn guard's firstUse).
func noteCheckout(s *connState) {
	if f := s.flags.Load(); f&flagCheckedOut == 0 {
		s.flags.Or(flagCheckedOut) // pgxpool asks about new connections too: the first checkout
	} else if f&flagReused == 0 {
		s.flags.Or(flagReused)
	}
}

// configureContainment installs on NewPgxpoolConfig's pool what
// pin_check=retire and session_audit=on need, and nothing else: pgxpool
// keeps enforcing its own limits there. Per-connection state from connect
// (and the audit's baseline); the checkout noted; a retired connection or
// one the audit finds state on is not handed out (PrepareConn) and is
// destroyed at its release (AfterRelease), the earliest point pgxpool
// offers.
func (p *poolPolicy) configureContainment(pc *pgxpool.Config) {
	pc.AfterConnect = p.connected
	pc.ShouldPing = func(_ context.Context, sp pgxpool.ShouldPingParams) bool {
		if s := stateOf(sp.Conn); s != nil {
			noteCheckout(s)
		}
		return sp.IdleDuration > pingAfterIdle // pgxpool's own rule
	}
	pc.PrepareConn = func(ctx context.Context, conn *pgx.Conn) (bool, error) {
		if s := stateOf(conn); s != nil && retireReason(s.retire.Load()) != notRetired {
			return false, nil
		}
		if p.audit != nil && !p.audit.clean(ctx, conn, p) {
			return false, nil
		}
		return true, nil
	}
	pc.AfterRelease = func(conn *pgx.Conn) bool {
		s := stateOf(conn)
		return s == nil || retireReason(s.retire.Load()) == notRetired
	}
	pc.BeforeClose = func(conn *pgx.Conn) {
		if s := stateOf(conn); s != nil {
			p.untrack(s)
		}
	}
}
