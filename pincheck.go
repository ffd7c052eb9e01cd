// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

package rdsproxy

import (
	"context"
	"hash/maphash"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rdsproxy/rdsproxy/internal/pinning"
)

// PinEvent describes one distinct statement that pins the RDS Proxy session,
// as seen by the runtime check (pin_check=warn). It never contains parameter
// values or literals: Findings[i].Statement and Fingerprint are fingerprints.
// Register a handler with [WithPinHandler].
type PinEvent struct {
	// Reasons are the distinct reasons, in canonical order.
	Reasons []PinReason
	// Findings has one entry per reason per offending statement.
	Findings []PinFinding
	// Fingerprint is the statement text normalised for logs: comments
	// removed, literals replaced by ?, whitespace collapsed, at most about
	// 200 bytes. Statements that differ only in literal values share it.
	Fingerprint string
	// FingerprintHash is a hash of the whole normalised text (16 hex digits),
	// which tells apart long statements whose Fingerprint was truncated alike.
	// A statement over 16384 bytes is normalised and hashed up to that size
	// only: its reason is its size, and its start names it.
	FingerprintHash string
	// Kind is how the statement reached the server: [PinKindQuery],
	// [PinKindBatch] or [PinKindPrepare]; or [PinKindAudit] for state the
	// session audit found left on a connection (session_audit=on).
	Kind string
	// Leftovers names, for kind audit only, what the audit found left on the
	// backend: "setting work_mem", "advisory_lock", "temp_relation t",
	// "listen channel", "cursor c", "prepared_statement p". Values are never
	// included; each also has its entry in Findings.
	Leftovers []string
	// Suspects are, for kind audit only, the fingerprints of the statements
	// run on the connection since its last clean audit, oldest first: one of
	// them left the state.
	Suspects []string
}

// The values of PinEvent.Kind, of the log attribute kind and of the pinning
// counter's rdsproxy.pinning.kind attribute. Untyped, so they compare with
// and assign to any string.
const (
	// PinKindQuery: Query, QueryRow or Exec, also inside transactions.
	PinKindQuery = "query"
	// PinKindBatch: a statement of a pgx batch.
	PinKindBatch = "batch"
	// PinKindPrepare: a named server-side prepared statement.
	PinKindPrepare = "prepare"
	// PinKindAudit: state the session audit found left on a connection; the
	// event's Leftovers and Suspects say what and after which statements.
	PinKindAudit = "audit"
)

// auditWarnMessage is the message of the WARN record for a session audit
// finding.
const auditWarnMessage = "rdsproxy: session state left on a connection"

// pinWarnMessage is the message of the WARN record for a pinning statement.
const pinWarnMessage = "rdsproxy: statement pins the RDS Proxy session"

// namedPrepareRemedy is the advice for a named protocol-level prepared
// statement, which the analyzer cannot see in SQL text: only the tracer knows
// a Prepare carried a name.
const namedPrepareRemedy = "database/sql's db.Prepare / tx.Prepare creates a named server-side statement " +
	"(so do GORM PrepareStmt and sqlc emit_prepared_queries), which only exists in one session; " +
	"use db.Query/Exec with arguments instead"

// Limits of the runtime check. Each is per connector.
const (
	// pinWarnLimit warnings per pinWarnWindow at most. An application that
	// builds SQL with interpolated identifiers (SET search_path TO tenant_17)
	// can produce an unbounded number of distinct pinning statements; the
	// log should show that it happens, not every one of them. Suppressed
	// warnings are counted and the count is attached to the next warning.
	// The handler of WithPinHandler is not limited.
	pinWarnLimit  = 10
	pinWarnWindow = time.Minute

	// maxPinVerdicts and maxPinVerdictBytes bound the verdict cache (entries
	// and key bytes). The cache holds one entry per distinct statement text;
	// an application with more distinct texts than this interpolates values
	// into SQL, and the cache is then cleared and refilled, which costs one
	// prefilter pass per statement, not correctness.
	maxPinVerdicts     = 10_000
	maxPinVerdictBytes = 8 << 20

	// maxPinKeyBytes: longer statements are cached under a hash of their
	// first maxPinKeyBytes+1 bytes rather than the text itself, so a
	// multi-megabyte INSERT is neither kept alive by the cache nor hashed
	// whole. Everything this long pins for its size (statement_size) and
	// its report is built from that much of the text (pinning.Analyze,
	// pinning.Fingerprint), so equal prefixes mean equal verdicts, and a hash
	// collision could only merge two reports.
	maxPinKeyBytes = pinning.MaxStatementBytes

	// maxPinReported bounds the set of fingerprints already reported; when
	// full it is cleared, so a statement may be reported a second time after
	// this many others, which the rate limit keeps harmless.
	maxPinReported = 10_000

	// pinQueueSize is how many reports may wait for delivery. Reports are
	// delivered on a background goroutine so that a slow log handler or
	// PinEvent handler never holds up a query; if that many are already
	// waiting, the report is dropped and counted as suppressed.
	pinQueueSize = 1024
)

