package pinning

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// evasionCases are statements that leave session state while hiding it from
// a scanner that gets PostgreSQL's lexical rules or catalog rules wrong, and
// their harmless look-alikes. Both back-ends must report want; the ones that
// really leave state are also run on PostgreSQL by TestOracleEvasions.
var evasionCases = []struct {
	sql  string
	want []Reason
}{
	// A bare carriage return ends a -- comment (scan.l: newline is [\n\r]).
	{"SELECT 1; -- note\rSET work_mem = '8MB'", []Reason{ReasonSessionSetting}},
	{"SELECT 1 -- note\rFROM t; SELECT pg_advisory_lock(1)", []Reason{ReasonAdvisoryLock}},
	{"SELECT 1; -- x\rCREATE TEMP TABLE cr_t (i int)", []Reason{ReasonTempObject}},
	{"SELECT 1; --\rLISTEN cr_chan", []Reason{ReasonListen}},
	{"SELECT 1; -- a\r\rPREPARE cr_p AS SELECT 1", []Reason{ReasonPreparedStatement}},
	{"SELECT 1 --\r, nextval('order_seq')", []Reason{ReasonSequence}},
	{"SELECT 1 -- SET x = 1; LISTEN y\n", nil},
	{"SELECT 1 /* -- */ ; LISTEN y", []Reason{ReasonListen}},
	// String continuation: 'a' <newline> 'b' is one literal; an escape
	// string stays in escape mode across it.
	{"SELECT E'a'\n'\\'; SET x.y = 1; --'", nil},
	{"SELECT 'a'\r'b'; SET x.y = 1", []Reason{ReasonSessionSetting}},
	{"SELECT 'a' /* c */ , 'b'; LISTEN y", []Reason{ReasonListen}},

	// UPDATE pg_settings is set_config(name, setting, false).
	{"UPDATE pg_settings SET setting = '8MB' WHERE name = 'work_mem'", []Reason{ReasonSessionSetting}},
	{`update PG_CATALOG."pg_settings" set setting = '8MB' where name = 'work_mem'`, []Reason{ReasonSessionSetting}},
	{"UPDATE ONLY pg_settings AS s SET setting = 'on' WHERE s.name = 'enable_seqscan'", []Reason{ReasonSessionSetting}},
	{"WITH u AS (UPDATE pg_settings SET setting = '1' WHERE name = 'x' RETURNING 1) SELECT 1", []Reason{ReasonSessionSetting}},
	{"EXPLAIN UPDATE pg_settings SET setting = '1' WHERE name = 'work_mem'", []Reason{ReasonSessionSetting}},
	{`UPDATE U&"pg\005Fsettings" SET setting = '1MB' WHERE name = 'work_mem'`, []Reason{ReasonSessionSetting}},
	{"SELECT * FROM pg_settings FOR UPDATE OF pg_settings", nil},
	{`UPDATE "PG_SETTINGS" SET setting = '1'`, nil},
	{"UPDATE pg_settings_copy SET setting = '1'", nil},
	{"CREATE RULE r AS ON INSERT TO t DO ALSO UPDATE pg_settings SET setting = '1' WHERE name = 'work_mem'", nil},

	// Unicode-escaped identifiers, decoded like PostgreSQL.
	{`SELECT U&"\0073et_config"('work_mem', '8MB', false)`, []Reason{ReasonSessionSetting}},
	{`SELECT U&"pg_advisory\005Flock"(7)`, []Reason{ReasonAdvisoryLock}},
	{`SELECT U&"!006Eextval" UESCAPE '!'('order_seq')`, []Reason{ReasonSequence}},
	{`SELECT U&"!006Eextval" uescape E'!' ('order_seq')`, []Reason{ReasonSequence}},
	{"SELECT U&\"!006Eextval\" UESCAPE '!'\n'' ('order_seq')", []Reason{ReasonSequence}},
	{`SELECT U&"#006Eextval" UESCAPE $$#$$('order_seq')`, []Reason{ReasonSequence}},
	{`SELECT U&"\+00006Eextval"('order_seq')`, []Reason{ReasonSequence}},
	{`CREATE TABLE U&"pg\005Ftemp".ue_t (i int)`, []Reason{ReasonTempObject}},
	{`SELECT U&"nextval"('order_seq')`, []Reason{ReasonSequence}},
	{`SELECT U&"\\nextval"('order_seq')`, nil},                           // a literal backslash: "\nextval"
	{`SELECT U&"!!nextval" UESCAPE '!'('order_seq')`, nil},               // "!nextval"
	{`SELECT U&"\006Eextval" FROM t`, nil},                               // a column, not a call
	{`SELECT 1 AS U&"\0073et_config"; LISTEN x`, []Reason{ReasonListen}}, // a label, not a call

	// Objects created in the session's temporary schema.
	{"CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql AS 'SELECT 1'", []Reason{ReasonTempObject}},
	{"create or replace procedure PG_TEMP.p() language sql begin atomic select 1; end", []Reason{ReasonTempObject}},
	{"CREATE FUNCTION pg_temp.f2() RETURNS bigint LANGUAGE sql BEGIN ATOMIC SELECT nextval('order_seq'); END", []Reason{ReasonTempObject}},
	{"CREATE TYPE pg_temp.ty AS (a int)", []Reason{ReasonTempObject}},
	{"CREATE TYPE pg_temp.en AS ENUM ('a', 'b')", []Reason{ReasonTempObject}},
	{"CREATE TYPE pg_temp.rg AS RANGE (subtype = int4)", []Reason{ReasonTempObject}},
	{"CREATE TYPE pg_temp.shell", []Reason{ReasonTempObject}},
	{"CREATE DOMAIN pg_temp.d AS int CHECK (VALUE > 0)", []Reason{ReasonTempObject}},
	{"CREATE AGGREGATE pg_temp.ag(int) (sfunc = int4pl, stype = int)", []Reason{ReasonTempObject}},
	{"CREATE OPERATOR pg_temp.=== (leftarg = int, rightarg = int, function = int4eq)", []Reason{ReasonTempObject}},
	{`CREATE COLLATION IF NOT EXISTS pg_temp.co FROM "C"`, []Reason{ReasonTempObject}},
	{"CREATE TEXT SEARCH CONFIGURATION pg_temp.tsc (COPY = english)", []Reason{ReasonTempObject}},
	{"CREATE TEXT SEARCH DICTIONARY pg_temp.tsd (TEMPLATE = simple)", []Reason{ReasonTempObject}},
	{"CREATE TEXT SEARCH TEMPLATE pg_temp.tt (LEXIZE = dsimple_lexize)", []Reason{ReasonTempObject}},
	{"CREATE TEXT SEARCH PARSER pg_temp.tp (START = prsd_start, GETTOKEN = prsd_nexttoken, END = prsd_end, LEXTYPES = prsd_lextype)", []Reason{ReasonTempObject}},
	{"CREATE DEFAULT CONVERSION pg_temp.cv FOR 'LATIN1' TO 'UTF8' FROM iso8859_1_to_utf8", []Reason{ReasonTempObject}},
	{"CREATE OPERATOR FAMILY pg_temp.of USING btree", []Reason{ReasonTempObject}},
	{"CREATE OPERATOR CLASS pg_temp.oc FOR TYPE int USING btree AS OPERATOR 1 <", []Reason{ReasonTempObject}},
	{"CREATE STATISTICS IF NOT EXISTS pg_temp.st ON n, id FROM t", []Reason{ReasonTempObject}},
	{"CREATE FOREIGN TABLE pg_temp.ft (i int) SERVER oracle_srv", []Reason{ReasonTempObject}},
	{"IMPORT FOREIGN SCHEMA public LIMIT TO (t) FROM SERVER loopback INTO pg_temp", []Reason{ReasonTempObject}},
	{`IMPORT FOREIGN SCHEMA public FROM SERVER loopback INTO "pg_temp_5"`, []Reason{ReasonTempObject}},
	{"IMPORT FOREIGN SCHEMA pg_temp FROM SERVER loopback INTO app", nil},
	{"CREATE TABLE pg_temp_3.x (i int)", []Reason{ReasonTempObject}},
	{"CREATE FUNCTION pg_temp_12.f() RETURNS int LANGUAGE sql AS 'SELECT 1'", []Reason{ReasonTempObject}},
	{"CREATE TABLE pg_temp_x.y (i int)", nil},
	{"CREATE TABLE pg_temp_.y (i int)", nil},
	{"CREATE FUNCTION app.f() RETURNS int LANGUAGE sql AS 'SELECT 1'", nil},
	{"CREATE FUNCTION f(pg_temp.ty) RETURNS int LANGUAGE sql AS 'SELECT 1'", nil},
	{"CREATE TYPE app.ty AS (a int)", nil},
	{"CREATE MATERIALIZED VIEW pg_temp.mv AS SELECT 1", nil}, // PostgreSQL refuses it
	{"CREATE INDEX ON pg_temp.t (i)", nil},                   // in the temp table's schema: the table already pinned

	// begin, end and case as names inside routine definitions.
	{"CREATE FUNCTION fb1(begin int) RETURNS int LANGUAGE sql AS 'SELECT 1'; SET work_mem = '8MB'", []Reason{ReasonSessionSetting}},
	{"CREATE FUNCTION begin() RETURNS int LANGUAGE sql AS 'SELECT 1'; LISTEN x", []Reason{ReasonListen}},
	{"CREATE FUNCTION fb2() RETURNS TABLE (begin int, atomic int) LANGUAGE sql AS 'SELECT 1, 2'; SELECT pg_advisory_lock(3)", []Reason{ReasonAdvisoryLock}},
	{"CREATE FUNCTION fb3(begin int) RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT begin; END; LISTEN x", []Reason{ReasonListen}},
	{"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN true THEN 1 ELSE 2 END; SET x.y = 1; END; SELECT 1", nil},
	{"CREATE FUNCTION fb4() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1 AS end; SELECT 2 AS case; END; LISTEN x", []Reason{ReasonListen}},
	{"CREATE FUNCTION fb5() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT (CASE WHEN true THEN 1 END); END; LISTEN x", []Reason{ReasonListen}},
	{"CREATE PROCEDURE pb6() LANGUAGE sql BEGIN ATOMIC END; SET x.y = 1", []Reason{ReasonSessionSetting}},
	{"CREATE FUNCTION fb7() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT x.begin atomic FROM (SELECT 1 AS begin) x; END; LISTEN x", []Reason{ReasonListen}},
	{"CREATE TABLE begin (end_ int); SET x.y = 1", []Reason{ReasonSessionSetting}},

	// Functions that run SQL handed to them as text.
	{"SELECT query_to_xml('SELECT set_config(''work_mem'', ''8MB'', false)', true, true, '')", []Reason{ReasonSessionSetting}},
	{"SELECT query_to_xml($$SELECT pg_advisory_lock(1)$$, true, true, '')", []Reason{ReasonAdvisoryLock}},
	{"SELECT query_to_xmlschema($$SELECT pg_advisory_lock(1)$$, true, true, '')", nil}, // describes the query, never runs it
	{"SELECT pg_catalog.query_to_xml_and_xmlschema(E'SELECT nextval(\\'order_seq\\')', false, false, '')", []Reason{ReasonSequence}},
	{"SELECT query_to_xml('SELECT nextval(''order_seq'')'::text, true, true, '')", []Reason{ReasonSequence}},
	{"SELECT query_to_xml(('SELECT nextval(''order_seq'')'), true, true, '')", []Reason{ReasonSequence}},
	{"SELECT query_to_xml('SELECT '\n'nextval(''order_seq'')', true, true, '')", []Reason{ReasonSequence}},
	{"SELECT * FROM ts_stat('SELECT to_tsvector(set_config(''a.b'', ''c'', false))')", []Reason{ReasonSessionSetting}},
	{"SELECT ts_rewrite('a'::tsquery, 'SELECT ''a''::tsquery, to_tsquery(set_config(''a.b'', ''c'', false))')", []Reason{ReasonSessionSetting}},
	{"SELECT query_to_xml('SELECT query_to_xml(''SELECT pg_advisory_lock(2)'', true, true, '''')', true, true, '')", []Reason{ReasonAdvisoryLock}},
	{`SELECT query_to_xml(U&'SELECT \006Eextval(''order_seq'')', true, true, '')`, []Reason{ReasonSequence}},
	{`SELECT query_to_xml(E'SELECT \'\uD83D\uDE00\', nextval(\'order_seq\')', true, true, '')`, []Reason{ReasonSequence}},
	{"SELECT query_to_xml('SELECT 1', true, true, '')", nil},
	{"WITH a AS (SELECT 1), nextval(x) AS (SELECT 2) SELECT * FROM a, nextval", nil}, // a CTE with a column list
	{"WITH a AS (SELECT 1), setval(x) AS MATERIALIZED (SELECT 2) SELECT * FROM setval", nil},
	{"SELECT query_to_xml('SELECT ''set_config(1)''', true, true, '')", nil},
	{"SELECT ts_rewrite('a'::tsquery, 'a'::tsquery, 'set'::tsquery)", nil},  // three tsquery arguments: no query text
	{"SELECT query_to_xml($1, true, true, '')", nil},                        // a parameter: POLICY.md exemption
	{"SELECT query_to_xml('SELECT ' || 'nextval(1)', true, true, '')", nil}, // an expression: POLICY.md exemption
}

