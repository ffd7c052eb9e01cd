// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

package rdsproxy

import (
	"context"
	"hash/maphash"
	"slices"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/rdsproxy/rdsproxy/internal/pinning"
)

// The session audit (session_audit=on), for staging and CI.
//
// The pinning check reads statement text, so it cannot see state that
// functions, procedures and DO blocks leave on a session. The audit asks the
// server instead: before a connection is reused, one read-only catalog query
// lists the session-level state on its backend. The state right after connect
// is the baseline (the proxy's InitQuery, for instance); anything else is a
// finding: reported once per distinct cause as a PinEvent of kind audit,
// naming what was left and the statements run on the connection since its
// last clean audit (the suspects), and the connection is retired.
//
// The query pins nothing: it is sent with the simple protocol (no statement,
// named or not, stays behind), it sets nothing and creates nothing, and it
// only reads catalog views and functions. A reuse of a connection on which no
// traced statement ran since its last audit is not audited again. Statements
// sent below pgx's tracer (pgconn-level calls through (*pgx.Conn).PgConn) do
// not mark a connection for an audit.
const auditQuery = `SELECT 'setting', name FROM pg_catalog.pg_settings WHERE source = 'session'
UNION ALL SELECT 'prepared_statement', name FROM pg_catalog.pg_prepared_statements WHERE name !~ '^(stmtcache|stmt)_[0-9a-f]{48}$'
UNION ALL SELECT 'cursor', name FROM pg_catalog.pg_cursors WHERE is_holdable
UNION ALL SELECT 'listen', c FROM pg_catalog.pg_listening_channels() AS c
UNION ALL SELECT 'temp_relation', relname::text FROM pg_catalog.pg_class WHERE pg_catalog.pg_my_temp_schema() <> 0 AND relnamespace = pg_catalog.pg_my_temp_schema()
UNION ALL SELECT 'advisory_lock', '' FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND pid = pg_catalog.pg_backend_pid()`

// Named statements pgx makes itself (stmtcache_ or stmt_ and 48 hex digits:
// its statement cache in the cache_statement mode, database/sql's Prepare)
// are left out of
// the audit: the pinning check already reports them as kind prepare when they
// are made, and they are the driver's, not state a statement left.

// maxAuditSuspects bounds the suspects kept per connection: the most recent
// distinct statements since the last clean audit. A request runs a handful;
// twenty names the culprit without keeping a long session's history.
const maxAuditSuspects = 20

// maxSuspectBytes: a longer statement is kept as a copy of its start, so
// that a multi-megabyte INSERT is not held in memory until the next audit.
// Its fingerprint is made from that much, which names it as well.
const maxSuspectBytes = 4096

// auditCustomDataKey holds a connection's *auditConn in pgconn's CustomData.
const auditCustomDataKey = "rdsproxy.audit"

// leftover is one item of session state the audit query returns: its kind
// and its name (empty for advisory locks, whose keys may be data).
type leftover struct {
	kind, name string
}

func (l leftover) String() string {
	if l.name == "" {
		return l.kind
	}
	return l.kind + " " + l.name
}

// auditReasons maps a leftover's kind to its pinning reason and remedy.
var auditReasons = map[string]struct {
	reason PinReason
	remedy string
}{
	"setting":            {PinSessionSetting, "a session-level setting was left (set_config(..., false) or SET in a function?): use SET LOCAL or set_config(..., true) inside a transaction, or startup parameters"},
	"prepared_statement": {PinPreparedStatement, "a SQL-level prepared statement was left: DEALLOCATE it, or run the statement with arguments instead"},
	"cursor":             {PinCursor, "a WITH HOLD cursor was left open: CLOSE it, or declare it without WITH HOLD inside the transaction"},
	"listen":             {PinListen, "a LISTEN was left: use a dedicated connection for notifications, outside the proxy"},
	"temp_relation":      {PinTempObject, "a temporary table, view or sequence was left: create it ON COMMIT DROP inside a transaction, or use a regular table"},
	"advisory_lock":      {PinAdvisoryLock, "a session-level advisory lock is held: use pg_advisory_xact_lock inside a transaction"},
}

// auditConn is the audit's state for one connection. A connection is used by
// one goroutine at a time (statements, reset hooks), so it needs no lock.
type auditConn struct {
	baseline map[leftover]struct{}
	suspects []string // statement texts since the last clean audit, most recent last
	dirty    bool     // a statement ran since the last audit
}

func auditOf(conn *pgx.Conn) *auditConn {
	a, _ := conn.PgConn().CustomData()[auditCustomDataKey].(*auditConn)
	return a
}

