package pinning

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// statementOfBytes returns SELECT '...' padded to exactly n bytes.
func statementOfBytes(n int) string {
	const head, tail = "SELECT '", "'"
	return head + strings.Repeat("a", n-len(head)-len(tail)) + tail
}

func TestStatementSize(t *testing.T) {
	multi := "SELECT '" + strings.Repeat("é", 8200) + "'" // 8209 characters, 16409 bytes
	require.Less(t, utf8.RuneCountInString(multi), MaxStatementBytes)
	require.Greater(t, len(multi), MaxStatementBytes)
	cases := []struct {
		name string
		sql  string
		pins bool
	}{
		{"16000 bytes", statementOfBytes(16000), false},
		{"16384 bytes", statementOfBytes(MaxStatementBytes), false},
		{"16385 bytes", statementOfBytes(MaxStatementBytes + 1), true},
		{"multi-byte, bytes over the limit", multi, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for name, analyze := range analyzers() {
				rep, err := analyze(tc.sql)
				require.NoError(t, err, name)
				require.Equal(t, tc.pins, rep.Pins(), name)
				if tc.pins {
					require.Equal(t, []Reason{ReasonStatementSize}, rep.Reasons(), name)
					f := rep.Findings[0]
					require.LessOrEqual(t, len(f.Statement), maxFindingStatementBytes+len("..."), name)
					require.True(t, utf8.ValidString(f.Statement), name)
				}
			}
		})
	}
	// Over the limit, the size is the verdict: the text is not classified.
	big := "SET search_path = app; " + statementOfBytes(MaxStatementBytes)
	rep, err := Analyze(big)
	require.NoError(t, err)
	require.Equal(t, []Reason{ReasonStatementSize}, rep.Reasons())
	require.Equal(t, "SET search_path = app; SELECT 'aaa", rep.Findings[0].Statement[:34])
	require.True(t, strings.HasSuffix(rep.Findings[0].Statement, "..."))
}

// analyzers returns Analyze and the lexical classifier alone, so that every
// table test checks both back-ends in one run.
func analyzers() map[string]func(string) (Report, error) {
	return map[string]func(string) (Report, error){
		"Analyze": Analyze,
		"lexical": func(s string) (Report, error) { return analyzeLexical(s), nil },
	}
}

