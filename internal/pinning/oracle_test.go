package pinning

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/rdsproxy/rdsproxy/internal/testdb"
)

// The oracle test runs every corpus statement on real PostgreSQL and checks
// the analyzer against what the statement actually leaves behind on the
// backend after COMMIT: a statement the analyzer says pins must leave session
// state, and one it calls stateless must leave none, except for the rows
// listed below with the reason the rules dictate.

type oracleMode uint8

const (
	inTransaction oracleMode = iota // BEGIN; stmt; COMMIT
	bare                            // no transaction block around it
)

type oracleSpec struct {
	mode  oracleMode
	setup string // run on the same connection before the baseline probe
	inTx  string // run after BEGIN, before the statement
	// noState: the analyzer pins but the statement leaves no session state
	// behind; the reason is why pinning is still the policy.
	noState string
	// leaks: the analyzer (like the proxy) does not pin, yet state is left;
	// the reason is why.
	leaks string
	skip  string
	// params: run through the extended protocol (unnamed statement) with
	// these text parameters, as a driver would send a $1 query.
	params []string
}

var oracleSpecs = map[string]oracleSpec{
	"3":    {leaks: "serial column: the implicit nextval defines currval/lastval; the proxy does not see it (AWS: use INSERT ... RETURNING)"},
	"2":    {params: []string{"1"}},
	"17":   {inTx: "SAVEPOINT sp1"},
	"18":   {inTx: "SAVEPOINT sp1"},
	"21":   {mode: bare}, // VACUUM cannot run in a transaction block
	"25":   {mode: bare}, // nor CREATE INDEX CONCURRENTLY
	"34":   {noState: "SET ... TO DEFAULT on a parameter not set before restores the reset value and its source; the proxy cannot know it was not set"},
	"35":   {noState: "SET LOCAL ends with the transaction (policy: pins)"},
	"36":   {noState: "SET LOCAL ends with the transaction (policy: pins); the placeholder left defined with an empty value is not counted"},
	"46":   {noState: "RESET ROLE without a previous SET ROLE changes nothing"},
	"49":   {noState: "SET TRANSACTION only affects the current transaction (policy: pins)"},
	"50":   {noState: "SET TRANSACTION only affects the current transaction (policy: pins)"},
	"52":   {noState: "SET CONSTRAINTS only affects the current transaction (policy: pins)"},
	"53":   {noState: "RESET of a parameter not set before changes nothing"},
	"61":   {noState: "set_config(..., true) is transaction-local (policy and real logs: pins)"},
	"67":   {setup: "PREPARE p1 AS SELECT 1", noState: "DEALLOCATE removes state, it leaves none"},
	"68":   {setup: "PREPARE get_user (int) AS SELECT * FROM users WHERE id = $1", noState: "EXPLAIN EXECUTE uses an existing prepared statement and leaves nothing new"},
	"69":   {mode: bare, setup: "SET statement_timeout = '7s'", noState: "DISCARD removes state, it leaves none"},
	"70":   {noState: "DISCARD removes state, it leaves none"},
	"72":   {setup: "CREATE TEMP TABLE d_t (i int)", noState: "DISCARD removes state, it leaves none"},
	"73":   {setup: "SELECT nextval('order_seq')", noState: "DISCARD removes state, it leaves none"},
	"78":   {noState: "ON COMMIT DROP: the table is gone at COMMIT (policy: pins)"},
	"85":   {setup: "CREATE TEMP TABLE tmp_ids (id int)"}, // makes v_tmp implicitly temporary
	"92":   {noState: "a cursor WITHOUT HOLD closes at COMMIT (documented: DECLARE pins)"},
	"93":   {setup: "BEGIN; DECLARE c2 CURSOR WITH HOLD FOR SELECT * FROM orders; COMMIT"},
	"94":   {setup: "BEGIN; DECLARE c2 CURSOR WITH HOLD FOR SELECT * FROM orders; COMMIT"},
	"95":   {setup: "BEGIN; DECLARE c2 CURSOR WITH HOLD FOR SELECT * FROM orders; COMMIT"},
	"96":   {setup: "BEGIN; DECLARE c2 CURSOR WITH HOLD FOR SELECT * FROM orders; COMMIT"},
	"99":   {setup: "LISTEN order_events", noState: "UNLISTEN removes state, it leaves none (policy: pins)"},
	"100":  {noState: "UNLISTEN removes state, it leaves none (policy: pins)"},
	"108":  {noState: "setval(..., false) leaves currval undefined; it changes the sequence itself, which is not session state"},
	"110":  {setup: "SELECT nextval('order_seq')"},
	"111":  {setup: "SELECT nextval('order_seq')"},
	"114":  {noState: "EXPLAIN without ANALYZE does not execute nextval (policy: pins, the proxy matches text)"},
	"120":  {setup: "SELECT pg_advisory_lock(42)", noState: "unlocking removes state, it leaves none (policy: pins)"},
	"121":  {noState: "unlocking removes state, it leaves none (policy: pins)"},
	"122":  {noState: "unlocking removes state, it leaves none (policy: pins)"},
	"129":  {leaks: "app.set_tenant calls set_config inside a function body, which the proxy does not inspect"},
	"130":  {leaks: "DO blocks are not inspected by the proxy; the body's set_config persists"},
	"131":  {leaks: "DO blocks are not inspected by the proxy; the body's temp table persists"},
	"135":  {skip: "needs a database named appdb; ALTER DATABASE ... SET is a persistent catalog change, not session state"},
	"148":  {mode: bare, noState: "SET LOCAL ends with the transaction (policy: pins)"},
	"150":  {noState: "set_config(..., true) is transaction-local (real proxy logs: pins)"},
	"151":  {noState: "a reset sequence removes state, it leaves none"},
	"size": {noState: "the size rule is about the proxy's buffer, not session state"},
}