// pinVerdict is the cached result for one statement text.
type pinVerdict struct {
	event PinEvent
	key   pinReportKey
	tel   atomic.Pointer[pinAttrs] // the pinning counter's attributes, built at first use
}

// cleanVerdict is the verdict of every statement that does not pin; a cache
// hit on it is the hot path.
var cleanVerdict = &pinVerdict{}

// pinReportKey identifies a distinct statement for deduplication: statements
// with the same fingerprint are one statement, and a named prepare of a text
// is reported apart from running it.
type pinReportKey struct {
	hash    uint64
	prepare bool
}

// pinNotice is one report waiting for delivery.
type pinNotice struct {
	event      PinEvent
	warn       bool // false when rate-limited: only the handler sees it
	suppressed int  // warnings suppressed since the previous one
}

// pinChecker is the runtime pinning check of one connector. check is called
// from pgx's tracer on every statement and is safe for concurrent use.
type pinChecker struct {
	logger  *slog.Logger // nil: slog.Default() at delivery time
	handler func(PinEvent)

	// verdicts maps statement text (or hashKey for long texts) to
	// *pinVerdict, for query and batch statements; prepared does the same
	// for named prepares. sync.Map because the workload is read-mostly: its
	// Load takes no lock and does not allocate for a string key. Measured
	// against golang-lru (whose Get takes a mutex to update recency) and a
	// 32-shard RWMutex map: all three cost about 23 ns for one goroutine,
	// but under parallel lookups of one hot statement only sync.Map did not
	// slow down (23 ns vs 33 and 34 ns per lookup on 2 CPUs).
	verdicts, prepared sync.Map
	entries, bytes     atomic.Int64
	seed               maphash.Seed

	mu          sync.Mutex // guards the fields below
	reported    map[pinReportKey]struct{}
	now         func() time.Time
	warnLimit   int
	window      time.Duration
	windowStart time.Time
	warned      int // warnings in the current window
	suppressed  int // warnings suppressed since the last one sent

	queue    chan *pinNotice // pointers: a queue of values would cost every connector ~115 KB up front
	draining atomic.Bool     // a drain goroutine is running
}

func newPinChecker(logger *slog.Logger, handler func(PinEvent)) *pinChecker {
	return &pinChecker{
		logger:    logger,
		handler:   handler,
		seed:      maphash.MakeSeed(),
		reported:  make(map[pinReportKey]struct{}),
		now:       time.Now,
		warnLimit: pinWarnLimit,
		window:    pinWarnWindow,
		queue:     make(chan *pinNotice, pinQueueSize),
	}
}

// check looks sql up in the verdict cache and, the first time it sees a
// pinning statement, queues a report. Every execution of a pinning statement
// is counted on tel, the telemetry of the pool that runs it: a checker shared
// by a cluster's writer and reader counts each under its own pool name. It
// returns the verdict of a statement that pins, nil for one that does not. It
// never fails and never touches the statement's arguments.
func (p *pinChecker) check(sql, kind string, tel *telemetry) *pinVerdict {
	cache := &p.verdicts
	if kind == PinKindPrepare {
		cache = &p.prepared
	}
	key := sql
	if len(sql) > maxPinKeyBytes {
		key = p.hashKey(sql)
	}
	if v, ok := cache.Load(key); ok {
		if v == any(cleanVerdict) {
			return nil // hot path: one lock-free lookup, no allocation
		}
		tel.onPin(v.(*pinVerdict), kind)
		return v.(*pinVerdict)
	}
	v := p.analyze(sql, kind)
	if stored, loaded := cache.LoadOrStore(key, v); loaded {
		if stored == any(cleanVerdict) {
			return nil
		}
		tel.onPin(stored.(*pinVerdict), kind)
		return stored.(*pinVerdict) // a concurrent check stored it first and reports it
	}
	p.account(len(key))
	if v == cleanVerdict {
		return nil
	}
	tel.onPin(v, kind)
	p.report(v)
	return v
}