// TestEdgeCases holds statements beyond the corpus; both back-ends must agree
// with the expected reasons.
func TestEdgeCases(t *testing.T) {
	cases := []struct {
		sql  string
		want []Reason
	}{
		// Session settings.
		{"RESET ALL", []Reason{ReasonSessionSetting}},
		{"SET TIME ZONE 'UTC'", []Reason{ReasonSessionSetting}},
		{"SET NAMES 'UTF8'", []Reason{ReasonSessionSetting}},
		{"RESET SESSION AUTHORIZATION", []Reason{ReasonSessionSetting}},
		{"  /* c */ SET x.y = 1", []Reason{ReasonSessionSetting}},
		{`SELECT "set_config"('a.b', 'x', true)`, []Reason{ReasonSessionSetting}},
		{`SELECT "SET_CONFIG"('a.b', 'x', true)`, nil}, // a different (undefined) function
		{"SELECT ſet_config('a.b', 'x', true)", nil},   // PostgreSQL folds ASCII only
		{"ALTER FUNCTION f() SET search_path = app", nil},
		{"ALTER SYSTEM SET work_mem = '64MB'", nil},
		{"SHOW ALL", nil},
		// Prepared statements.
		{"EXECUTE get_user(1)", []Reason{ReasonPreparedStatement}},
		{"DEALLOCATE get_user", []Reason{ReasonPreparedStatement}},
		{"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE p(1)", []Reason{ReasonPreparedStatement}},
		{"CREATE TABLE x AS EXECUTE p(1)", []Reason{ReasonPreparedStatement}},
		{"PREPARE TRANSACTION 'gid1'", nil},
		{"COMMIT PREPARED 'gid1'", nil},
		{"GRANT EXECUTE ON FUNCTION nextval(regclass) TO PUBLIC", nil},
		{"CREATE TRIGGER tr AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION setval()", nil},
		{"PREPARE p AS SELECT nextval('s')", []Reason{ReasonPreparedStatement, ReasonSequence}},
		// Temporary objects.
		{"CREATE LOCAL TEMP TABLE x (i int)", []Reason{ReasonTempObject}},
		{"CREATE TEMP TABLE x AS SELECT 1", []Reason{ReasonTempObject}},
		{"CREATE TABLE IF NOT EXISTS pg_temp.x (i int)", []Reason{ReasonTempObject}},
		{`CREATE TABLE "pg_temp".x (i int)`, []Reason{ReasonTempObject}},
		{`CREATE TABLE "PG_TEMP".x (i int)`, nil},
		{"CREATE TABLE pg_temp_x (i int)", nil},
		{"CREATE SEQUENCE pg_temp.s", []Reason{ReasonTempObject}},
		{"CREATE OR REPLACE TEMP VIEW v AS SELECT 1", []Reason{ReasonTempObject}},
		{"CREATE OR REPLACE RECURSIVE VIEW v (n) AS SELECT 1", []Reason{ReasonTempObject}},
		{"CREATE MATERIALIZED VIEW mv AS SELECT 1", nil},
		{"WITH a AS (SELECT 1) SELECT * INTO TEMP x FROM a", []Reason{ReasonTempObject}},
		{"SELECT * INTO pg_temp.x FROM t", []Reason{ReasonTempObject}},
		{"SELECT * INTO temp FROM t", nil}, // a table called temp
		{"SELECT * INTO x FROM t", nil},
		{"INSERT INTO temp VALUES (1)", nil},
		{"CREATE UNLOGGED TABLE temp (i int)", nil},
		{"EXPLAIN CREATE TEMP TABLE x AS SELECT 1", []Reason{ReasonTempObject}},
		// Cursors, LISTEN, LOAD, DISCARD.
		{"DECLARE c SCROLL CURSOR FOR SELECT 1", []Reason{ReasonCursor}},
		{"EXPLAIN DECLARE c CURSOR FOR SELECT 1", []Reason{ReasonCursor}},
		{"LOAD '$libdir/plugins/auto_explain'", []Reason{ReasonLoad}},
		{"discard temp", []Reason{ReasonDiscard}},
		{"NOTIFY ch", nil},
		// Sequences and advisory locks.
		{"SELECT x.y.nextval('s')", []Reason{ReasonSequence}},
		{"SELECT * FROM t JOIN u ON nextval('s') > 0", []Reason{ReasonSequence}},
		{"CREATE TABLE t2 (id bigint DEFAULT nextval('s'))", []Reason{ReasonSequence}},
		{"ALTER TABLE t ALTER COLUMN id SET DEFAULT nextval('s')", []Reason{ReasonSequence}},
		{"COPY (SELECT nextval('s')) TO STDOUT", []Reason{ReasonSequence}},
		{"SELECT nextval FROM t", nil},
		{"CREATE TABLE nextval (id int)", nil},
		{"INSERT INTO setval (a) VALUES (1)", nil},
		{"SELECT * FROM generate_series(1, 2) AS nextval(n)", nil},
		{"DROP FUNCTION a(int), nextval(regclass)", nil},
		{"ANALYZE setval (a)", nil},
		{"SELECT currval('s'), lastval()", nil},
		{"SELECT pg_advisory_xact_lock(1), pg_advisory_xact_lock_shared(1)", nil},
		{"SELECT pg_advisory_lock_shared(1)", []Reason{ReasonAdvisoryLock}},
		{"SELECT pg_try_advisory_lock(1)", []Reason{ReasonAdvisoryLock}},
		// Lexical traps.
		{`SELECT E'\'; SET x = 1; '`, nil},
		{`SELECT 'a\'; SET x = 1; --'`, []Reason{ReasonSessionSetting}}, // standard_conforming_strings: \ is not an escape
		{`SELECT U&'\0041'; LISTEN x`, []Reason{ReasonListen}},
		{`SELECT $tag$ $$ LISTEN x; $$ $tag$`, nil},
		{`SELECT $1, $2; LISTEN x`, []Reason{ReasonListen}},
		{`SELECT a$b FROM t; LISTEN x`, []Reason{ReasonListen}},
		{"SELECT 1::int; LISTEN x", []Reason{ReasonListen}},
		{"SELECT 1 -- ; LISTEN x", nil},
		{"SELECT 1 /* /* */ ; LISTEN x */", nil},
		{"DO LANGUAGE plpgsql $$ BEGIN PERFORM nextval('s'); END $$", nil},
		{"CREATE FUNCTION f() RETURNS bigint LANGUAGE sql BEGIN ATOMIC SELECT nextval('s'); SELECT 2; END; SELECT 3", nil},
		{"CREATE FUNCTION f() RETURNS bigint LANGUAGE sql BEGIN ATOMIC SELECT 1; END; LISTEN x", []Reason{ReasonListen}},
		{"CREATE PROCEDURE p() LANGUAGE sql AS $$ SELECT 1 $$ ; DISCARD ALL", []Reason{ReasonDiscard}},
		{"CREATE RULE r AS ON INSERT TO t DO ALSO (SELECT nextval('s'); NOTIFY x)", nil},
		{"(SELECT 1); SET x = 1", []Reason{ReasonSessionSetting}},
	}
	for _, tc := range cases {
		for name, analyze := range analyzers() {
			rep, err := analyze(tc.sql)
			require.NoError(t, err, "%s: %q", name, tc.sql)
			require.Equal(t, tc.want, rep.Reasons(), "%s: %q", name, tc.sql)
		}
	}
}

