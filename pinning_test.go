// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

package rdsproxy_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/require"

	"github.com/rdsproxy/rdsproxy"
	"github.com/rdsproxy/rdsproxy/internal/pinning"
	"github.com/rdsproxy/rdsproxy/internal/testdb"
)

func TestAnalyzePinning(t *testing.T) {
	cases := []struct {
		sql     string
		reasons []rdsproxy.PinReason
	}{
		{"SELECT id FROM users WHERE id = $1", nil},
		{"UPDATE accounts SET balance = balance - $1 WHERE id = $2", nil},
		{"SET search_path TO app", []rdsproxy.PinReason{rdsproxy.PinSessionSetting}},
		{"SELECT set_config('app.tenant', $1, true)", []rdsproxy.PinReason{rdsproxy.PinSessionSetting}},
		{"CREATE TEMP TABLE ids (id int)", []rdsproxy.PinReason{rdsproxy.PinTempObject}},
		{"SELECT pg_advisory_lock(1); SELECT nextval('s')", []rdsproxy.PinReason{rdsproxy.PinSequence, rdsproxy.PinAdvisoryLock}},
		{"SELECT pg_advisory_xact_lock(1)", nil},
		{"SELECT '" + strings.Repeat("x", pinning.MaxStatementBytes) + "'", []rdsproxy.PinReason{rdsproxy.PinStatementSize}},
	}
	for _, tc := range cases {
		r, err := rdsproxy.AnalyzePinning(tc.sql)
		require.NoError(t, err, tc.sql)
		require.Equal(t, tc.reasons, r.Reasons, tc.sql)
		require.Equal(t, tc.reasons != nil, r.Pins(), tc.sql)
		for _, f := range r.Findings {
			require.NotEmpty(t, f.Remedy)
			require.NotEmpty(t, f.Statement)
		}
	}

	// The reason constants are the analyzer's ids.
	ids := []rdsproxy.PinReason{rdsproxy.PinSessionSetting, rdsproxy.PinPreparedStatement, rdsproxy.PinDiscard,
		rdsproxy.PinTempObject, rdsproxy.PinCursor, rdsproxy.PinListen, rdsproxy.PinLoad, rdsproxy.PinSequence,
		rdsproxy.PinAdvisoryLock, rdsproxy.PinStatementSize}
	for _, id := range ids {
		require.NotEmpty(t, pinning.Reason(id).Remedy(), id)
	}

	// NUL bytes are unparsable in both builds: the lexical verdict comes with
	// an error wrapping ErrUnparsable.
	r, err := rdsproxy.AnalyzePinning("LISTEN a\x00")
	require.True(t, errors.Is(err, rdsproxy.ErrUnparsable), "got %v", err)
	require.Equal(t, []rdsproxy.PinReason{rdsproxy.PinListen}, r.Reasons)
}

// TestPrefilterClearedStatementsAreNotParsed: statements the prefilter clears
// never reach the parser. Parsing (and the lexical classifier) allocates, so
// zero allocations prove it; the pinning statement is the control that the
// measurement can see a parse.
func TestPrefilterClearedStatementsAreNotParsed(t *testing.T) {
	for _, q := range []string{
		"SELECT id, email, created_at FROM users WHERE id = $1",
		"INSERT INTO orders (note, tenant) VALUES ($1, $2) RETURNING id",
		"SELECT 'SET search_path TO x' AS literal -- LISTEN in a comment",
	} {
		require.Zero(t, testing.AllocsPerRun(100, func() { rdsproxy.AnalyzePinning(q) }), q)
	}
	require.NotZero(t, testing.AllocsPerRun(10, func() { rdsproxy.AnalyzePinning("SET search_path TO x") }))
}

// pinCapture records what the driver logs and the PinEvents it reports. Logs
// are also rendered as JSON, so tests can search the exact output.
type pinCapture struct {
	mu     sync.Mutex
	json   bytes.Buffer
	jh     slog.Handler
	logs   []map[string]string
	events []rdsproxy.PinEvent
}

func newPinCapture() *pinCapture {
	c := &pinCapture{}
	c.jh = slog.NewJSONHandler(&c.json, nil)
	return c
}

func (c *pinCapture) Enabled(context.Context, slog.Level) bool { return true }
func (c *pinCapture) WithAttrs([]slog.Attr) slog.Handler       { return c }
func (c *pinCapture) WithGroup(string) slog.Handler            { return c }
func (c *pinCapture) Handle(ctx context.Context, r slog.Record) error {
	m := map[string]string{"msg": r.Message, "level": r.Level.String()}
	r.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value.String(); return true })
	c.mu.Lock()
	defer c.mu.Unlock()
	c.logs = append(c.logs, m)
	return c.jh.Handle(ctx, r)
}