// hashKey is the cache key of a long statement: a hash of its longPrefix.
// The leading NUL cannot start a real statement's key (PostgreSQL text cannot
// contain NUL), so it never equals one.
func (p *pinChecker) hashKey(sql string) string {
	return "\x00" + strconv.FormatUint(maphash.String(p.seed, longPrefix(sql)), 16)
}

// longPrefix is the part of a long statement that its verdict is built from:
// one byte over the size limit, so that it still pins for its size.
func longPrefix(sql string) string {
	return sql[:maxPinKeyBytes+1]
}

// account counts a new cache entry and clears both caches when a bound is
// exceeded. The counters are approximate under concurrency; the bound is too.
func (p *pinChecker) account(keyBytes int) {
	n := p.entries.Add(1)
	b := p.bytes.Add(int64(keyBytes))
	if n > maxPinVerdicts || b > maxPinVerdictBytes {
		p.entries.Store(0)
		p.bytes.Store(0)
		p.verdicts.Clear()
		p.prepared.Clear()
	}
}

// analyze computes the verdict for sql. An analyzer error (the parser
// rejected the SQL) is not a failure here: the report that comes with it is
// the lexical verdict, which is what the check uses.
func (p *pinChecker) analyze(sql, kind string) *pinVerdict {
	if len(sql) > maxPinKeyBytes {
		sql = longPrefix(sql) // see maxPinKeyBytes
	}
	r, _ := pinning.Analyze(sql)
	named := kind == PinKindPrepare
	if !r.Pins() && !named {
		return cleanVerdict
	}
	fp, hash := pinning.Fingerprint(sql)
	ev := PinEvent{Fingerprint: fp, FingerprintHash: formatHash(hash), Kind: kind}
	var reasons uint16
	if named {
		ev.Findings = append(ev.Findings, PinFinding{Reason: PinPreparedStatement, Statement: fp, Remedy: namedPrepareRemedy})
		reasons |= reasonBit(PinPreparedStatement)
	}
	for _, f := range r.Findings {
		stmt, _ := pinning.Fingerprint(f.Statement)
		ev.Findings = append(ev.Findings, PinFinding{Reason: PinReason(f.Reason), Statement: stmt, Remedy: f.Remedy})
		reasons |= reasonBit(PinReason(f.Reason))
	}
	for i, r := range pinReasonOrder {
		if reasons&(1<<i) != 0 {
			ev.Reasons = append(ev.Reasons, r)
		}
	}
	return &pinVerdict{event: ev, key: pinReportKey{hash: hash, prepare: named}}
}

func reasonBit(r PinReason) uint16 {
	for i, x := range pinReasonOrder {
		if x == r {
			return 1 << i
		}
	}
	return 0
}

func formatHash(h uint64) string {
	s := strconv.FormatUint(h, 16)
	return strings.Repeat("0", 16-len(s)) + s
}

// report queues one notice for v unless its statement was reported before,
// deciding under the rate limit whether the notice includes a log warning.
func (p *pinChecker) report(v *pinVerdict) {
	p.mu.Lock()
	if _, dup := p.reported[v.key]; dup {
		p.mu.Unlock()
		return
	}
	if len(p.reported) >= maxPinReported {
		clear(p.reported)
	}
	p.reported[v.key] = struct{}{}
	p.mu.Unlock()
	p.reportEvent(v.event)
}

// reportEvent queues one notice for ev, deciding under the rate limit
// whether it includes a log warning.
func (p *pinChecker) reportEvent(ev PinEvent) {
	p.mu.Lock()
	n := &pinNotice{event: ev}
	if now := p.now(); now.Sub(p.windowStart) >= p.window {
		p.windowStart, p.warned = now, 0
	}
	if p.warned < p.warnLimit {
		p.warned++
		n.warn, n.suppressed, p.suppressed = true, p.suppressed, 0
	} else {
		p.suppressed++
	}
	p.mu.Unlock()
	p.enqueue(n)
}

