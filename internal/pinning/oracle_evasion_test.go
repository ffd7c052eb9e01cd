package pinning

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// evasionOracleSpecs adjusts how TestOracleEvasions runs an evasion case,
// keyed by its SQL.
var evasionOracleSpecs = map[string]oracleSpec{
	"WITH u AS (UPDATE pg_settings SET setting = '1' WHERE name = 'x' RETURNING 1) SELECT 1": {
		skip: "PostgreSQL refuses pg_settings's conditional update rule in WITH; the text still names the update (policy: pins)",
	},
	"EXPLAIN UPDATE pg_settings SET setting = '1' WHERE name = 'work_mem'": {
		noState: "EXPLAIN without ANALYZE does not run the update (policy: pins, like corpus 114)",
	},
	`IMPORT FOREIGN SCHEMA public FROM SERVER loopback INTO "pg_temp_5"`: {
		skip: "the number in pg_temp_N is the backend's own; TestOracleEvasions checks a real pg_temp_N",
	},
	"CREATE TABLE pg_temp_3.x (i int)": {
		skip: "the number in pg_temp_N is the backend's own; TestOracleEvasions checks a real pg_temp_N",
	},
	"CREATE FUNCTION pg_temp_12.f() RETURNS int LANGUAGE sql AS 'SELECT 1'": {
		skip: "the number in pg_temp_N is the backend's own; TestOracleEvasions checks a real pg_temp_N",
	},
}

// TestOracleEvasions runs every evasion case that pins on PostgreSQL and
// checks that it really leaves session state: the statements the lexer used
// to miss are real leaks, not theoretical ones.
func TestOracleEvasions(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	connect := oracleDatabase(ctx, t)
	// A postgres_fdw server that loops back to the scratch database, for
	// IMPORT FOREIGN SCHEMA.
	{
		c := connect(t)
		cfg := c.Config()
		require.NoError(t, execAll(ctx, c.PgConn(), "CREATE EXTENSION IF NOT EXISTS postgres_fdw"),
			"postgres_fdw (PostgreSQL contrib) is needed for the IMPORT FOREIGN SCHEMA case")
		require.NoError(t, execAll(ctx, c.PgConn(), fmt.Sprintf(
			"CREATE SERVER loopback FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host %s, port '%d', dbname %s); "+
				"CREATE USER MAPPING FOR CURRENT_USER SERVER loopback OPTIONS (user %s)",
			quoteLiteral(cfg.Host), cfg.Port, quoteLiteral(cfg.Database), quoteLiteral(cfg.User))))
	}

	run := func(t *testing.T, spec oracleSpec, sql string) {
		rep, _ := Analyze(sql)
		require.True(t, rep.Pins(), "%q", sql)
		c := connect(t).PgConn()
		if spec.setup != "" {
			require.NoError(t, execAll(ctx, c, spec.setup), "setup")
		}
		before := probe(ctx, t, c)
		require.NoError(t, runStatement(ctx, c, spec, sql), "%q", sql)
		var left []string
		for _, s := range probe(ctx, t, c) {
			if !slices.Contains(before, s) {
				left = append(left, s)
			}
		}
		if spec.noState != "" {
			require.Empty(t, left, "%q listed as stateless (%s) but left state", sql, spec.noState)
		} else {
			require.NotEmpty(t, left, "%q pins %v but left no session state", sql, rep.Reasons())
		}
		t.Logf("%q pins %v, left %v", sql, rep.Reasons(), left)
	}
	for _, tc := range evasionCases {
		if tc.want == nil {
			continue
		}
		spec := evasionOracleSpecs[tc.sql]
		t.Run("", func(t *testing.T) {
			if spec.skip != "" {
				t.Skipf("%q: %s", tc.sql, spec.skip)
			}
			run(t, spec, tc.sql)
		})
	}

	for _, sql := range pgQueryRejects {
		t.Run("", func(t *testing.T) { run(t, oracleSpec{}, sql) })
	}

	// A session may name its temporary schema by its real name, pg_temp_N.
	t.Run("pg_temp_N", func(t *testing.T) {
		c := connect(t).PgConn()
		require.NoError(t, execAll(ctx, c, "CREATE TEMP TABLE seed (i int)"))
		res, err := c.Exec(ctx, "SELECT pg_my_temp_schema()::regnamespace::text").ReadAll()
		require.NoError(t, err)
		schema := string(res[0].Rows[0][0])
		require.True(t, isTempSchema(schema), schema)
		for _, sql := range []string{
			"CREATE TABLE " + schema + ".x (i int)",
			"CREATE FUNCTION " + schema + ".f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
		} {
			rep, _ := Analyze(sql)
			require.Equal(t, []Reason{ReasonTempObject}, rep.Reasons(), sql)
			require.Equal(t, []Reason{ReasonTempObject}, analyzeLexical(sql).Reasons(), sql)
			before := probe(ctx, t, c)
			require.NoError(t, execAll(ctx, c, sql), sql)
			after := probe(ctx, t, c)
			require.Greater(t, len(after), len(before), "%q left no new object", sql)
		}
	})
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
