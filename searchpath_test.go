package rdsproxy_test

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/rdsproxy/rdsproxy"
	"github.com/rdsproxy/rdsproxy/internal/testdb"
)

// TestSearchPathPgTempFirst: ParseConfig refuses a search_path under which
// PostgreSQL creates unqualified tables and functions in the temporary
// schema, and accepts one under which it does not. Each path is tried on the
// real server (over plain pgx, as a startup parameter like the DSN's): the
// verdict must match whether a plain CREATE TABLE and CREATE FUNCTION made
// temporary objects.
func TestSearchPathPgTempFirst(t *testing.T) {
	dsn := testdb.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	cases := []struct {
		path     string
		rejected bool
	}{
		{"pg_temp", true},
		{"PG_TEMP", true},            // unquoted names fold to lower case
		{`"pg_temp", public`, true},  // quoting the lower-case name changes nothing
		{`"PG_TEMP", public`, false}, // a quoted upper-case name is another (missing) schema
		{" pg_temp , public", true},  // whitespace is ignored
		{`"$user", pg_temp, public`, true},
		{"public, pg_temp", false}, // the safe way to list it
		{"public", false},
		{"pg_catalog, public", false},    // pg_catalog refuses CREATE loudly rather than pinning
		{"pg_temp_999999, public", true}, // an explicit pg_temp_N: refused whoever's it is
	}
	for _, c := range cases {
		t.Run(c.path, func(t *testing.T) {
			_, err := rdsproxy.ParseConfig(withRawParam(dsn, "search_path", c.path))
			if c.rejected {
				require.ErrorIs(t, err, rdsproxy.ErrConfig)
				require.Contains(t, err.Error(), "search_path")
				require.Contains(t, err.Error(), "pg_temp")
			} else {
				require.NoError(t, err)
			}
			// pg_temp_999999 exists on no server; on the server the
			// session's own pg_temp_N stands in for it.
			temp, ok := createsTemporary(t, ctx, dsn, c.path, c.path == "pg_temp_999999, public")
			if !ok {
				require.False(t, c.rejected, "the server refused CREATE outright, nothing to pin")
				return
			}
			require.Equal(t, c.rejected, temp, "rdsproxy's verdict must match the server's behaviour")
		})
	}

	// A Config edited by hand is checked too, whatever the key's case.
	cfg, err := rdsproxy.ParseConfig(dsn)
	require.NoError(t, err)
	cfg.ConnConfig.RuntimeParams["SEARCH_PATH"] = "pg_temp, public"
	_, err = rdsproxy.NewConnectorConfig(cfg)
	require.ErrorIs(t, err, rdsproxy.ErrConfig)
	require.Contains(t, err.Error(), "SEARCH_PATH")
}

// withRawParam adds key=value to a URL DSN, percent-encoding spaces as %20:
// libpq's URI syntax, which pgx follows, reads '+' literally.
func withRawParam(dsn, key, value string) string {
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	return dsn + sep + key + "=" + strings.ReplaceAll(url.QueryEscape(value), "+", "%20")
}

// createsTemporary connects with search_path as a startup parameter, runs a
// plain CREATE TABLE and CREATE FUNCTION and reports whether both were
// temporary (ok is false when the server refused to create at all). With
// ownTemp, the path's first schema is replaced by the session's own
// pg_temp_N, set after connecting (its number is known only then).
func createsTemporary(t *testing.T, ctx context.Context, dsn, searchPath string, ownTemp bool) (temp, ok bool) {
	t.Helper()
	cfg, err := pgx.ParseConfig(testdb.WithParams(dsn, "application_name", testdb.AppName(t)))
	require.NoError(t, err)
	cfg.RuntimeParams["search_path"] = searchPath
	if ownTemp {
		delete(cfg.RuntimeParams, "search_path")
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	require.NoError(t, err)
	defer conn.Close(ctx)
	if ownTemp {
		_, err = conn.Exec(ctx, "CREATE TEMP TABLE rdsproxy_sp_probe(i int)")
		require.NoError(t, err)
		var own string
		require.NoError(t, conn.QueryRow(ctx, "SELECT nspname::text FROM pg_namespace WHERE oid = pg_my_temp_schema()").Scan(&own))
		_, rest, _ := strings.Cut(searchPath, ",")
		_, err = conn.Exec(ctx, "SELECT set_config('search_path', $1, false)", own+","+rest)
		require.NoError(t, err)
	}
	table := fmt.Sprintf("rdsproxy_sp_%d", time.Now().UnixNano())
	if _, err := conn.Exec(ctx, "CREATE TABLE "+table+" (i int)"); err != nil {
		return false, false
	}
	var persistence, fnSchema string
	require.NoError(t, conn.QueryRow(ctx, "SELECT relpersistence::text FROM pg_class WHERE oid = $1::regclass", table).Scan(&persistence))
	_, err = conn.Exec(ctx, "CREATE FUNCTION "+table+"_f() RETURNS int LANGUAGE sql AS 'SELECT 1'")
	require.NoError(t, err)
	require.NoError(t, conn.QueryRow(ctx, "SELECT pronamespace::regnamespace::text FROM pg_proc WHERE proname = $1", table+"_f").Scan(&fnSchema))
	if persistence != "t" {
		_, err = conn.Exec(ctx, "DROP TABLE "+table)
		require.NoError(t, err)
		_, err = conn.Exec(ctx, "DROP FUNCTION "+table+"_f()")
		require.NoError(t, err)
	}
	fnTemp := strings.HasPrefix(fnSchema, "pg_temp")
	require.Equal(t, persistence == "t", fnTemp, "table and function land alike")
	return persistence == "t", true
}
