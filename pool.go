// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

package rdsproxy

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/rdsproxy/rdsproxy/internal/conncheck"
)

// Pool defaults, tuned for a client of RDS Proxy. Each can be overridden by the
// DSN key named in its [Config] field or by an [Option].
const (
	// DefaultMaxConns caps physical connections per connector outside Lambda.
	// Behind RDS Proxy a client connection is cheap for the proxy but every
	// in-flight statement holds a database connection; a service instance
	// rarely needs more than a handful at once, and an autoscaled fleet
	// multiplies whatever is set here.
	DefaultMaxConns = 5

	// DefaultLambdaMaxConns is the cap inside AWS Lambda, where an execution
	// environment handles one invocation at a time: one connection for the
	// work plus one spare for a concurrent query or transaction.
	DefaultLambdaMaxConns = 2

	// DefaultMaxConnLifetime retires connections after 30 minutes (plus
	// jitter). It is not about IAM tokens, which are checked only when a
	// connection is established: it rebalances clients across proxy capacity
	// after scaling or failover, picks up DNS changes, bounds the effect of
	// revoked credentials, and stays far below the proxy's fixed 24h limit.
	DefaultMaxConnLifetime = 30 * time.Minute

	// DefaultMaxConnLifetimeJitter spreads retirements over 5 minutes so a
	// fleet started together does not reconnect (and sign tokens) together.
	DefaultMaxConnLifetimeJitter = 5 * time.Minute

	// DefaultMaxConnIdleTime retires connections idle for 5 minutes, well
	// below RDS Proxy's default IdleClientTimeout of 1800 s, so the client
	// closes idle connections before the proxy drops them under it.
	DefaultMaxConnIdleTime = 5 * time.Minute

	// DefaultLambdaMaxConnIdleTime is shorter: a frozen Lambda environment
	// holds its connections while the proxy's idle clock runs, so after a thaw
	// a connection idle this long is replaced rather than trusted.
	DefaultLambdaMaxConnIdleTime = time.Minute

	// DefaultHealthCheckPeriod is how often connections parked in the pool are
	// checked for lifetime and idle time (pgxpool's own default).
	DefaultHealthCheckPeriod = time.Minute

	// probeAfterIdle: a connection reused less than this long after its last
	// statement ended (its last answer from the server) is not probed. The server's reply proved it alive that
	// recently, and a close inside such a window is as likely as one while
	// the next statement is in flight, which no check before sending can
	// catch. Idle connections, the ones proxies drop (RDS Proxy's
	// IdleClientTimeout is at least a minute) and Lambda freezes outlive, are
	// always probed. The probe is one system call; on a loopback query in
	// BenchmarkQueryPaired, skipping it for hot reuse saved about 1-2% of the query.
	probeAfterIdle = time.Millisecond

	// pingAfterIdle: a connection reused after this much idle time gets a
	// ping (one round trip) besides the socket probe, to catch half-open TCP
	// connections that show nothing on the socket. pgx's own threshold.
	pingAfterIdle = time.Second

	// proxyClientMaxLife is RDS Proxy's fixed maximum client connection life.
	proxyClientMaxLife = 24 * time.Hour
)

// Reasons a connection is retired; also the values of the retirement metric's
// reason attribute.
//
// An integer rather than a string so the checkout path reads one word.
type retireReason uint32

const (
	notRetired retireReason = iota
	retireLifetime
	retireIdle
	retireBroken
	retireSibling  // open before a sibling died at the server's hand (poolPolicy.deaths)
	retireOverflow // an overflow connection opened past the cap (overflow.go), at its first reuse
	retirePinned   // ran a statement that pins the proxy session, under pin_check=retire (pinmode_retire.go)
	retireAudit    // the session audit found state left on the backend (audit.go)
)

// retireReasons lists every reason in the order of their values, from 1:
// telemetry indexes its counters by reason-1.
var retireReasons = [...]retireReason{retireLifetime, retireIdle, retireBroken, retireSibling, retireOverflow, retirePinned, retireAudit}

func (r retireReason) String() string {
	switch r {
	case retireLifetime:
		return "lifetime"
	case retireIdle:
		return "idle"
	case retireBroken:
		return "broken"
	case retireSibling:
		return "sibling"
	case retireOverflow:
		return "overflow"
	case retirePinned:
		return "pinned"
	case retireAudit:
		return "audit"
	}
	return ""
}

