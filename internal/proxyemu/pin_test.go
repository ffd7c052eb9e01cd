package proxyemu

import (
	"context"
	"crypto/tls"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rdsproxy/rdsproxy/internal/pinning"
	"github.com/rdsproxy/rdsproxy/internal/testdb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pgxConnect opens a pgx connection through p with the given
// application_name and query exec mode.
func pgxConnect(t *testing.T, p *Proxy, app string, mode pgx.QueryExecMode) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=127.0.0.1 port=%d user=postgres database=postgres sslmode=disable connect_timeout=10 application_name=%s",
		p.Port(), app))
	require.NoError(t, err)
	cfg.TLSConfig = &tls.Config{RootCAs: p.CACertPool(), ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	cfg.Password = token(t, p.Addr(), region, "postgres", staticCreds)
	cfg.DefaultQueryExecMode = mode
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := pgx.ConnectConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

func exec(t *testing.T, c *pgx.Conn, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := c.Exec(ctx, sql, args...)
	require.NoError(t, err, sql)
}

// pinnedReason returns the first reason the session with application_name
// app was pinned for, "" if it is not pinned.
func pinnedReason(p *Proxy, app string) pinning.Reason {
	for _, s := range p.PinnedSessions() {
		if s.ApplicationName == app {
			return s.Reason
		}
	}
	return ""
}

// Each statement runs on a fresh session; the table says whether it pins and
// for which first reason.
func TestPinningStatements(t *testing.T) {
	testdb.Require(t)
	p, _ := startProxy(t)
	big := "SELECT '" + strings.Repeat("x", pinning.MaxStatementBytes) + "'"
	exact := "SELECT '" + strings.Repeat("x", pinning.MaxStatementBytes-len("SELECT ''")) + "'"
	require.Len(t, exact, pinning.MaxStatementBytes)

	cases := []struct {
		name   string
		mode   pgx.QueryExecMode
		sql    string
		args   []any
		reason pinning.Reason // "" = does not pin
	}{
		{"SET", pgx.QueryExecModeSimpleProtocol, "SET application_name = 'other'", nil, pinning.ReasonSessionSetting},
		{"RESET", pgx.QueryExecModeSimpleProtocol, "RESET search_path", nil, pinning.ReasonSessionSetting},
		{"set_config simple", pgx.QueryExecModeSimpleProtocol, "SELECT set_config('proxyemu.x', '1', false)", nil, pinning.ReasonSessionSetting},
		// Unnamed Parse, Bind, Execute: the text pins when it runs.
		{"set_config extended", pgx.QueryExecModeExec, "SELECT set_config($1, $2, true)", []any{"proxyemu.x", "1"}, pinning.ReasonSessionSetting},
		{"describe_exec", pgx.QueryExecModeDescribeExec, "SELECT set_config($1, $2, false)", []any{"proxyemu.x", "1"}, pinning.ReasonSessionSetting},
		{"advisory lock", pgx.QueryExecModeExec, "SELECT pg_advisory_lock($1)", []any{int64(7707)}, pinning.ReasonAdvisoryLock},
		{"temp table", pgx.QueryExecModeSimpleProtocol, "CREATE TEMP TABLE proxyemu_t (n int)", nil, pinning.ReasonTempObject},
		{"statement over 16384 bytes", pgx.QueryExecModeSimpleProtocol, big, nil, pinning.ReasonStatementSize},
		{"statement over 16384 bytes, extended", pgx.QueryExecModeExec, big + " WHERE $1::int = 1", []any{1}, pinning.ReasonStatementSize},
		{"pgx default mode: named statement", pgx.QueryExecModeCacheStatement, "SELECT $1::int", []any{1}, PinReasonNamedPrepare},

		{"plain SELECT", pgx.QueryExecModeSimpleProtocol, "SELECT 1", nil, ""},
		{"plain SELECT, extended", pgx.QueryExecModeExec, "SELECT $1::int", []any{1}, ""},
		{"cache_describe", pgx.QueryExecModeCacheDescribe, "SELECT $1::int", []any{1}, ""},
		{"xact advisory lock", pgx.QueryExecModeSimpleProtocol, "SELECT pg_advisory_xact_lock(7707)", nil, ""},
		{"statement of exactly 16384 bytes", pgx.QueryExecModeSimpleProtocol, exact, nil, ""},
		{"SET inside a literal", pgx.QueryExecModeSimpleProtocol, "SELECT 'SET x = 1'", nil, ""},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			app := fmt.Sprintf("pin-%d", i)
			c := pgxConnect(t, p, app, tc.mode)
			exec(t, c, tc.sql, tc.args...)
			assert.Equal(t, tc.reason, pinnedReason(p, app))
			if tc.reason == pinning.ReasonAdvisoryLock {
				exec(t, c, "SELECT pg_advisory_unlock_all()")
			}
			require.NoError(t, c.Close(context.Background()))
			require.Eventually(t, func() bool { return p.PinnedNow() == 0 }, 10*time.Second, 5*time.Millisecond,
				"a pinned session unpins only when the client closes")
		})
	}
	pinningCases := 0
	for _, tc := range cases {
		if tc.reason != "" {
			pinningCases++
		}
	}
	assert.EqualValues(t, pinningCases, p.PinnedTotal())
}