// oracleSchema creates what the corpus statements refer to.
const oracleSchema = `
CREATE SCHEMA app;
CREATE TABLE orders (id serial PRIMARY KEY, note text, tenant text);
INSERT INTO orders (note, tenant) VALUES ('a', '1');
CREATE TABLE users (id int PRIMARY KEY, name text);
CREATE TABLE t (n int, id int UNIQUE, v text, c int); -- n first: row 150 inserts VALUES (1)
CREATE TABLE s (id int, v text);
CREATE TABLE accounts (id int PRIMARY KEY, balance int);
INSERT INTO accounts VALUES (1, 100);
CREATE TABLE staging (id int);
CREATE TABLE jobs (id int, state text);
INSERT INTO jobs VALUES (1, 'ready'), (2, 'ready'), (3, 'done');
CREATE TABLE "discard" ("set" int, "listen" int);
CREATE SEQUENCE order_seq;
CREATE SEQUENCE x;
CREATE FUNCTION public.nextval(text) RETURNS bigint LANGUAGE sql AS $$ SELECT pg_catalog.nextval($1::regclass) $$;
CREATE FUNCTION app.set_tenant(text) RETURNS text LANGUAGE sql AS $$ SELECT set_config('app.tenant', $1, false) $$;
CREATE PROCEDURE refresh_rollups() LANGUAGE plpgsql AS $$ BEGIN PERFORM count(*) FROM orders; END $$;
CREATE FOREIGN DATA WRAPPER oracle_fdw;
CREATE SERVER oracle_srv FOREIGN DATA WRAPPER oracle_fdw;
GRANT USAGE ON SCHEMA app TO PUBLIC;
GRANT ALL ON ALL TABLES IN SCHEMA public TO PUBLIC;
GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO PUBLIC;
`

// Roles are cluster-wide: created if missing (tolerating a concurrent run),
// left in place, NOLOGIN.
const oracleRoles = `
DO $$ BEGIN CREATE ROLE reporting NOLOGIN; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;
DO $$ BEGIN CREATE ROLE app_user NOLOGIN; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;
`

// customSettings are the placeholder (dotted) parameters the corpus sets.
var customSettings = []string{
	"a.b", "app.tenant_id", "app.t", "app.x", "app.tenant",
	"pghistory.context_id", "pghistory.context_metadata", "x.y",
}

func oracleConfig(t *testing.T) *pgx.ConnConfig {
	t.Helper()
	cfg, err := pgx.ParseConfig(testdb.Require(t))
	require.NoError(t, err)
	cfg.ConnectTimeout = 5 * time.Second
	// Simple protocol: no protocol-level prepared statements to confuse the
	// pg_prepared_statements probe, and multi-statement strings work.
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	return cfg
}

