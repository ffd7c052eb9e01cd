// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

package rdsproxy

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rdsproxy/rdsproxy/internal/pinning"
	"github.com/rdsproxy/rdsproxy/internal/testclock"
)

// records collects log records and PinEvents of a pinChecker.
type records struct {
	mu     sync.Mutex
	logs   []map[string]any
	events []PinEvent
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *records) WithGroup(string) slog.Handler            { return r }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	m := map[string]any{"msg": rec.Message, "level": rec.Level}
	rec.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value.Any(); return true })
	r.mu.Lock()
	r.logs = append(r.logs, m)
	r.mu.Unlock()
	return nil
}

func (r *records) event(ev PinEvent) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
}

func (r *records) snapshot() ([]map[string]any, []PinEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]map[string]any(nil), r.logs...), append([]PinEvent(nil), r.events...)
}

// newTestChecker returns a checker on a fake clock that logs into recs.
func newTestChecker(recs *records, clk *testclock.Clock) *pinChecker {
	p := newPinChecker(slog.New(recs), recs.event)
	p.now = clk.Now
	return p
}

// settle waits until the checker has delivered every queued notice. Delivery
// is asynchronous by design; this only waits, it measures no time.
func settle(t *testing.T, p *pinChecker) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for p.draining.Load() || len(p.queue) > 0 {
		if time.Now().After(deadline) {
			t.Fatal("pin notices were not delivered")
		}
		runtime.Gosched()
	}
}

// TestPinCheckRateLimit: at most warnLimit warnings per window; the rest are
// counted and the count rides on the next warning; the handler sees all.
func TestPinCheckRateLimit(t *testing.T) {
	var recs records
	clk := testclock.New(time.Unix(1_700_000_000, 0))
	p := newTestChecker(&recs, clk)
	p.warnLimit = 3

	for i := range 5 {
		p.check(fmt.Sprintf("LISTEN chan_%d", i), PinKindQuery, nil)
	}
	settle(t, p)
	logs, events := recs.snapshot()
	require.Len(t, events, 5, "the handler is not rate-limited")
	require.Len(t, logs, 3, "warnings beyond the limit are suppressed")
	for _, l := range logs {
		require.NotContains(t, l, "suppressed")
	}

	clk.Advance(p.window - time.Nanosecond)
	p.check("LISTEN chan_5", PinKindQuery, nil)
	settle(t, p)
	logs, events = recs.snapshot()
	require.Len(t, events, 6)
	require.Len(t, logs, 3, "still inside the window")

	clk.Advance(time.Nanosecond)
	p.check("LISTEN chan_6", PinKindQuery, nil)
	settle(t, p)
	logs, _ = recs.snapshot()
	require.Len(t, logs, 4, "a new window allows warnings again")
	require.EqualValues(t, 3, logs[3]["suppressed"], "chan_3, chan_4 and chan_5 were suppressed")
	require.Equal(t, "LISTEN chan_6", logs[3]["fingerprint"])

	p.check("LISTEN chan_7", PinKindQuery, nil)
	settle(t, p)
	logs, _ = recs.snapshot()
	require.NotContains(t, logs[4], "suppressed", "the count is reported once")
}