// A session pinned inside a transaction stays pinned after COMMIT, keeps its
// first reason, and leaves PinnedNow only when the client disconnects.
func TestPinnedUntilClientCloses(t *testing.T) {
	testdb.Require(t)
	p, _ := startProxy(t)
	ctx := context.Background()
	a := pgxConnect(t, p, "pin-a", pgx.QueryExecModeSimpleProtocol)
	b := pgxConnect(t, p, "pin-b", pgx.QueryExecModeSimpleProtocol)

	exec(t, a, "BEGIN")
	exec(t, a, "SET LOCAL statement_timeout = '5s'")
	exec(t, a, "COMMIT")
	exec(t, a, "SELECT 1")
	exec(t, a, "CREATE TEMP TABLE proxyemu_first (n int)") // a second reason is not recorded
	assert.Equal(t, 1, p.PinnedNow())
	assert.EqualValues(t, 1, p.PinnedTotal())

	exec(t, b, "SELECT 1")
	assert.Equal(t, 1, p.PinnedNow(), "an unpinned session is not counted")
	exec(t, b, "LISTEN proxyemu_channel")
	assert.Equal(t, 2, p.PinnedNow())
	assert.EqualValues(t, 2, p.PinnedTotal())

	var pidA uint32
	require.NoError(t, a.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pidA))
	got := p.PinnedSessions()
	require.Len(t, got, 2)
	assert.Equal(t, "pin-a", got[0].ApplicationName, "sorted by ID: a connected first")
	assert.Equal(t, pinning.ReasonSessionSetting, got[0].Reason, "the first reason is kept")
	assert.Equal(t, "SET LOCAL statement_timeout = ?", got[0].Statement, "a fingerprint: no literal values")
	assert.Equal(t, pidA, got[0].BackendPID)
	assert.Less(t, got[0].ID, got[1].ID)
	assert.Equal(t, "pin-b", got[1].ApplicationName)
	assert.Equal(t, pinning.ReasonListen, got[1].Reason)

	require.NoError(t, a.Close(ctx))
	require.Eventually(t, func() bool { return p.PinnedNow() == 1 }, 10*time.Second, 5*time.Millisecond)
	assert.Equal(t, "pin-b", p.PinnedSessions()[0].ApplicationName)
	assert.EqualValues(t, 2, p.PinnedTotal(), "the total never falls")
}