// oracleDatabase creates a scratch database with oracleSchema for this run
// and returns a function that opens a connection to it (closed when the
// calling test ends). Outside CI it skips when PostgreSQL is unreachable
// (testdb.Require).
func oracleDatabase(ctx context.Context, t *testing.T) func(*testing.T) *pgx.Conn {
	t.Helper()
	if testing.Short() {
		t.Skip("oracle test needs PostgreSQL")
	}
	base := oracleConfig(t)
	admin, err := pgx.ConnectConfig(ctx, base)
	require.NoError(t, err)

	// A scratch database per test and run keeps the corpus's unqualified
	// names (and public.nextval, schema app) away from anything else on the
	// server, and lets concurrent runs (race, CGO_ENABLED=0) coexist.
	dbName := fmt.Sprintf("rdsproxy_pinning_%s_%d", strings.ToLower(t.Name()), os.Getpid())
	_, err = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+dbName+" WITH (FORCE)")
	require.NoError(t, err)
	_, err = admin.Exec(ctx, "CREATE DATABASE "+dbName)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx := context.Background()
		_, _ = admin.Exec(ctx, "ALTER ROLE app_user RESET ALL") // row 134
		_, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+dbName+" WITH (FORCE)")
		require.NoError(t, err)
		require.NoError(t, admin.Close(ctx))
	})
	require.NoError(t, execAll(ctx, admin.PgConn(), oracleRoles))

	cfg := base.Copy()
	cfg.Database = dbName
	connect := func(t *testing.T) *pgx.Conn {
		c, err := pgx.ConnectConfig(ctx, cfg.Copy())
		require.NoError(t, err)
		t.Cleanup(func() { c.Close(context.Background()) })
		return c
	}
	require.NoError(t, execAll(ctx, connect(t).PgConn(), oracleSchema))
	return connect
}

func TestOracle(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	connect := oracleDatabase(ctx, t)

	rows := loadCorpus(t)
	rows = append(rows, corpusRow{id: "size", verdict: "pins", sql: "SELECT '" + strings.Repeat("a", MaxStatementBytes) + "'"})
	var pinsWithState, pinsNoState, cleanNoState, cleanLeaks, skipped int
	for _, row := range rows {
		spec := oracleSpecs[row.id]
		t.Run(row.id, func(t *testing.T) {
			if spec.skip != "" {
				skipped++
				t.Skipf("row %s %q: %s", row.id, row.sql, spec.skip)
			}
			rep, _ := Analyze(row.sql)
			c := connect(t).PgConn()
			if spec.setup != "" {
				require.NoError(t, execAll(ctx, c, spec.setup), "setup")
			}
			before := probe(ctx, t, c)
			require.NoError(t, runStatement(ctx, c, spec, row.sql), "row %s %q", row.id, row.sql)
			after := probe(ctx, t, c)
			var left []string
			for _, s := range after {
				if !slices.Contains(before, s) {
					left = append(left, s)
				}
			}
			switch {
			case rep.Pins() && spec.noState == "":
				require.NotEmpty(t, left, "row %s %q pins %v but left no session state", row.id, row.sql, rep.Reasons())
				pinsWithState++
			case rep.Pins():
				require.Empty(t, left, "row %s %q listed as stateless (%s) but left state", row.id, row.sql, spec.noState)
				pinsNoState++
			case spec.leaks == "":
				require.Empty(t, left, "row %s %q does not pin but left session state", row.id, row.sql)
				cleanNoState++
			default:
				require.NotEmpty(t, left, "row %s %q listed as leaking (%s) but left nothing", row.id, row.sql, spec.leaks)
				cleanLeaks++
			}
			t.Logf("row %s pins=%v left=%v", row.id, rep.Pins(), left)
		})
	}
	t.Logf("pins+state %d, pins+no state (listed) %d, clean %d, clean but leaking (listed) %d, skipped %d",
		pinsWithState, pinsNoState, cleanNoState, cleanLeaks, skipped)
}

// runStatement runs sql as the corpus means it: in a transaction block unless
// the statement cannot run in one; COPY through the copy sub-protocol.
func runStatement(ctx context.Context, c *pgconn.PgConn, spec oracleSpec, sql string) error {
	if spec.mode == inTransaction {
		if err := execAll(ctx, c, "BEGIN"); err != nil {
			return err
		}
		if spec.inTx != "" {
			if err := execAll(ctx, c, spec.inTx); err != nil {
				return err
			}
		}
	}
	var err error
	upper := strings.ToUpper(sql)
	switch {
	case spec.params != nil:
		args := make([][]byte, len(spec.params))
		for i, p := range spec.params {
			args[i] = []byte(p)
		}
		err = c.ExecParams(ctx, sql, args, nil, nil, nil).Read().Err
	case strings.HasPrefix(upper, "COPY") && strings.Contains(upper, "FROM STDIN"):
		_, err = c.CopyFrom(ctx, strings.NewReader(""), sql)
	case strings.HasPrefix(upper, "COPY") && strings.Contains(upper, "TO STDOUT"):
		_, err = c.CopyTo(ctx, io.Discard, sql)
	default:
		err = execAll(ctx, c, sql)
	}
	if spec.mode == inTransaction {
		// COMMIT even after an error (it then rolls back) so the probe
		// runs outside a transaction; the statement's error wins.
		err = errors.Join(err, execAll(ctx, c, "COMMIT"))
	}
	return err
}