func (c *pinCapture) event(ev rdsproxy.PinEvent) {
	c.mu.Lock()
	c.events = append(c.events, ev)
	c.mu.Unlock()
}

var barrierSeq atomic.Int64

// sync runs a new, distinct pinning statement and waits for its event.
// Notices are delivered in order on one goroutine, log after handler, so
// once it arrives everything reported before it has been delivered.
func (c *pinCapture) sync(t *testing.T, db *sql.DB) {
	t.Helper()
	name := fmt.Sprintf("barrier_%d", barrierSeq.Add(1))
	_, err := db.Exec("SELECT pg_advisory_unlock_all() AS " + name)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, ev := range c.events {
			if strings.Contains(ev.Fingerprint, name) {
				return true
			}
		}
		return false
	}, 10*time.Second, time.Millisecond)
}

// snapshot returns logs and events without the barriers', and the JSON text.
func (c *pinCapture) snapshot() (logs []map[string]string, events []rdsproxy.PinEvent, text string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range c.logs {
		if !strings.Contains(l["fingerprint"], "barrier_") {
			logs = append(logs, l)
		}
	}
	for _, ev := range c.events {
		if !strings.Contains(ev.Fingerprint, "barrier_") {
			events = append(events, ev)
		}
	}
	return logs, events, c.json.String()
}

func openPinTest(t *testing.T, kv ...string) (*sql.DB, *pinCapture) {
	t.Helper()
	dsn := testdb.Require(t)
	c := newPinCapture()
	db, err := rdsproxy.Open(testdb.WithParams(dsn, append([]string{"application_name", testdb.AppName(t)}, kv...)...),
		rdsproxy.WithLogger(slog.New(c)), rdsproxy.WithPinHandler(c.event))
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return db, c
}

// TestPinCheckWarnsOncePerStatement: a pinning statement run 50 times through
// every path the driver has produces one warning and one event, plus one for
// its named prepare; a statement seen only in a batch is reported as such.
func TestPinCheckWarnsOncePerStatement(t *testing.T) {
	db, c := openPinTest(t)
	ctx := context.Background()
	const set = "SET search_path TO public"

	for range 50 {
		_, err := db.Exec(set)
		require.NoError(t, err)
	}
	for range 5 {
		rows, err := db.Query(set)
		require.NoError(t, err)
		require.NoError(t, rows.Close())
	}
	tx, err := db.Begin()
	require.NoError(t, err)
	for range 3 {
		_, err = tx.Exec(set)
		require.NoError(t, err)
	}
	require.NoError(t, tx.Commit())

	conn, err := db.Conn(ctx)
	require.NoError(t, err)
	require.NoError(t, conn.Raw(func(dc any) error {
		b := &pgx.Batch{}
		b.Queue(set)
		b.Queue(set)
		b.Queue("SELECT pg_advisory_unlock_all() AS batch_only")
		b.Queue("SELECT 1")
		return dc.(*stdlib.Conn).Conn().SendBatch(ctx, b).Close()
	}))
	require.NoError(t, conn.Close())

	for range 3 {
		st, err := db.Prepare(set)
		require.NoError(t, err)
		_, err = st.Exec()
		require.NoError(t, err)
		require.NoError(t, st.Close())
	}

	c.sync(t, db)
	logs, events, _ := c.snapshot()
	require.Len(t, events, 3, "events: %+v", events)
	require.Len(t, logs, 3, "logs: %v", logs)

	require.Equal(t, "SET search_path TO ?", events[0].Fingerprint)
	require.Equal(t, "query", events[0].Kind)
	require.Equal(t, []rdsproxy.PinReason{rdsproxy.PinSessionSetting}, events[0].Reasons)

	require.Equal(t, "batch", events[1].Kind)
	require.Equal(t, "SELECT pg_advisory_unlock_all() AS batch_only", events[1].Fingerprint)
	require.Equal(t, []rdsproxy.PinReason{rdsproxy.PinAdvisoryLock}, events[1].Reasons)

	require.Equal(t, "prepare", events[2].Kind)
	require.Equal(t, []rdsproxy.PinReason{rdsproxy.PinSessionSetting, rdsproxy.PinPreparedStatement}, events[2].Reasons)

	w := logs[0]
	require.Equal(t, "rdsproxy: statement pins the RDS Proxy session", w["msg"])
	require.Equal(t, "WARN", w["level"])
	require.Equal(t, "session_setting", w["reason"])
	require.Contains(t, w["remedy"], "startup parameters")
	require.Contains(t, w["remedy"], "InitQuery")
	require.Equal(t, "SET search_path TO ?", w["fingerprint"])
	require.Equal(t, events[0].FingerprintHash, w["fingerprint_hash"])
	require.Equal(t, "query", w["kind"])
	require.Equal(t, "session_setting,prepared_statement", logs[2]["reason"])
	require.Contains(t, logs[2]["remedy"], "db.Prepare")
	ensureDBValid(t, db)
}

