package faults

import (
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rdsproxy/rdsproxy"
	"github.com/rdsproxy/rdsproxy/internal/testdb"
)

// TestMalformedDSNs proves that malformed connection strings give an error
// from Open, NewConnector and sql.Open, never a panic, and
// that no error repeats the password.
func TestMalformedDSNs(t *testing.T) {
	pw := testPassword
	dsns := []string{
		"postgres://app:" + pw + "@host:notaport/db",
		"postgres://app:" + pw + "@host:99999/db",
		"postgres://app:" + pw + "@[::1/db",
		"postgres://app:" + pw + "@host/db?iam=maybe",
		"postgres://app:" + pw + "@host/db?pool_max_conns=0",
		"postgres://app:" + pw + "@host/db?pool_max_conns=-1",
		"postgres://app:" + pw + "@host/db?pool_max_conns=99999999999999999999",
		"postgres://app:" + pw + "@host/db?pool_max_conn_lifetime=25h",
		"postgres://app:" + pw + "@host/db?pool_max_conn_idle_time=-1s",
		"postgres://app:" + pw + "@host/db?pool_unknown=1",
		"postgres://app:" + pw + "@host/db?aws_region=not%20a%20region&iam=true",
		"postgres://app:" + pw + "@host/db?iam=true&sslmode=disable",
		"postgres://app:" + pw + "@host/db?sslmode=sometimes",
		"postgres://app:" + pw + "@host/db?default_query_exec_mode=fastest",
		"postgres://app:" + pw + "@host/db?%zz=1",
		"host=db user=app password=" + pw + " pool_max_conns=abc",
		"host=db user=app password='" + pw,
		"host=db user=app password=" + pw + " iam=true sslmode=prefer",
		"\x00\xff\xfe",
		"postgres://app:" + pw + "@host/db?application_name=\x00",
		strings.Repeat("a=b ", 10000) + "password=" + pw + " pool_max_conns=x",
	}
	for _, dsn := range dsns {
		var openErr, connErr error
		require.NotPanics(t, func() {
			db, err := rdsproxy.Open(dsn, rdsproxy.WithLogger(logger))
			openErr = evidence.err(err)
			if err == nil {
				db.Close()
			}
			c, err := rdsproxy.NewConnector(dsn)
			connErr = evidence.err(err)
			if err == nil {
				c.Close()
			}
		}, "DSN %q", clip(dsn))
		if openErr == nil || connErr == nil {
			t.Errorf("DSN %q was accepted", clip(dsn))
			continue
		}
		require.NotContains(t, openErr.Error(), pw)
	}
	// sql.Open parses at once too (the driver is a DriverContext).
	_, err := sql.Open("rdsproxy", "postgres://app:"+pw+"@host/db?pool_max_conns=zero")
	require.ErrorIs(t, evidence.err(err), rdsproxy.ErrConfig)
	require.NotContains(t, err.Error(), pw)
	t.Logf("RESULT case=malformed_dsns dsns=%d errors=%d panics=0 password_in_error=0", len(dsns), len(dsns))
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// TestBadStatements proves that statements the server or the protocol cannot
// take give a clear error and leave the pool usable, and that oversized ones
// work: a statement over 16 KB (which pins an RDS Proxy session, and is
// reported as such) and one over 1 MB; invalid UTF-8 and NUL bytes in the
// SQL text and in parameters.
func TestBadStatements(t *testing.T) {
	app := testdb.AppName(t)
	var pins []rdsproxy.PinEvent
	pinCh := make(chan rdsproxy.PinEvent, 16)
	db := openDB(t, testdb.WithParams(withPassword(testdb.Require(t)), "application_name", app, "pool_max_conns", "2"),
		rdsproxy.WithPinHandler(func(e rdsproxy.PinEvent) { pinCh <- e }))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// Over 16 KB: runs, and the pinning check reports statement_size.
	big := "SELECT length('" + strings.Repeat("x", 20<<10) + "')"
	var n int
	require.NoError(t, evidence.err(db.QueryRowContext(ctx, big).Scan(&n)))
	require.Equal(t, 20<<10, n)
	select {
	case e := <-pinCh:
		pins = append(pins, e)
	case <-ctx.Done():
		t.Fatal("no pinning event for a statement over 16 KB")
	}
	require.Contains(t, strings.Join(pinReasons(pins), ","), "statement_size")

	// Over 1 MB, as text and as a parameter.
	huge := "SELECT length('" + strings.Repeat("y", 2<<20) + "')"
	require.NoError(t, evidence.err(db.QueryRowContext(ctx, huge).Scan(&n)))
	require.Equal(t, 2<<20, n)
	require.NoError(t, evidence.err(db.QueryRowContext(ctx, "SELECT length($1::text)", strings.Repeat("z", 2<<20)).Scan(&n)))
	require.Equal(t, 2<<20, n)

	bad := []struct {
		name, sql string
		args      []any
		want      string // in the error
	}{
		{"invalid UTF-8 in SQL", "SELECT '\xff\xfe'", nil, "UTF8"},
		{"invalid UTF-8 parameter", "SELECT $1::text", []any{"a\xffb"}, "UTF8"},
		{"NUL in SQL", "SELECT 'a\x00b'", nil, ""},
		{"NUL in SQL after the statement", "SELECT 1\x00; DROP TABLE x", nil, ""},
		{"NUL parameter", "SELECT $1::text", []any{"a\x00b"}, "0x00"},
		{"syntax", "SELEC 1", nil, "syntax"},
	}
	for _, c := range bad {
		var err error
		require.NotPanics(t, func() {
			var s string
			err = evidence.err(db.QueryRowContext(ctx, c.sql, c.args...).Scan(&s))
		}, c.name)
		require.Error(t, err, c.name)
		require.NotContains(t, err.Error(), testPassword)
		if c.want != "" {
			require.Contains(t, err.Error(), c.want, c.name)
		}
		t.Logf("%s: %v", c.name, err)
		// The pool is still usable after each.
		require.NoError(t, queryOne(ctx, db), "after %s", c.name)
	}
	t.Logf("RESULT case=bad_statements over_16KB=ok(pin reason statement_size) over_1MB=ok bad_inputs=%d clear_errors=%d panics=0", len(bad), len(bad))
}

func pinReasons(es []rdsproxy.PinEvent) []string {
	var out []string
	for _, e := range es {
		for _, r := range e.Reasons {
			out = append(out, string(r))
		}
	}
	return out
}