// TestEvasions runs evasionCases through both back-ends.
func TestEvasions(t *testing.T) {
	for _, tc := range evasionCases {
		for name, analyze := range analyzers() {
			rep, err := analyze(tc.sql)
			require.NoError(t, err, "%s: %q", name, tc.sql)
			require.Equal(t, tc.want, rep.Reasons(), "%s: %q", name, tc.sql)
		}
		if tc.want != nil {
			require.True(t, mayPin(tc.sql), "prefilter hides %q", tc.sql)
		}
	}
}

// pgQueryRejects are statements PostgreSQL runs but pg_query_go's parser
// rejects: it does not skip a comment between UESCAPE and its operand, nor a
// -- comment in the whitespace that continues a string literal. Each one
// takes a sequence value (TestOracleEvasions checks that on PostgreSQL).
var pgQueryRejects = []string{
	`SELECT U&"!006Eextval" UESCAPE /* c */ '!' ('order_seq')`,
	"SELECT U&\"!006Eextval\" UESCAPE -- c\n'!' ('order_seq')",
	"SELECT query_to_xml('SELECT 1' -- c\n', nextval(''order_seq'')', true, true, '')",
}

// TestPgQueryRejects: with cgo, Analyze returns the lexical verdict, which is
// right, with ErrUnparsable for pgQueryRejects.
func TestPgQueryRejects(t *testing.T) {
	for _, sql := range pgQueryRejects {
		require.Equal(t, []Reason{ReasonSequence}, analyzeLexical(sql).Reasons(), "%q", sql)
		rep, err := Analyze(sql)
		require.Equal(t, []Reason{ReasonSequence}, rep.Reasons(), "%q", sql)
		if parserAvailable {
			require.ErrorIs(t, err, ErrUnparsable, "%q", sql)
		} else {
			require.NoError(t, err)
		}
	}
}

