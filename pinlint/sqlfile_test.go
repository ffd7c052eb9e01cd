// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

package pinlint_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rdsproxy/rdsproxy/pinlint"
)

// want is one expected finding: file:line:col, reasons, a substring of the
// note, and whether an allow-pin comment accepted it.
type want struct {
	pos, reasons, note string
	suppressed         bool
}

func summarize(fs []pinlint.Finding) []want {
	var out []want
	for _, f := range fs {
		rs := make([]string, len(f.Reasons))
		for i, r := range f.Reasons {
			rs[i] = string(r)
		}
		out = append(out, want{pos: fmt.Sprintf("%s:%d:%d", filepath.Base(f.Pos.Filename), f.Pos.Line, f.Pos.Column),
			reasons: strings.Join(rs, ","), note: f.Note, suppressed: f.Suppressed})
	}
	return out
}

func checkFindings(t *testing.T, got []pinlint.Finding, wants []want) {
	t.Helper()
	g := summarize(got)
	if len(g) != len(wants) {
		t.Fatalf("got %d findings, want %d:\n got %+v\nwant %+v", len(g), len(wants), g, wants)
	}
	for i, w := range wants {
		if g[i].pos != w.pos || g[i].reasons != w.reasons || g[i].suppressed != w.suppressed || !strings.Contains(g[i].note, w.note) {
			t.Errorf("finding %d: got %+v, want %+v", i, g[i], w)
		}
	}
}

func TestCheckSQLFile(t *testing.T) {
	for _, tc := range []struct {
		file  string
		kind  string
		wants []want
	}{
		{"query.sql", pinlint.KindSQLCQueries, []want{
			{"query.sql:7:1", "session_setting", "query SetTenant", false},
			{"query.sql:10:1", "advisory_lock", "query LockJob", false},
			// The allow-pin comment is above the -- name: annotation.
			{"query.sql:14:1", "advisory_lock", "query UnlockJob", true},
			// An allow-pin comment without a reason does not suppress.
			{"query.sql:17:1", "sequence", "query NextID; allow-pin without a reason", false},
		}},
		{"goose/00001_init.sql", pinlint.KindGoose, []want{
			{"00001_init.sql:3:1", "session_setting", "", false},
			// The SET LOCAL inside the function body (StatementBegin/End)
			// runs later, in the function: not reported.
			{"00001_init.sql:14:1", "temp_object", "", false},
		}},
		{"migrate/1_init.up.sql", pinlint.KindGolangMigrate, []want{
			{"1_init.up.sql:3:1", "session_setting", "", false},
		}},
		{"migrate/1_init.down.sql", pinlint.KindGolangMigrate, nil},
	} {
		t.Run(tc.file, func(t *testing.T) {
			name := filepath.Join("testdata", "sql", tc.file)
			src, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			if k := pinlint.SQLFileKind(name, string(src)); k != tc.kind {
				t.Errorf("kind %q, want %q", k, tc.kind)
			}
			checkFindings(t, pinlint.CheckSQLFile(name, src).Findings, tc.wants)
		})
	}
}

// TestGooseSplitsAsGoose: goose sends each statement on its own, so a
// migration over 16384 bytes in total is no statement_size finding, while
// golang-migrate sends the whole file as one query.
func TestGooseSplitsAsGoose(t *testing.T) {
	var b strings.Builder
	b.WriteString("-- +goose Up\n")
	for i := range 1000 {
		fmt.Fprintf(&b, "INSERT INTO t VALUES (%d);\n", i)
	}
	src := []byte(b.String())
	if got := pinlint.CheckSQLFile("00002_data.sql", src).Findings; len(got) != 0 {
		t.Errorf("goose: %+v", summarize(got))
	}
	checkFindings(t, pinlint.CheckSQLFile("2_data.up.sql", src).Findings, []want{{"2_data.up.sql:2:1", "statement_size", "", false}})
}

func TestCheckSQLCConfig(t *testing.T) {
	for _, tc := range []struct {
		file  string
		wants []want
	}{
		{"sqlc.yaml", []want{
			{"sqlc.yaml:8:9", "prepared_statement", "", false},
			{"sqlc.yaml:21:9", "prepared_statement", "", true},
		}},
		{"sqlcjson/sqlc.json", []want{{"sqlc.json:8:7", "prepared_statement", "", false}}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			name := filepath.Join("testdata", "sql", tc.file)
			if !pinlint.IsSQLCConfig(name) {
				t.Fatalf("IsSQLCConfig(%q) = false", name)
			}
			src, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			got, err := pinlint.CheckSQLCConfig(name, src)
			if err != nil {
				t.Fatal(err)
			}
			checkFindings(t, got.Findings, tc.wants)
		})
	}
	if _, err := pinlint.CheckSQLCConfig("sqlc.yaml", []byte("sql: [")); err == nil {
		t.Error("invalid YAML: no error")
	}
}

// TestBadInput: no input makes the checks panic.
func TestBadInput(t *testing.T) {
	for _, src := range []string{"", ";;;", "-- name: X :one", "-- +goose StatementBegin\nSET x = 1", "SET x = 'unterminated",
		"\x00SET a = 1", "/* open comment", "-- rdsproxy:allow-pin", strings.Repeat("SET a = 1;", 1700)} {
		for _, name := range []string{"q.sql", "1.up.sql"} {
			pinlint.CheckSQLFile(name, []byte(src))
		}
		pinlint.CheckSQLCConfig("sqlc.yaml", []byte(src))
	}
}

// TestAllowPinNeedsExactDirective: a similar word is no suppression.
func TestAllowPinNeedsExactDirective(t *testing.T) {
	got := pinlint.CheckSQLFile("q.sql", []byte("-- rdsproxy:allow-pinning because\nSET a = 1;\n"))
	if len(got.Findings) != 1 || got.Findings[0].Suppressed || len(got.AllowPins) != 0 {
		t.Errorf("got %+v, allow-pins %+v", summarize(got.Findings), got.AllowPins)
	}
}

// TestUnusedAllowPin: an allow-pin comment that accepts nothing is listed as
// unused, so that stale ones can be found.
func TestUnusedAllowPin(t *testing.T) {
	src := "-- rdsproxy:allow-pin stale: the SET was removed\nSELECT 1;\n\nSELECT 2; /* rdsproxy:allow-pin used */ SET a = 1;\n"
	got := pinlint.CheckSQLFile("q.sql", []byte(src))
	if len(got.Findings) != 1 || !got.Findings[0].Suppressed {
		t.Fatalf("findings %+v", summarize(got.Findings))
	}
	if len(got.AllowPins) != 2 {
		t.Fatalf("allow-pins %+v", got.AllowPins)
	}
	first, second := got.AllowPins[0], got.AllowPins[1]
	if first.Used || first.Why != "stale: the SET was removed" || first.Pos.Line != 1 || first.Pos.Column != 1 {
		t.Errorf("first %+v", first)
	}
	if !second.Used || second.Why != "used" || second.Pos.Line != 4 || second.Pos.Column != 11 {
		t.Errorf("second %+v", second)
	}
}