// TestPinCheckDedup: one report per fingerprint, whatever the literal values,
// how often it runs or whether it ran as a query or in a batch; a named
// prepare of the same text is a separate report.
func TestPinCheckDedup(t *testing.T) {
	var recs records
	clk := testclock.New(time.Unix(0, 0))
	p := newTestChecker(&recs, clk)
	for i := range 50 {
		p.check(fmt.Sprintf("SELECT pg_advisory_lock(%d)", i), PinKindQuery, nil)
		p.check(fmt.Sprintf("SELECT pg_advisory_lock(%d)", i), PinKindBatch, nil)
		p.check("SELECT 1", PinKindQuery, nil)
	}
	p.check("SELECT pg_advisory_lock(7)", PinKindPrepare, nil)
	p.check("SELECT 1", PinKindPrepare, nil)
	p.check("SELECT 1", PinKindPrepare, nil)
	settle(t, p)
	logs, events := recs.snapshot()
	require.Len(t, events, 3)
	require.Len(t, logs, 3)

	require.Equal(t, "SELECT pg_advisory_lock(?)", events[0].Fingerprint)
	require.Equal(t, []PinReason{PinAdvisoryLock}, events[0].Reasons)
	require.Equal(t, PinKindQuery, events[0].Kind)
	require.Len(t, events[0].FingerprintHash, 16)

	require.Equal(t, PinKindPrepare, events[1].Kind)
	require.Equal(t, []PinReason{PinPreparedStatement, PinAdvisoryLock}, events[1].Reasons)

	require.Equal(t, []PinReason{PinPreparedStatement}, events[2].Reasons, "a named prepare pins even for clean SQL")
	require.Equal(t, namedPrepareRemedy, events[2].Findings[0].Remedy)
	require.Equal(t, "prepared_statement", logs[2]["reason"])
	require.Contains(t, logs[2]["remedy"], "db.Prepare")
}

// TestPinCheckConcurrent: many goroutines checking the same and different
// statements produce exactly one report per distinct pinning statement.
func TestPinCheckConcurrent(t *testing.T) {
	var recs records
	clk := testclock.New(time.Unix(0, 0))
	p := newTestChecker(&recs, clk)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				p.check(fmt.Sprintf("DECLARE c%d CURSOR FOR SELECT 1", i%20), PinKindQuery, nil)
				p.check(fmt.Sprintf("SELECT %d", g), PinKindQuery, nil)
			}
		}()
	}
	wg.Wait()
	settle(t, p)
	_, events := recs.snapshot()
	require.Len(t, events, 20)
}

// TestPinCheckCachedCleanDoesNotAllocate is the hot path's contract.
func TestPinCheckCachedCleanDoesNotAllocate(t *testing.T) {
	p := newPinChecker(slog.New(slog.DiscardHandler), nil)
	const q = "SELECT id, email FROM users WHERE id = $1"
	p.check(q, PinKindQuery, nil)
	p.check("UPDATE accounts SET balance = balance - $1 WHERE id = $2", PinKindBatch, nil)
	require.Zero(t, testing.AllocsPerRun(1000, func() {
		p.check(q, PinKindQuery, nil)
		p.check("UPDATE accounts SET balance = balance - $1 WHERE id = $2", PinKindBatch, nil)
	}))
}

// TestPinCheckCacheIsBounded: distinct statement texts beyond the bound clear
// the cache instead of growing it, and long texts are keyed by hash.
func TestPinCheckCacheIsBounded(t *testing.T) {
	p := newPinChecker(slog.New(slog.DiscardHandler), nil)
	for i := range maxPinVerdicts + 10 {
		p.check("SELECT "+fmt.Sprint(i), PinKindQuery, nil)
	}
	require.LessOrEqual(t, p.entries.Load(), int64(maxPinVerdicts))
	n := 0
	p.verdicts.Range(func(any, any) bool { n++; return true })
	require.LessOrEqual(t, n, maxPinVerdicts)

	long := "SELECT '" + strings.Repeat("x", 2*pinning.MaxStatementBytes) + "'"
	p.check(long, PinKindQuery, nil)
	p.verdicts.Range(func(k, _ any) bool {
		require.LessOrEqual(t, len(k.(string)), maxPinKeyBytes, "a long statement is cached under a short key")
		return true
	})
	_, ok := p.verdicts.Load(p.hashKey(long))
	require.True(t, ok)
}