// enqueue hands n to the drain goroutine, starting one if none runs. It never
// blocks: with the queue full, n is dropped and its warning counted as
// suppressed.
func (p *pinChecker) enqueue(n *pinNotice) {
	select {
	case p.queue <- n:
	default:
		p.mu.Lock()
		p.suppressed += 1 + n.suppressed
		if n.warn {
			p.warned-- // it was not sent after all
		}
		p.mu.Unlock()
		return
	}
	if p.draining.CompareAndSwap(false, true) {
		go p.drain()
	}
}

// pinFlushTimeout bounds how long Close waits for queued pinning warnings:
// long enough for a logger to write them, short enough that a stuck handler
// cannot hang Close.
const pinFlushTimeout = 2 * time.Second

// flush waits until every queued notice was delivered, or pinFlushTimeout
// passed, so that a short-lived program (a CLI, a Lambda init) that closes
// its *sql.DB does not lose warnings. Polling keeps the hot path free of any
// extra synchronisation.
func (p *pinChecker) flush() {
	deadline := time.Now().Add(pinFlushTimeout)
	for (len(p.queue) > 0 || p.draining.Load()) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
}

// drain delivers queued notices in order and exits when the queue is empty,
// so an idle connector keeps no goroutine (and Close has nothing to stop).
func (p *pinChecker) drain() {
	done := false
	defer func() {
		if !done { // the handler panicked or called runtime.Goexit
			p.draining.Store(false)
		}
	}()
	for {
		select {
		case n := <-p.queue:
			p.deliver(n)
		default:
			p.draining.Store(false)
			// An enqueue between the empty receive and the Store saw a
			// running drainer and started none: take its notice over.
			if len(p.queue) == 0 || !p.draining.CompareAndSwap(false, true) {
				done = true
				return
			}
		}
	}
}

func (p *pinChecker) deliver(n *pinNotice) {
	if p.handler != nil {
		p.handler(n.event)
	}
	if !n.warn {
		return
	}
	logger := p.logger
	if logger == nil {
		logger = slog.Default()
	}
	if n.event.Kind == PinKindAudit {
		p.deliverAudit(logger, n)
		return
	}
	attrs := make([]slog.Attr, 0, 6)
	attrs = append(attrs,
		slog.String("reason", joinReasons(n.event.Reasons)),
		slog.String("remedy", joinRemedies(n.event.Findings)),
		slog.String("fingerprint", n.event.Fingerprint),
		slog.String("fingerprint_hash", n.event.FingerprintHash),
		slog.String("kind", n.event.Kind),
	)
	if n.suppressed > 0 {
		attrs = append(attrs, slog.Int("suppressed", n.suppressed))
	}
	logger.LogAttrs(context.Background(), slog.LevelWarn, pinWarnMessage, attrs...)
}

// deliverAudit logs a session audit finding.
func (p *pinChecker) deliverAudit(logger *slog.Logger, n *pinNotice) {
	attrs := []slog.Attr{
		slog.String("reason", joinReasons(n.event.Reasons)),
		slog.String("left", strings.Join(n.event.Leftovers, ", ")),
		slog.String("suspects", strings.Join(n.event.Suspects, " | ")),
		slog.String("remedy", joinRemedies(n.event.Findings)),
		slog.String("kind", n.event.Kind),
	}
	if n.suppressed > 0 {
		attrs = append(attrs, slog.Int("suppressed", n.suppressed))
	}
	logger.LogAttrs(context.Background(), slog.LevelWarn, auditWarnMessage, attrs...)
}

func joinReasons(rs []PinReason) string {
	var b strings.Builder
	for i, r := range rs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(string(r))
	}
	return b.String()
}

// joinRemedies lists each distinct remedy once, in the order of the findings.
func joinRemedies(fs []PinFinding) string {
	var out []string
	for _, f := range fs {
		dup := false
		for _, s := range out {
			dup = dup || s == f.Remedy
		}
		if !dup {
			out = append(out, f.Remedy)
		}
	}
	return strings.Join(out, " | ")
}