// The extended protocol pins when a pinning statement runs, not when it is
// only parsed and described.
func TestPinningAtExecute(t *testing.T) {
	testdb.Require(t)
	p, _ := startProxy(t)
	c, err := connect(t, p, "postgres", token(t, p.Addr(), region, "postgres", staticCreds))
	require.NoError(t, err)
	ctx := context.Background()

	_, err = c.Prepare(ctx, "", "SELECT set_config('proxyemu.x', $1, false)", nil)
	require.NoError(t, err)
	assert.Equal(t, 0, p.PinnedNow(), "parsed and described only")

	// Bind + Execute of the unnamed statement parsed above (no new Parse).
	res := c.ExecPrepared(ctx, "", [][]byte{[]byte("1")}, nil, nil).Read()
	require.NoError(t, res.Err)
	assert.Equal(t, 1, p.PinnedNow(), "the statement ran")
	assert.Equal(t, pinning.ReasonSessionSetting, p.PinnedSessions()[0].Reason)
}

// A later Parse replaces the unnamed statement, and a simple Query destroys
// it: executing the unnamed statement afterwards does not inherit the old
// pinning verdict.
func TestPinningUnnamedStatementReplaced(t *testing.T) {
	testdb.Require(t)
	p, _ := startProxy(t)
	c, err := connect(t, p, "postgres", token(t, p.Addr(), region, "postgres", staticCreds))
	require.NoError(t, err)
	ctx := context.Background()
	const pinningText = "SELECT set_config('proxyemu.x', $1, false)"

	_, err = c.Prepare(ctx, "", pinningText, nil)
	require.NoError(t, err)
	_, err = c.Prepare(ctx, "", "SELECT $1::text", nil) // replaces the unnamed statement
	require.NoError(t, err)
	res := c.ExecPrepared(ctx, "", [][]byte{[]byte("1")}, nil, nil).Read()
	require.NoError(t, res.Err)
	assert.Equal(t, 0, p.PinnedNow(), "replaced by Parse")

	_, err = c.Prepare(ctx, "", pinningText, nil)
	require.NoError(t, err)
	require.NoError(t, selectOne(t, c))
	res = c.ExecPrepared(ctx, "", [][]byte{[]byte("1")}, nil, nil).Read()
	assert.Equal(t, "26000", pgErr(t, res.Err).Code, "the backend has no unnamed statement either")
	assert.Equal(t, 0, p.PinnedNow(), "destroyed by Query")
}

func TestNamedPrepareDoesNotPin(t *testing.T) {
	testdb.Require(t)
	p, _ := startProxy(t, func(c *Config) { c.NamedPrepareDoesNotPin = true })
	c := pgxConnect(t, p, "named-off", pgx.QueryExecModeCacheStatement)
	exec(t, c, "SELECT $1::int", 1)
	exec(t, c, "SELECT $1::int", 2) // cached statement: Bind + Execute only
	assert.Equal(t, 0, p.PinnedNow())

	// A named statement whose text pins pins when it runs.
	exec(t, c, "SELECT set_config($1, $2, false)", "proxyemu.x", "1")
	assert.Equal(t, pinning.ReasonSessionSetting, pinnedReason(p, "named-off"))
}

// Fault hooks: a request refused with the borrow timeout never reaches the
// backend and does not pin; sessions closed by DropIdleClients or Stop leave
// PinnedNow.
func TestPinningWithFaults(t *testing.T) {
	testdb.Require(t)
	p, _ := startProxy(t)
	a := pgxConnect(t, p, "fault-a", pgx.QueryExecModeSimpleProtocol)
	b := pgxConnect(t, p, "fault-b", pgx.QueryExecModeSimpleProtocol)

	p.SetBorrowTimeout(true)
	_, err := a.Exec(context.Background(), "SET statement_timeout = 1000")
	assert.Equal(t, MsgBorrowTimeout, pgErr(t, err).Message)
	assert.Equal(t, 0, p.PinnedNow(), "a refused SET does not pin")
	p.SetBorrowTimeout(false)

	exec(t, a, "SET statement_timeout = 1000")
	exec(t, b, "SET work_mem = '8MB'")
	assert.Equal(t, 2, p.PinnedNow())
	assert.Equal(t, 2, p.DropIdleClients())
	require.Eventually(t, func() bool { return p.PinnedNow() == 0 }, 10*time.Second, 5*time.Millisecond)
	assert.EqualValues(t, 2, p.PinnedTotal())
}