// connState is rdsproxy's bookkeeping for one physical connection, stored in
// pgconn's CustomData so a lookup costs one map access and no allocation.
//
// Every field is read or written on each checkout or statement, so the
// struct is kept to 64 bytes (one cache line): the per-query cost measured in
// BenchmarkQueryPaired is mostly memory touched, not instructions. The two
// telemetry fields (opStart, opName) live here for the same reason: a
// separate per-connection record for telemetry measured no faster and about
// one point slower with an OpenTelemetry SDK installed.
type connState struct {
	deadline   int64        // monotonic stamp: created + MaxConnLifetime + this connection's jitter
	lastUsed   atomic.Int64 // wall clock (Unix ns) of the connect, the last checkout or statement end: idle retirement
	lastAnswer atomic.Int64 // monotonic stamp of the connect or the last statement's end: the probe window
	prober     *conncheck.Prober
	opStart    atomic.Int64  // unix nanos the running statement started, 0 if untimed (telemetry_query.go)
	deathsSeen atomic.Uint64 // poolPolicy.deaths when this connection was opened
	opName     atomic.Uint32 // its index in opNames
	retire     atomic.Uint32 // a retireReason, set (once) when the connection must go
	flags      atomic.Uint32 // the flag* bits below
	active     atomic.Bool   // running a statement or inside a transaction (overflow.go)
}

// connState.flags bits.
const (
	flagHandBack   uint32 = 1 << iota // give this connection to a waiting caller instead of reusing it (fairness)
	flagDead                          // its death was counted in poolPolicy.deaths (once per connection)
	flagOverflow                      // opened past the cap for a stuck caller (overflow.go); retired at its first reuse
	flagPinned                        // ran a statement that pins the proxy session (the pinned gauge, pinmode_retire.go)
	flagCheckedOut                    // handed out once
	flagReused                        // handed out again since (pinmode_retire.go's churn guard)
)

const customDataKey = "rdsproxy.conn"

// clockBase anchors the pool policy's monotonic stamps: nanoseconds since
// clockBase on the monotonic clock.
//
// Two clocks, on purpose. The probe window and the lifetime use the monotonic
// clock: a wall clock stepped back (NTP, a restored VM) must not make every
// connection look just used and skip its probe. Idle retirement uses the wall
// clock: a frozen Lambda environment (or a snapshot restore) may not advance
// the monotonic clock, and idle retirement is what replaces connections
// after a thaw. A wall clock step only moves an idle retirement earlier or
// later, and the probe still runs.
var clockBase = time.Now()

// clockStamp is t as a monotonic stamp. For an injected clock's times
// without a monotonic reading (tests), the wall clock difference is used.
func clockStamp(t time.Time) int64 { return int64(t.Sub(clockBase)) }

// instant is one reading of the policy's clock, on both scales.
type instant struct {
	wall int64 // Unix nanoseconds
	mono int64 // clockStamp
}

func stateOf(conn *pgx.Conn) *connState {
	s, _ := conn.PgConn().CustomData()[customDataKey].(*connState)
	return s
}

// poolPolicy enforces one lifetime, idle time and liveness rule per physical
// connection at every place a connection changes hands: database/sql reusing
// an idle connection (stdlib's ResetSession), pgxpool handing one out
// (PrepareConn, ShouldPing) and taking one back (AfterRelease).
//
// pgxpool enforces lifetime and idle time by itself only for connections
// parked inside it. Under database/sql most connections sit in database/sql's
// own idle list instead and pgxpool never sees them, so the rule has to be
// checked at checkout too; keeping our own jittered deadline (rather than
// pgxpool's private one) makes all the checks agree.
type poolPolicy struct {
	lifetime, jitter, idle time.Duration
	now                    func() time.Time // nil: the real monotonic clock (tests inject one)
	onRetire               func(reason retireReason)

	// deaths counts connections of this pool found dead by the server's hand
	// (a statement failed and pgx closed the connection, not because the
	// caller's context ended, or the probe saw the socket closed). One
	// backend dying is usually not alone: failover, pg_terminate_backend of
	// an application, a proxy or pooler restart take its siblings too, but
	// not at the same instant. A sibling may show nothing on its socket yet,
	// or pass a ping and be killed during the caller's next statement: a
	// ping does not prove a sibling will survive. So every connection opened
	// before a death is retired at its next checkout, and database/sql takes
	// another: one dialled after the death, which whatever killed the
	// siblings did not see. The cost is up to one reconnect per pooled
	// connection per death (tokens are cached: no signing); the gain is one
	// caller error per event instead of one per dying sibling. To keep the
	// cost to real events, a death is counted once per connection, and not
	// for the caller's own cancellation or a timeout aimed at one session
	// (isDeath). A connection whose dial was under way when a death was
	// counted is treated as opened after it: a narrow window in which it can
	// still be one the killer saw.
	deaths atomic.Uint64

	// contended reports whether a caller is waiting in the connector for a
	// connection at the cap. nil means never (tests).
	contended func() bool

	// registry knows the open connections and the overflow ones (overflow.go).
	registry connRegistry

	// pinnedOpen counts open connections with flagPinned: the gauge
	// rdsproxy.pool.connections.pinned.
	pinnedOpen atomic.Int64
	// churn decides pin_check=retire's retirements; nil in other modes.
	churn *churnGuard
	// audit is the session audit (session_audit=on); nil when off.
	audit *sessionAudit
}

