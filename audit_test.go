// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

package rdsproxy_test

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rdsproxy/rdsproxy"
	"github.com/rdsproxy/rdsproxy/internal/testdb"
)

// auditSchema creates a schema with functions that leave session state
// behind where the pinning check cannot see it, and drops it afterwards.
func auditSchema(t *testing.T) string {
	t.Helper()
	admin := testdb.Admin(t)
	ctx := context.Background()
	schema := testdb.Prefix() + "_audit"
	_, err := admin.Exec(ctx, `DROP SCHEMA IF EXISTS `+schema+` CASCADE; CREATE SCHEMA `+schema+`;
CREATE FUNCTION `+schema+`.set_work_mem() RETURNS text LANGUAGE plpgsql AS $$ BEGIN RETURN set_config('work_mem', '1MB', false); END $$;
CREATE PROCEDURE `+schema+`.take_lock() LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_advisory_lock(4242); END $$;
CREATE FUNCTION `+schema+`.listen_events() RETURNS void LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'LISTEN audit_events'; END $$;`)
	require.NoError(t, err)
	t.Cleanup(func() { admin.Exec(context.Background(), `DROP SCHEMA IF EXISTS `+schema+` CASCADE`) })
	return schema
}

// TestSessionAudit: state left by functions, procedures and DO blocks is
// found at the connection's next reuse, named with its suspects, and the
// connection is retired; clean requests are not reported; the audit itself
// pins nothing in the emulator.
func TestSessionAudit(t *testing.T) {
	schema := auditSchema(t)
	events := make(chan rdsproxy.PinEvent, 16)
	handler := func(ev rdsproxy.PinEvent) {
		if ev.Kind == rdsproxy.PinKindAudit {
			events <- ev
		}
	}
	// One connection, so the next request reuses the one the last one ran on.
	p, db, _ := openPinMode(t, "session_audit=on&pin_check=warn&pool_max_conns=1",
		rdsproxy.WithPinHandler(handler), rdsproxy.WithLogger(slog.New(slog.DiscardHandler)))
	ctx := context.Background()
	request := func(stmts ...string) {
		t.Helper()
		conn, err := db.Conn(ctx)
		require.NoError(t, err)
		for _, s := range stmts {
			_, err := conn.ExecContext(ctx, s)
			require.NoError(t, err, s)
		}
		require.NoError(t, conn.Close())
	}
	reuse := func() {
		t.Helper()
		var one int
		require.NoError(t, db.QueryRowContext(ctx, "SELECT 1").Scan(&one))
	}
	noEvent := func(what string) {
		t.Helper()
		// The handler runs on the checker's delivery goroutine; a finding is
		// queued before the reuse returns, so after a further reuse (which
		// waits for nothing) an empty channel is a clean audit.
		select {
		case ev := <-events:
			t.Fatalf("%s: unexpected audit finding %v (suspects %v)", what, ev.Leftovers, ev.Suspects)
		case <-time.After(50 * time.Millisecond):
		}
	}
	expect := func(left, suspect string) {
		t.Helper()
		select {
		case ev := <-events:
			require.Contains(t, ev.Leftovers, left)
			require.True(t, slices.ContainsFunc(ev.Suspects, func(s string) bool { return s == suspect }), "suspects %v", ev.Suspects)
			require.NotEmpty(t, ev.Findings)
		case <-time.After(10 * time.Second):
			t.Fatalf("no audit finding for %s", left)
		}
	}
	authsBefore := func() int64 { return p.Authentications() }

	// Not found: a plain SELECT, and a SET LOCAL in a transaction that ended.
	request("SELECT 42")
	reuse()
	noEvent("plain SELECT")
	reuse()
	require.Zero(t, p.PinnedTotal(), "the audit query pinned the session: %v", p.PinnedSessions())
	var prepared int
	require.NoError(t, db.QueryRowContext(ctx, "SELECT count(*) FROM pg_prepared_statements").Scan(&prepared))
	require.Zero(t, prepared, "the audit left a prepared statement")
	tx, err := db.BeginTx(ctx, nil)
	require.NoError(t, err)
	_, err = tx.ExecContext(ctx, "SET LOCAL work_mem = '2MB'")
	require.NoError(t, err)
	require.NoError(t, tx.Commit())
	reuse()
	noEvent("SET LOCAL in an ended transaction")
	require.EqualValues(t, 1, authsBefore(), "a clean audit retired the connection")
	t.Logf("after SET LOCAL: %v", p.PinnedSessions())

	// Found, each on its own connection, which is retired.
	cases := []struct{ stmt, left, suspect string }{
		{"SELECT " + schema + ".set_work_mem()", "setting work_mem", "SELECT " + schema + ".set_work_mem()"},
		{"CALL " + schema + ".take_lock()", "advisory_lock", "CALL " + schema + ".take_lock()"},
		{"DO $$ BEGIN CREATE TEMP TABLE audit_scratch (x int); END $$", "temp_relation audit_scratch", "DO ?"},
		{"SELECT " + schema + ".listen_events()", "listen audit_events", "SELECT " + schema + ".listen_events()"},
	}
	for _, c := range cases {
		n := authsBefore()
		request(c.stmt)
		reuse()
		expect(c.left, c.suspect)
		require.Equal(t, n+1, authsBefore(), "%s: the connection was not retired", c.left)
	}

	// The same cause again: retired again, reported once.
	n := authsBefore()
	request(cases[0].stmt)
	reuse()
	noEvent("a cause already reported")
	require.Equal(t, n+1, authsBefore(), "the connection was not retired")
}