// TestMalformedUnicodeEscapes: PostgreSQL rejects these identifiers, so the
// lexical classifier gives them no name (they match nothing) and, with cgo,
// Analyze reports ErrUnparsable.
func TestMalformedUnicodeEscapes(t *testing.T) {
	for _, sql := range []string{
		`SELECT U&"\006"('s')`,                     // too few hex digits
		`SELECT U&"\0000nextval"('s')`,             // code point 0
		`SELECT U&"\+110000"('s')`,                 // beyond U+10FFFF
		`SELECT U&"\D800nextval"('s')`,             // unpaired surrogate
		`SELECT U&"\DC00nextval"('s')`,             // second half alone
		`SELECT U&"!006Eextval" UESCAPE 'a'('s')`,  // hex digit as escape
		`SELECT U&"!006Eextval" UESCAPE '!!'('s')`, // two characters
		`SELECT U&"+006Eextval" UESCAPE '+'('s')`,
		`SELECT U&"!006Eextval" UESCAPE U&'!'('s')`, // not a simple string
		`SELECT U&"!006Eextval" UESCAPE ('s')`,
		`SELECT U&""('s')`, // zero-length
	} {
		lex := analyzeLexical(sql)
		require.False(t, lex.Pins(), "lexical: %q", sql)
		rep, err := Analyze(sql)
		require.False(t, rep.Pins(), "%q", sql)
		if parserAvailable {
			require.ErrorIs(t, err, ErrUnparsable, "%q", sql)
		}
	}
	// A valid surrogate pair decodes to one code point.
	v, ok := decodeUnicodeEscapes(`\D83D\DE00x`, '\\')
	require.True(t, ok)
	require.Equal(t, "\U0001F600x", v)
}