func execAll(ctx context.Context, c *pgconn.PgConn, sql string) error {
	_, err := c.Exec(ctx, sql).ReadAll()
	return err
}

// probe lists the session state of the backend behind c.
func probe(ctx context.Context, t *testing.T, c *pgconn.PgConn) []string {
	t.Helper()
	queries := []string{
		// transaction_isolation/_read_only/_deferrable keep source
		// "session" after SET TRANSACTION, but every transaction starts
		// from the default_transaction_* values, so they carry nothing.
		`SELECT 'setting ' || name || '=' || setting FROM pg_settings WHERE source = 'session'
		   AND name NOT IN ('transaction_isolation', 'transaction_read_only', 'transaction_deferrable')`,
		`SELECT 'user ' || current_user || '/' || session_user`,
		`SELECT 'prepared ' || name FROM pg_prepared_statements`,
		`SELECT 'cursor ' || name FROM pg_cursors`,
		`SELECT 'listen ' || c FROM pg_listening_channels() c`,
		`SELECT 'advisory ' || classid || '/' || objid || '/' || objsubid || '/' || mode FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()`,
		`SELECT 'temp ' || relname FROM pg_class WHERE relnamespace = pg_my_temp_schema()`,
		// Every other kind of object a session can create in pg_temp.
		`SELECT 'temp ' || k || ' ' || n FROM (
		   SELECT 'function' k, proname::text n, pronamespace s FROM pg_proc
		   UNION ALL SELECT 'type', typname, typnamespace FROM pg_type
		   UNION ALL SELECT 'operator', oprname, oprnamespace FROM pg_operator
		   UNION ALL SELECT 'opfamily', opfname, opfnamespace FROM pg_opfamily
		   UNION ALL SELECT 'opclass', opcname, opcnamespace FROM pg_opclass
		   UNION ALL SELECT 'collation', collname, collnamespace FROM pg_collation
		   UNION ALL SELECT 'conversion', conname, connamespace FROM pg_conversion
		   UNION ALL SELECT 'statistics', stxname, stxnamespace FROM pg_statistic_ext
		   UNION ALL SELECT 'ts config', cfgname, cfgnamespace FROM pg_ts_config
		   UNION ALL SELECT 'ts dictionary', dictname, dictnamespace FROM pg_ts_dict
		   UNION ALL SELECT 'ts parser', prsname, prsnamespace FROM pg_ts_parser
		   UNION ALL SELECT 'ts template', tmplname, tmplnamespace FROM pg_ts_template
		 ) o WHERE s = pg_my_temp_schema()`,
		`SELECT 'loaded auto_explain' WHERE EXISTS (SELECT FROM pg_settings WHERE name LIKE 'auto_explain.%')`,
		// A placeholder left defined with an empty value (after SET LOCAL or
		// set_config(..., true)) carries no value, so it is not counted.
		`SELECT 'custom ' || n || '=' || v FROM (SELECT n, current_setting(n, true) AS v FROM unnest('{` +
			strings.Join(customSettings, ",") + `}'::text[]) AS n) s WHERE coalesce(v, '') <> ''`,
	}
	var out []string
	for _, q := range queries {
		results, err := c.Exec(ctx, q).ReadAll()
		require.NoError(t, err, q)
		for _, r := range results {
			for _, row := range r.Rows {
				out = append(out, string(row[0]))
			}
		}
	}
	// currval/lastval raise SQLSTATE 55000 while undefined in the session.
	for _, q := range []string{"SELECT 'lastval ' || lastval()", "SELECT 'currval order_seq ' || currval('public.order_seq')", "SELECT 'currval x ' || currval('public.x')"} {
		results, err := c.Exec(ctx, q).ReadAll()
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "55000" {
			continue
		}
		require.NoError(t, err, q)
		out = append(out, string(results[0].Rows[0][0]))
	}
	if c.TxStatus() != 'I' {
		out = append(out, "transaction open")
	}
	return out
}