// Message sequences a client library may send, checked against the tracker
// alone (pgx cannot be made to send some of them).
func TestPinTrackerSequences(t *testing.T) {
	const pins, plain = "SELECT set_config('a.b', $1, false)", "SELECT $1::int"
	parse := func(name, sql string) []byte { return append(append(append([]byte(name), 0), sql...), 0, 0, 0) }
	bind := func(portal, stmt string) []byte {
		return append(append(append(append([]byte(portal), 0), stmt...), 0), 0, 0, 0, 0, 0, 0)
	}
	execute := func(portal string) []byte { return append(append([]byte(portal), 0), 0, 0, 0, 0) }
	closeMsg := func(kind byte, name string) []byte { return append(append([]byte{kind}, name...), 0) }
	type msg struct {
		typ  byte
		body []byte
	}
	cases := []struct {
		name string
		msgs []msg
		want pinning.Reason // of the last message; earlier ones must not pin
	}{
		{"unnamed portal rebound from a plain statement",
			[]msg{{'P', parse("", pins)}, {'B', bind("", "")}, {'P', parse("", plain)}, {'B', bind("", "")}, {'E', execute("")}}, ""},
		{"named portal executed",
			[]msg{{'P', parse("", pins)}, {'B', bind("p1", "")}, {'B', bind("", "")}, {'P', parse("", plain)}, {'E', execute("p1")}}, pinning.ReasonSessionSetting},
		{"named portal closed",
			[]msg{{'P', parse("", pins)}, {'B', bind("p1", "")}, {'C', closeMsg('P', "p1")}, {'E', execute("p1")}}, ""},
		{"named statement closed",
			[]msg{{'P', parse("s1", pins)}, {'C', closeMsg('S', "s1")}, {'B', bind("", "s1")}, {'E', execute("")}}, ""},
		{"named statement bound later",
			[]msg{{'P', parse("s1", pins)}, {'P', parse("", plain)}, {'B', bind("", "s1")}, {'E', execute("")}}, pinning.ReasonSessionSetting},
		{"query destroys the unnamed portal",
			[]msg{{'P', parse("", pins)}, {'B', bind("", "")}, {'Q', []byte("SELECT 1\x00")}, {'E', execute("")}}, ""},
		{"malformed messages", []msg{{'P', nil}, {'B', []byte("x")}, {'C', nil}, {'E', nil}}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr := pinTracker{namedPrepareDoesNotPin: true}
			for i, m := range tc.msgs {
				v := tr.inspect(m.typ, m.body)
				if i < len(tc.msgs)-1 {
					require.False(t, v.pins(), "message %d (%c) pinned", i, m.typ)
				} else {
					assert.Equal(t, tc.want, v.reason)
				}
			}
		})
	}
}

// Benchmarks the inspection alone, per client message, for an unpinned session.
func BenchmarkPinTrackerInspect(b *testing.B) {
	query := func(sql string) []byte { return append([]byte(sql), 0) }
	parse := func(name, sql string) []byte {
		return append(append(append([]byte(name), 0), sql...), 0, 0, 0)
	}
	for _, bc := range []struct {
		name string
		typ  byte
		body []byte
	}{
		{"query-select1", 'Q', query("SELECT 1")},
		{"query-join", 'Q', query(benchJoin)},
		{"parse-join", 'P', parse("", benchJoin)},
		{"bind", 'B', []byte{0, 0, 0, 0, 0, 0, 0, 0}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var t pinTracker
			for b.Loop() {
				if t.inspect(bc.typ, bc.body).pins() {
					b.Fatal("pins")
				}
			}
		})
	}
}