// TestPinCheckNeverLogsValues: neither bind parameters nor literals reach the
// log or the events.
func TestPinCheckNeverLogsValues(t *testing.T) {
	db, c := openPinTest(t)
	for range 3 {
		_, err := db.Exec("SELECT set_config('app.tenant', $1, false)", "tenant-SECRET-42")
		require.NoError(t, err)
		_, err = db.Exec("SET application_name = '" + testdb.AppNamePrefix + "_lit-SECRET'")
		require.NoError(t, err)
	}
	c.sync(t, db)
	logs, events, text := c.snapshot()
	require.Len(t, events, 2)
	require.Len(t, logs, 2)
	require.Equal(t, "SELECT set_config(?, $1, false)", events[0].Fingerprint)
	require.Equal(t, "SET application_name = ?", events[1].Fingerprint)
	require.Contains(t, text, "set_config", "the JSON log is captured")
	require.NotContains(t, text, "SECRET")
	require.NotContains(t, fmt.Sprintf("%+v", events), "SECRET")
}

// TestPinCheckCleanWorkload: ordinary statements produce nothing.
func TestPinCheckCleanWorkload(t *testing.T) {
	db, c := openPinTest(t)
	table := fmt.Sprintf("pin_clean_%d", time.Now().UnixNano())
	for _, q := range []string{
		"CREATE TABLE " + table + " (id int PRIMARY KEY, note text, n int NOT NULL DEFAULT 0)",
		"INSERT INTO " + table + " (id, note) VALUES (1, 'a'), (2, 'b')",
		"UPDATE " + table + " SET note = 'c', n = n + 1 WHERE id = 1",
		"INSERT INTO " + table + " (id, note) VALUES (2, 'x') ON CONFLICT (id) DO UPDATE SET note = excluded.note",
		"SELECT pg_advisory_xact_lock(1)",
	} {
		_, err := db.Exec(q)
		require.NoError(t, err, q)
	}
	tx, err := db.Begin()
	require.NoError(t, err)
	_, err = tx.Exec("UPDATE "+table+" SET n = n + $1 WHERE id = $2", 5, 2)
	require.NoError(t, err)
	var n int
	require.NoError(t, tx.QueryRow("SELECT n FROM "+table+" WHERE id = $1", 2).Scan(&n))
	require.Equal(t, 5, n)
	require.NoError(t, tx.Commit())
	_, err = db.Exec("DROP TABLE " + table)
	require.NoError(t, err)

	c.sync(t, db)
	logs, events, _ := c.snapshot()
	require.Empty(t, events)
	require.Empty(t, logs)
}

// TestPinCheckOff: pin_check=off reports nothing, even with a handler.
func TestPinCheckOff(t *testing.T) {
	db, c := openPinTest(t, "pin_check", "off")
	for range 3 {
		_, err := db.Exec("SET search_path TO public")
		require.NoError(t, err)
		_, err = db.Exec("SELECT pg_advisory_unlock_all()")
		require.NoError(t, err)
	}
	st, err := db.Prepare("SELECT 1")
	require.NoError(t, err)
	require.NoError(t, st.Close())
	// With the check off there is no checker and nothing is delivered later.
	c.mu.Lock()
	defer c.mu.Unlock()
	require.Empty(t, c.events)
	require.Empty(t, c.logs)
}

// TestPinCheckWithUserTracer: the check still runs when the caller chains a
// tracer of its own, and the caller's tracer still sees every statement.
func TestPinCheckWithUserTracer(t *testing.T) {
	dsn := testdb.Require(t)
	c := newPinCapture()
	var seen atomic.Int64
	db, err := rdsproxy.Open(testdb.WithParams(dsn, "application_name", testdb.AppName(t)),
		rdsproxy.WithLogger(slog.New(c)), rdsproxy.WithPinHandler(c.event),
		rdsproxy.WithTracer(countingTracer{&seen}))
	require.NoError(t, err)
	defer db.Close()
	_, err = db.Exec("LISTEN some_channel")
	require.NoError(t, err)
	c.sync(t, db)
	_, events, _ := c.snapshot()
	require.Len(t, events, 1)
	require.Equal(t, []rdsproxy.PinReason{rdsproxy.PinListen}, events[0].Reasons)
	require.GreaterOrEqual(t, seen.Load(), int64(2))
}

type countingTracer struct{ n *atomic.Int64 }

func (c countingTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.n.Add(1)
	return ctx
}
func (countingTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func TestWithPinHandlerNil(t *testing.T) {
	_, err := rdsproxy.NewConnector("postgres://u@127.0.0.1:1/db?sslmode=disable", rdsproxy.WithPinHandler(nil))
	require.ErrorIs(t, err, rdsproxy.ErrConfig)
}