// TestPinCheckLongStatement: a statement over the size limit is reported once,
// with a short fingerprint.
func TestPinCheckLongStatement(t *testing.T) {
	var recs records
	clk := testclock.New(time.Unix(0, 0))
	p := newTestChecker(&recs, clk)
	long := "INSERT INTO t VALUES ('" + strings.Repeat("secret ", 3000) + "')"
	for range 3 {
		p.check(long, PinKindQuery, nil)
	}
	settle(t, p)
	_, events := recs.snapshot()
	require.Len(t, events, 1)
	require.Equal(t, []PinReason{PinStatementSize}, events[0].Reasons)
	// Only the first 16 KB are read, all of it inside the literal.
	require.Equal(t, "INSERT INTO t VALUES (?...", events[0].Fingerprint)
	require.NotContains(t, events[0].Findings[0].Statement, "secret")
}

// TestPinHandlerPanicDoesNotWedgeDelivery: a handler that exits its goroutine
// (runtime.Goexit, as t.FailNow does) must not stop later deliveries.
func TestPinHandlerGoexitDoesNotWedgeDelivery(t *testing.T) {
	var mu sync.Mutex
	var got []string
	p := newPinChecker(slog.New(slog.DiscardHandler), func(ev PinEvent) {
		mu.Lock()
		got = append(got, ev.Fingerprint)
		mu.Unlock()
		if ev.Fingerprint == "LISTEN a" {
			runtime.Goexit()
		}
	})
	p.check("LISTEN a", PinKindQuery, nil)
	settle(t, p)
	p.check("LISTEN b", PinKindQuery, nil)
	settle(t, p)
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []string{"LISTEN a", "LISTEN b"}, got)
}

func TestFingerprint(t *testing.T) {
	cases := []struct{ sql, want string }{
		{"SELECT 1", "SELECT ?"},
		{"  SELECT\n\t*  FROM t -- comment 'x'\nWHERE a = 'lit-SECRET' AND b = 42.5e3  ", "SELECT * FROM t WHERE a = ? AND b = ?"},
		{"SELECT set_config('app.tenant', $1, false)", "SELECT set_config(?, $1, false)"},
		{"SET application_name = 'lit-SECRET'", "SET application_name = ?"},
		{"SET search_path TO tenant_42, public", "SET search_path TO ?, ?"},
		{"set local statement_timeout to 5000; SELECT x FROM t", "set local statement_timeout to ?; SELECT x FROM t"},
		{"SELECT E'it\\'s', $$body 'q'$$, $tag$secret$tag$, /* c /* nested */ */ B'0101'", "SELECT ?, ?, ?, B?"},
		{`SELECT "Quoted Id" FROM "t"`, `SELECT "Quoted Id" FROM "t"`},
		{"UPDATE t SET a = 'x'", "UPDATE t SET a = ?"},
	}
	for _, tc := range cases {
		got, _ := pinning.Fingerprint(tc.sql)
		require.Equal(t, tc.want, got, tc.sql)
	}

	_, h1 := pinning.Fingerprint("SELECT 1 FROM t")
	_, h2 := pinning.Fingerprint("select   2 from t /* x */")
	_, h3 := pinning.Fingerprint("SELECT 1 FROM u")
	require.NotEqual(t, h1, h3)
	require.NotEqual(t, h1, h2, "case is kept")

	long := "SELECT " + strings.Repeat("a_column, ", 100)
	a, ha := pinning.Fingerprint(long + "x")
	b, hb := pinning.Fingerprint(long + "y")
	require.LessOrEqual(t, len(a), pinning.MaxFingerprintBytes+len("..."))
	require.Equal(t, a, b, "both truncated alike")
	require.NotEqual(t, ha, hb, "the hash covers the whole text")
}

// TestTracerByMode: pin_check=warn installs the checking tracer (so the
// BenchmarkQuery warn case really runs the check) and off installs the plain
// one, which pgx does not even call for batches and prepares.
func TestTracerByMode(t *testing.T) {
	for mode, want := range map[string]any{"warn": &pinTracer{}, "off": &tracer{}} {
		c, err := NewConnector("postgres://u@127.0.0.1:1/db?sslmode=disable&pin_check=" + mode)
		require.NoError(t, err)
		require.IsType(t, want, c.pool.Config().ConnConfig.Tracer, mode)
		require.NoError(t, c.Close())
	}
}