func TestAnalyzeErrors(t *testing.T) {
	// Invalid SQL: the lexical verdict comes back, with an error only when a
	// parser was there to fail.
	sql := "SELEC 1; SET search_path = app; " + strings.Repeat("x", 1000)
	rep, err := Analyze(sql)
	require.Equal(t, []Reason{ReasonSessionSetting}, rep.Reasons())
	if parserAvailable {
		require.ErrorIs(t, err, ErrUnparsable)
		require.Less(t, len(err.Error()), 300, "the error must not echo huge SQL")
	} else {
		require.NoError(t, err)
	}

	// A NUL byte cannot be sent to PostgreSQL; both builds say so.
	rep, err = Analyze("SELECT 1\x00; LISTEN x")
	require.ErrorIs(t, err, ErrUnparsable)
	require.Equal(t, []Reason{ReasonListen}, rep.Reasons())

	// Clean statements never reach the parser, valid or not.
	rep, err = Analyze("SELEC 1")
	require.NoError(t, err)
	require.False(t, rep.Pins())
	require.True(t, errors.Is(unparsable("x"), ErrUnparsable))
}

func TestReport(t *testing.T) {
	rep, err := Analyze("SELECT pg_advisory_lock(1); SET a.b = 1; SELECT pg_advisory_unlock(1)")
	require.NoError(t, err)
	require.True(t, rep.Pins())
	require.Equal(t, []Reason{ReasonSessionSetting, ReasonAdvisoryLock}, rep.Reasons())
	require.Len(t, rep.Findings, 3)
	require.Equal(t, "SELECT pg_advisory_lock(1)", rep.Findings[0].Statement)
	require.Equal(t, ReasonAdvisoryLock.Remedy(), rep.Findings[0].Remedy)
	require.Contains(t, ReasonAdvisoryLock.Remedy(), "pg_advisory_xact_lock")
	for _, r := range allReasons {
		require.NotEmpty(t, r.Remedy(), r)
	}
	require.Nil(t, Report{}.Reasons())
	require.False(t, Report{}.Pins())
	require.Equal(t, "ab...", truncate("abcdef", 2))
	require.Equal(t, "a...", truncate("aé", 2)) // never splits a UTF-8 sequence
}