// clock reads the policy's clock.
func (p *poolPolicy) clock() instant {
	var now time.Time
	if p.now == nil {
		now = time.Now()
	} else {
		now = p.now()
	}
	return instant{wall: now.UnixNano(), mono: clockStamp(now)}
}

func (p *poolPolicy) afterConnect(conn *pgx.Conn) {
	now := p.clock()
	s := &connState{deadline: now.mono + int64(p.lifetime)}
	if p.jitter > 0 {
		s.deadline += int64(rand.N(p.jitter))
	}
	s.lastUsed.Store(now.wall)
	s.lastAnswer.Store(now.mono)
	s.prober = conncheck.NewProber(conn.PgConn().Conn())
	s.deathsSeen.Store(p.deaths.Load()) // a new connection is verified by its own handshake
	conn.PgConn().CustomData()[customDataKey] = s
	p.track(conn, s)
}

// expired reports why conn must be retired now, or notRetired.
func (p *poolPolicy) expired(conn *pgx.Conn) retireReason {
	s := stateOf(conn)
	if s == nil {
		return notRetired
	}
	return p.expiredAt(s, p.clock())
}

// expiredAt is expired for a known state and time.
func (p *poolPolicy) expiredAt(s *connState, now instant) retireReason {
	if r := retireReason(s.retire.Load()); r != notRetired {
		return r
	}
	switch {
	case s.flags.Load()&flagOverflow != 0:
		return retireOverflow
	case s.deathsSeen.Load() != p.deaths.Load():
		return retireSibling
	case now.mono > s.deadline:
		return retireLifetime
	case time.Duration(now.wall-s.lastUsed.Load()) > p.idle:
		return retireIdle
	}
	return notRetired
}

// markRetired records the reason once and reports it.
func (p *poolPolicy) markRetired(conn *pgx.Conn, reason retireReason) {
	if s := stateOf(conn); s != nil && s.retire.CompareAndSwap(uint32(notRetired), uint32(reason)) && p.onRetire != nil {
		p.onRetire(reason)
	}
}

// shouldPing decides, at checkout, whether to spend a round trip on a ping.
// It also retires expired connections: it marks them so the reset hook
// (database/sql path) or PrepareConn (pgxpool path) discards them without the
// wasted ping.
func (p *poolPolicy) shouldPing(conn *pgx.Conn, idle time.Duration) bool {
	s := stateOf(conn)
	if s == nil {
		return idle > pingAfterIdle
	}
	now := p.clock()
	if reason := p.expiredAt(s, now); reason != notRetired {
		p.markRetired(conn, reason)
		return false
	}
	s.lastUsed.Store(now.wall) // a checkout is use: pings and COPY count too, not only traced statements
	noteCheckout(s)
	// A negative age means the injected clock went backwards: probe.
	if age := time.Duration(now.mono - s.lastAnswer.Load()); age < 0 || age >= probeAfterIdle {
		switch s.prober.Probe() {
		case conncheck.Closed:
			p.markRetired(conn, retireBroken)
			p.noteDeath(s)
			return false
		case conncheck.Pending:
			return true // probably a FATAL before close; the ping settles it
		}
	}
	return idle > pingAfterIdle
}

// noteDeath records that a connection of this pool died, so that the others
// are retired at their next checkout (see poolPolicy.deaths). s, the dead
// connection's state, is marked as having seen its own death.
//
// A connection's death is counted once: after a failed statement pgx's
// Rollback (or the caller's next call) on the same closed connection fails
// again, with pgconn.ErrConnClosed, and must not retire the connections
// dialled in between.
func (p *poolPolicy) noteDeath(s *connState) {
	if s != nil && s.flags.Or(flagDead)&flagDead != 0 {
		return
	}
	d := p.deaths.Add(1)
	if s != nil {
		s.deathsSeen.Store(d)
	}
}

// sessionOnlySQLStates end one session for its own conduct (an idle
// transaction, an idle session or a transaction too long) and say nothing
// about the other connections, so they are not deaths.
var sessionOnlySQLStates = map[string]bool{
	"25P03": true, // idle_in_transaction_session_timeout
	"25P04": true, // transaction_timeout (PostgreSQL 17)
	"57P05": true, // idle_session_timeout
}

// isDeath reports whether a statement that failed with err and left its
// connection closed means the server (or the network) ended the session in a
// way that may have taken the siblings too.
func isDeath(ctx context.Context, err error) bool {
	// The caller's own context: pgx closes a connection whose statement was
	// cancelled. (Not pgconn.Timeout: it is also true for a kernel
	// ETIMEDOUT, a connection the network killed.)
	if ctx.Err() != nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if errors.Is(err, pgconn.ErrConnClosed) { // already closed before this call: counted then, if at all
		return false
	}
	var pgErr *pgconn.PgError
	return !errors.As(err, &pgErr) || !sessionOnlySQLStates[pgErr.Code]
}