// ran records a statement run on conn (from the tracer).
func (a *auditConn) ran(sql string) {
	if sql == auditQuery {
		return
	}
	a.dirty = true
	if n := len(a.suspects); n > 0 && a.suspects[n-1] == sql {
		return
	}
	if len(sql) > maxSuspectBytes {
		sql = strings.Clone(sql[:maxSuspectBytes])
	}
	if len(a.suspects) == maxAuditSuspects {
		copy(a.suspects, a.suspects[1:])
		a.suspects = a.suspects[:maxAuditSuspects-1]
	}
	a.suspects = append(a.suspects, sql)
}

// sessionAudit is one connector's audit: it reports findings through the
// pinning checker's queue (deduplicated per cause).
type sessionAudit struct {
	pins *pinChecker
	seed maphash.Seed

	mu       sync.Mutex
	reported map[uint64]struct{}
}

func newSessionAudit(pins *pinChecker) *sessionAudit {
	return &sessionAudit{pins: pins, seed: maphash.MakeSeed(), reported: make(map[uint64]struct{})}
}

// readSessionState runs the audit query on conn.
func readSessionState(ctx context.Context, conn *pgx.Conn) (map[leftover]struct{}, error) {
	rows, err := conn.Query(ctx, auditQuery, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	state := make(map[leftover]struct{})
	var l leftover
	for rows.Next() {
		if err := rows.Scan(&l.kind, &l.name); err != nil {
			return nil, err
		}
		state[l] = struct{}{}
	}
	return state, rows.Err()
}

// diffState returns what now holds beyond base, sorted.
func diffState(base, now map[leftover]struct{}) []leftover {
	var out []leftover
	for l := range now {
		if _, ok := base[l]; !ok {
			out = append(out, l)
		}
	}
	slices.SortFunc(out, func(a, b leftover) int {
		if c := strings.Compare(a.kind, b.kind); c != 0 {
			return c
		}
		return strings.Compare(a.name, b.name)
	})
	return out
}

// baseline records conn's state right after connect. It is a no-op when the
// audit is off.
func (p *poolPolicy) baseline(ctx context.Context, conn *pgx.Conn) error {
	if p.audit == nil {
		return nil
	}
	state, err := readSessionState(ctx, conn)
	if err != nil {
		return err
	}
	conn.PgConn().CustomData()[auditCustomDataKey] = &auditConn{baseline: state}
	return nil
}

// clean audits conn before its reuse and reports whether it may be reused.
// A finding is reported and retires the connection; a failed query means the
// connection is not usable either.
func (a *sessionAudit) clean(ctx context.Context, conn *pgx.Conn, p *poolPolicy) bool {
	ac := auditOf(conn)
	if ac == nil || !ac.dirty {
		return true
	}
	state, err := readSessionState(ctx, conn)
	if err != nil {
		p.markRetired(conn, retireBroken)
		return false
	}
	found := diffState(ac.baseline, state)
	ac.dirty = false
	if len(found) == 0 {
		ac.suspects = ac.suspects[:0]
		return true
	}
	a.report(found, ac.suspects)
	p.markRetired(conn, retireAudit)
	return false
}

// report queues one PinEvent for found unless the same leftovers were
// reported before.
func (a *sessionAudit) report(found []leftover, suspects []string) {
	var h maphash.Hash
	h.SetSeed(a.seed)
	for _, l := range found {
		h.WriteString(l.String())
		h.WriteByte(0)
	}
	key := h.Sum64()
	a.mu.Lock()
	_, dup := a.reported[key]
	if !dup {
		if len(a.reported) >= maxPinReported {
			clear(a.reported)
		}
		a.reported[key] = struct{}{}
	}
	a.mu.Unlock()
	if dup {
		return
	}
	ev := PinEvent{Kind: PinKindAudit}
	var reasons uint16
	for _, l := range found {
		r := auditReasons[l.kind]
		ev.Findings = append(ev.Findings, PinFinding{Reason: r.reason, Statement: l.String(), Remedy: r.remedy})
		ev.Leftovers = append(ev.Leftovers, l.String())
		reasons |= reasonBit(r.reason)
	}
	for i, r := range pinReasonOrder {
		if reasons&(1<<i) != 0 {
			ev.Reasons = append(ev.Reasons, r)
		}
	}
	for _, sql := range suspects {
		fp, _ := pinning.Fingerprint(sql)
		if !slices.Contains(ev.Suspects, fp) {
			ev.Suspects = append(ev.Suspects, fp)
		}
	}
	a.pins.reportEvent(ev)
}
