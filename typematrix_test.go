package rdsproxy_test

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rdsproxy/rdsproxy"
	"github.com/rdsproxy/rdsproxy/internal/testdb"
)

type typeCase struct {
	name   string
	column string // column type
	arg    any
	want   string // the value read back as text; "NULL" for SQL NULL
}

type payload struct {
	A int `json:"a"`
}

var typeCases = []typeCase{
	{"jsonb from []byte", "jsonb", []byte(`{"a":1}`), `{"a": 1}`},
	{"jsonb from json.RawMessage", "jsonb", json.RawMessage(`{"a":1}`), `{"a": 1}`},
	{"jsonb from string", "jsonb", `{"a":1}`, `{"a": 1}`},
	{"jsonb from struct", "jsonb", payload{A: 1}, `{"a": 1}`},
	{"uuid from string", "uuid", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
	{"uuid from [16]byte", "uuid", [16]byte{0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38, 0x0a, 0x11}, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
	{"text[] from []string", "text[]", []string{"a", "b c"}, `{a,"b c"}`},
	{"int8[] from []int64", "int8[]", []int64{1, 2}, "{1,2}"},
	{"numeric from string", "numeric", "12.345", "12.345"},
	{"numeric from float64", "numeric", 1.5, "1.5"},
	{"timestamptz from time.Time", "timestamptz", time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), "2026-01-02 03:04:05+00"},
	{"bytea from []byte", "bytea", []byte{0, 1, 0xff}, `\x0001ff`},
	{"interval from time.Duration", "interval", 90 * time.Minute, "01:30:00"},
	{"interval from string", "interval", "1 day", "1 day"},
	{"inet from string", "inet", "192.168.0.1", "192.168.0.1/32"},
	{"inet from netip.Addr", "inet", netip.MustParseAddr("10.0.0.1"), "10.0.0.1/32"},
	// net.ParseIP returns the 16-byte form, which pgx (in every mode) writes as
	// the IPv4-mapped IPv6 address; that is pgx's behaviour, recorded here.
	{"inet from net.IP (16-byte form)", "inet", net.ParseIP("10.0.0.2"), "::ffff:10.0.0.2/128"},
	{"inet from net.IP (4-byte form)", "inet", net.ParseIP("10.0.0.3").To4(), "10.0.0.3/32"},
	{"enum from string", "mood", "happy", "happy"},
}

func init() {
	// NULL of each column type.
	seen := map[string]bool{}
	for _, c := range typeCases[:len(typeCases):len(typeCases)] {
		if !seen[c.column] {
			seen[c.column] = true
			typeCases = append(typeCases, typeCase{"NULL " + c.column, c.column, nil, "NULL"})
		}
	}
}

// runTypeMatrix writes each case through db and reads it back; it returns the
// failures by case name.
func runTypeMatrix(t *testing.T, db *sql.DB, schema string) map[string]string {
	failures := map[string]string{}
	for i, c := range typeCases {
		table := fmt.Sprintf("%s.t%d", schema, i)
		var got sql.NullString
		err := db.QueryRow(fmt.Sprintf("INSERT INTO %s (v) VALUES ($1) RETURNING v::text", table), c.arg).Scan(&got)
		if err == nil {
			// Read back again with a parameterized filter, as an application would.
			err = db.QueryRow(fmt.Sprintf("SELECT v::text FROM %s WHERE v IS NOT DISTINCT FROM $1 LIMIT 1", table), c.arg).Scan(&got)
		}
		switch {
		case err != nil:
			failures[c.name] = err.Error()
		case c.want == "NULL" && got.Valid:
			failures[c.name] = "want NULL, got " + got.String
		case c.want != "NULL" && got.String != c.want:
			failures[c.name] = fmt.Sprintf("want %q, got %q", c.want, got.String)
		}
	}
	return failures
}

// TestTypeMatrixThroughPgBouncer is the evidence for DefaultQueryExecMode:
// every case must round-trip in the default mode behind a transaction pooler.
// The other modes' results are logged for the documentation.
func TestTypeMatrixThroughPgBouncer(t *testing.T) {
	bouncerURL := pgbouncerURL(t)
	admin := testdb.Admin(t)
	ctx := t.Context()
	schema := fmt.Sprintf("typematrix_%d", time.Now().UnixNano())
	_, err := admin.Exec(ctx, "CREATE SCHEMA "+schema+"; CREATE TYPE "+schema+".mood AS ENUM ('sad', 'happy')")
	require.NoError(t, err)
	defer admin.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE")

	modes := []string{"", "cache_describe", "exec", "describe_exec", "simple_protocol"}
	results := map[string]map[string]string{}
	for _, mode := range modes {
		for i, c := range typeCases {
			col := c.column
			if col == "mood" {
				col = schema + ".mood"
			}
			_, err := admin.Exec(ctx, fmt.Sprintf("DROP TABLE IF EXISTS %s.t%d; CREATE TABLE %s.t%d (v %s)", schema, i, schema, i, col))
			require.NoError(t, err)
		}
		kv := []string{"application_name", testdb.AppName(t)}
		if mode != "" {
			kv = append(kv, "default_query_exec_mode", mode)
		}
		db, err := sql.Open("rdsproxy", testdb.WithParams(bouncerURL, kv...))
		require.NoError(t, err)
		results[mode] = runTypeMatrix(t, db, schema)
		db.Close()
	}

	for _, mode := range modes[1:] {
		var lines []string
		for _, c := range typeCases {
			if f, ok := results[mode][c.name]; ok {
				lines = append(lines, fmt.Sprintf("    FAIL %s: %s", c.name, f))
			}
		}
		t.Logf("mode %s: %d/%d cases pass\n%s", mode, len(typeCases)-len(results[mode]), len(typeCases), strings.Join(lines, "\n"))
	}
	require.Empty(t, results[""], "rdsproxy's default mode (%v) must round-trip every case", rdsproxy.DefaultQueryExecMode)
}