// statementEnded is called after every statement, with the statement's
// context and conn's state s (nil if it has none). A failed statement that
// left the connection closed may be a death (isDeath); anything else is the
// server heard from, which restarts both clocks.
func (p *poolPolicy) statementEnded(ctx context.Context, s *connState, conn *pgx.Conn, err error) {
	if err != nil && conn.IsClosed() {
		if s != nil {
			s.active.Store(false)
		}
		if isDeath(ctx, err) {
			p.noteDeath(s)
		}
		return
	}
	if s != nil {
		now := p.clock()
		s.lastUsed.Store(now.wall)
		s.lastAnswer.Store(now.mono)
		s.active.Store(conn.PgConn().TxStatus() != 'I') // a transaction keeps its connection at work
	}
}

// statementStarted is called before every statement (and batch) on a
// connection with state s (nil if it has none).
func (p *poolPolicy) statementStarted(s *connState) {
	if s != nil {
		s.active.Store(true)
	}
}

// resetSession is stdlib's OptionResetSession hook: it runs after the ping
// decision when database/sql reuses a connection.
func (p *poolPolicy) resetSession(ctx context.Context, conn *pgx.Conn) error {
	if s := stateOf(conn); s != nil {
		if retireReason(s.retire.Load()) != notRetired {
			return errRetire
		}
		if s.flags.Load()&flagHandBack != 0 && s.flags.And(^flagHandBack)&flagHandBack != 0 {
			return errHandBack
		}
	}
	if p.audit != nil && !p.audit.clean(ctx, conn, p) {
		return errRetire
	}
	return nil
}

// configurePool installs the policy's hooks on a pgxpool config and sets its
// own limits as backstops that never fire before ours.
func (p *poolPolicy) configurePool(pc *pgxpool.Config, maxConns int32, healthCheck time.Duration) {
	pc.MaxConns = maxConns
	pc.MinConns = 0 // never dial in the background: Lambda and cold starts pay only for what they use
	pc.MaxConnLifetime = p.lifetime + p.jitter + time.Second
	pc.MaxConnLifetimeJitter = 0
	pc.MaxConnIdleTime = p.idle
	pc.HealthCheckPeriod = healthCheck
	pc.AfterConnect = p.connected
	pc.ShouldPing = func(_ context.Context, sp pgxpool.ShouldPingParams) bool {
		return p.shouldPing(sp.Conn, sp.IdleDuration)
	}
	pc.PrepareConn = func(ctx context.Context, conn *pgx.Conn) (bool, error) {
		if reason := p.expired(conn); reason != notRetired {
			p.markRetired(conn, reason)
			return false, nil // pgxpool destroys it and acquires another
		}
		if p.audit != nil && !p.audit.clean(ctx, conn, p) {
			return false, nil
		}
		return true, nil // ShouldPing, which pgxpool calls first, recorded the checkout
	}
	pc.BeforeClose = func(conn *pgx.Conn) {
		if s := stateOf(conn); s != nil {
			p.untrack(s)
		}
	}
	pc.AfterRelease = func(conn *pgx.Conn) bool {
		if reason := p.expired(conn); reason != notRetired {
			p.markRetired(conn, reason)
			return false
		}
		return true
	}
}

// stdlibOptions are the hooks for stdlib's pool connector.
func (p *poolPolicy) stdlibOptions() []stdlib.OptionOpenDB {
	return []stdlib.OptionOpenDB{
		stdlib.OptionShouldPing(func(_ context.Context, sp stdlib.ShouldPingParams) bool {
			// Fairness under plain sql.Open: database/sql hands its idle
			// connections to whoever asks next and never to a caller already
			// waiting in the connector at the cap, which can starve that caller
			// for as long as the others keep querying. While someone waits, a
			// reuse gives the connection back to pgxpool, which serves waiters
			// in order; database/sql retries the reusing caller transparently
			// and it queues like everyone else. No ping is spent on it. Under
			// Open, database/sql queues callers at the cap itself and this
			// never triggers. An overflow connection (overflow.go) is not
			// handed back: it is not pgxpool's, and shouldPing retires it.
			if p.contended != nil && p.contended() {
				if s := stateOf(sp.Conn); s != nil && s.flags.Load()&flagOverflow == 0 {
					s.flags.Or(flagHandBack)
					return false
				}
			}
			return p.shouldPing(sp.Conn, sp.IdleDuration)
		}),
		stdlib.OptionResetSession(p.resetSession),
	}
}
