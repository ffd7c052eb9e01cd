// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// examplesDir is the examples module, a separate module that uses the
// library through a replace directive.
var examplesDir = filepath.Join("..", "..", "examples")

// lineOf returns the 1-based line of the only line of file (in the examples
// module) that contains marker, so that the expectations follow edits.
func lineOf(t *testing.T, file, marker string) int {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(examplesDir, file))
	if err != nil {
		t.Fatal(err)
	}
	line := 0
	for i, l := range strings.Split(string(src), "\n") {
		if strings.Contains(l, marker) {
			if line != 0 {
				t.Fatalf("%s: %q is on lines %d and %d", file, marker, line, i+1)
			}
			line = i + 1
		}
	}
	if line == 0 {
		t.Fatalf("%s: no line contains %q", file, marker)
	}
	return line
}

func runLint(t *testing.T, dir string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code = run(args, abs, &out, &errb)
	return out.String(), errb.String(), code
}

type jsonOut struct {
	Findings   []jsonFinding `json:"findings"`
	Suppressed []jsonFinding `json:"suppressed"`
	Unchecked  *int          `json:"unchecked"`
}

// key is file:line reasons of a finding.
func keys(fs []jsonFinding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.File+":"+itoa(f.Line)+" "+strings.Join(f.Reasons, ","))
	}
	slices.Sort(out)
	return out
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// TestExamples runs the command over the examples module: it must report the
// module's deliberate pinning (the quickstart's SET and advisory lock, GORM
// PrepareStmt, sqlc emit_prepared_queries and the code sqlc generated from
// it) at their true lines, and nothing else. The deliberate ones carry
// allow-pin comments, so they are reported as allowed; the generated code
// cannot carry comments and is reported.
func TestExamples(t *testing.T) {
	stdout, stderr, code := runLint(t, examplesDir, "-format", "json")
	if code != exitFindings {
		t.Fatalf("exit %d, want %d; stderr:\n%s", code, exitFindings, stderr)
	}
	var got jsonOut
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("JSON: %v\n%s", err, stdout)
	}
	if got.Unchecked == nil {
		t.Error(`no "unchecked" count`)
	}
	var wantFindings []string
	for _, q := range []string{"createAuthor", "deleteAuthor", "getAuthor", "listAuthorsByName", "updateAuthorBio"} {
		wantFindings = append(wantFindings, "sqlc/dbprepared/db.go:"+itoa(lineOf(t, "sqlc/dbprepared/db.go", "db.PrepareContext(ctx, "+q+")"))+" prepared_statement")
	}
	slices.Sort(wantFindings)
	if g := keys(got.Findings); !slices.Equal(g, wantFindings) {
		t.Errorf("findings:\n%s\nwant:\n%s", strings.Join(g, "\n"), strings.Join(wantFindings, "\n"))
	}
	wantSuppressed := []string{
		"gorm/main.go:" + itoa(lineOf(t, "gorm/main.go", "PrepareStmt: prepareStmt")) + " prepared_statement",
		"quickstart/main.go:" + itoa(lineOf(t, "quickstart/main.go", `"SET search_path TO public"`)) + " session_setting",
		"quickstart/main.go:" + itoa(lineOf(t, "quickstart/main.go", `"SELECT pg_advisory_lock(42)`)) + " advisory_lock",
		"sqlc/sqlc.yaml:" + itoa(lineOf(t, "sqlc/sqlc.yaml", "        emit_prepared_queries: true")) + " prepared_statement",
	}
	slices.Sort(wantSuppressed)
	if g := keys(got.Suppressed); !slices.Equal(g, wantSuppressed) {
		t.Errorf("allowed findings:\n%s\nwant:\n%s", strings.Join(g, "\n"), strings.Join(wantSuppressed, "\n"))
	}
	for _, f := range append(got.Findings, got.Suppressed...) {
		if f.Column < 1 || f.Statement == "" || f.Remedy == "" || f.Source == "" {
			t.Errorf("incomplete finding %+v", f)
		}
		if strings.HasSuffix(f.File, ".go") && strings.Contains(f.File, "sqlc") && !strings.Contains(f.Source, "PrepareContext") {
			t.Errorf("source %q does not name the API", f.Source)
		}
	}

	// Excluding the generated package leaves only allowed findings: exit 0.
	stdout, stderr, code = runLint(t, examplesDir, "-exclude", "sqlc/dbprepared")
	if code != exitClean {
		t.Fatalf("-exclude: exit %d, want 0\n%s%s", code, stdout, stderr)
	}
	if !strings.Contains(stdout, "0 findings, 4 allowed by allow-pin comments") || !strings.Contains(stdout, "5 in excluded files") {
		t.Errorf("summary does not count allowed and excluded findings:\n%s", stdout)
	}
}

// textLine is the text format: file:line:col: reason[,reason]: fingerprint (remedy).
var textLine = regexp.MustCompile(`^[^:\s]+:\d+:\d+: [a-z_]+(,[a-z_]+)*: .+ \(.+\)( \[.+\])?$`)

func TestTextFormat(t *testing.T) {
	stdout, _, code := runLint(t, examplesDir, "./sqlc/...")
	if code != exitFindings {
		t.Fatalf("exit %d\n%s", code, stdout)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	for _, l := range lines[:len(lines)-1] {
		if !textLine.MatchString(l) {
			t.Errorf("not a finding line: %q", l)
		}
	}
	if sum := lines[len(lines)-1]; !strings.HasPrefix(sum, "rdsproxy-lint: 5 findings (prepared_statement: 5), 1 allowed") {
		t.Errorf("summary: %q", sum)
	}
}

// TestSARIF checks the fields of SARIF 2.1.0 that code scanning requires.
func TestSARIF(t *testing.T) {
	stdout, stderr, code := runLint(t, examplesDir, "-format", "sarif")
	if code != exitFindings {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var log struct {
		Version string `json:"version"`
		Runs    []struct {
			Tool struct {
				Driver struct {
					Name  string `json:"name"`
					Rules []struct {
						ID string `json:"id"`
					} `json:"rules"`
				} `json:"driver"`
			} `json:"tool"`
			Results []struct {
				RuleID  string `json:"ruleId"`
				Level   string `json:"level"`
				Message struct {
					Text string `json:"text"`
				} `json:"message"`
				Locations []struct {
					PhysicalLocation struct {
						ArtifactLocation struct {
							URI string `json:"uri"`
						} `json:"artifactLocation"`
						Region struct {
							StartLine   int `json:"startLine"`
							StartColumn int `json:"startColumn"`
						} `json:"region"`
					} `json:"physicalLocation"`
				} `json:"locations"`
				Suppressions []struct {
					Kind          string `json:"kind"`
					Justification string `json:"justification"`
				} `json:"suppressions"`
			} `json:"results"`
		} `json:"runs"`
	}
	if err := json.Unmarshal([]byte(stdout), &log); err != nil {
		t.Fatal(err)
	}
	if log.Version != "2.1.0" || len(log.Runs) != 1 || log.Runs[0].Tool.Driver.Name != "rdsproxy-lint" {
		t.Fatalf("header: %+v", log)
	}
	rules := map[string]bool{}
	for _, r := range log.Runs[0].Tool.Driver.Rules {
		rules[r.ID] = true
	}
	results := log.Runs[0].Results
	if len(results) != 9 {
		t.Errorf("%d results, want 5 findings and 4 allowed", len(results))
	}
	suppressed := 0
	for _, r := range results {
		if !rules[r.RuleID] || r.Level == "" || r.Message.Text == "" || len(r.Locations) != 1 {
			t.Errorf("incomplete result %+v", r)
			continue
		}
		pl := r.Locations[0].PhysicalLocation
		if pl.ArtifactLocation.URI == "" || filepath.IsAbs(pl.ArtifactLocation.URI) || pl.Region.StartLine < 1 || pl.Region.StartColumn < 1 {
			t.Errorf("location %+v", pl)
		}
		if len(r.Suppressions) > 0 {
			suppressed++
			if r.Suppressions[0].Kind != "inSource" || r.Suppressions[0].Justification == "" {
				t.Errorf("suppression %+v", r.Suppressions)
			}
		}
	}
	if suppressed != 4 {
		t.Errorf("%d suppressed results, want 4", suppressed)
	}
}

// TestLoadError: a package that does not type-check is exit status 2 with
// the loader's message, never a clean run.
func TestLoadError(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module broken\n\ngo 1.22\n")
	write("x.go", "package broken\n\nvar n int = \"not a number\"\n")
	_, stderr, code := runLint(t, dir)
	if code != exitError || !strings.Contains(stderr, "x.go:3") || !strings.Contains(stderr, "cannot use") {
		t.Errorf("exit %d, stderr %q; want 2 and the type error", code, stderr)
	}
	write("x.go", "package broken\n")
	write("bad.sql", "SET a = 1;\n")
	if _, stderr, code := runLint(t, dir, "-format", "xml"); code != exitError || !strings.Contains(stderr, "xml") {
		t.Errorf("-format xml: exit %d %q", code, stderr)
	}
	if _, stderr, code := runLint(t, dir, "-exclude", "[", "bad.sql"); code != exitError {
		t.Errorf("-exclude [: exit %d %q", code, stderr)
	}
	if _, stderr, code := runLint(t, dir, "missing.sql"); code != exitError {
		t.Errorf("missing file: exit %d %q", code, stderr)
	}
	// A stale allow-pin comment is a warning, not a finding.
	write("stale.sql", "-- rdsproxy:allow-pin the SET moved to the DSN\nSELECT 1;\n")
	if out, _, code := runLint(t, dir, "stale.sql"); code != exitClean ||
		!strings.HasPrefix(out, "stale.sql:1:1: warning: unused rdsproxy:allow-pin: no finding on this line or the next\n") ||
		!strings.Contains(out, "1 unused allow-pin comment") {
		t.Errorf("stale.sql: exit %d %q", code, out)
	}
	if out, _, code := runLint(t, dir, "bad.sql"); code != exitFindings || !strings.HasPrefix(out, "bad.sql:1:1: session_setting: SET a = ?") {
		t.Errorf("bad.sql: exit %d %q", code, out)
	}
}

// TestLibraryDoesNotBuildTools: a program that imports only the library
// (the quickstart, the Lambda example) must not build golang.org/x/tools or
// the YAML parser, which only the linter needs.
func TestLibraryDoesNotBuildTools(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	for _, tc := range []struct {
		dir  string
		args []string
	}{
		{filepath.Join("..", ".."), []string{"."}},
		{examplesDir, []string{"./quickstart", "./lambda"}},
		{examplesDir, []string{"-tags", "lambda.norpc", "./lambda"}},
	} {
		cmd := exec.Command("go", append([]string{"list", "-deps"}, tc.args...)...)
		cmd.Dir = tc.dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %v: %v\n%s", tc.args, err, out)
		}
		if !strings.Contains(string(out), "github.com/rdsproxy/rdsproxy\n") {
			t.Fatalf("go list -deps %v does not list the library:\n%s", tc.args, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			if strings.HasPrefix(dep, "golang.org/x/tools") || strings.HasPrefix(dep, "go.yaml.in/") || strings.HasPrefix(dep, "github.com/rdsproxy/rdsproxy/pinlint") {
				t.Errorf("go list -deps %v includes %s", tc.args, dep)
			}
		}
	}
}

// TestVetTool runs the command under go vet -vettool, which speaks the
// unitchecker protocol: the analyzer's findings come out as vet's.
func TestVetTool(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the command")
	}
	bin := filepath.Join(t.TempDir(), "rdsproxy-lint")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	cmd := exec.Command("go", "vet", "-vettool="+bin, "./sqlc/dbprepared", "./quickstart")
	cmd.Dir = examplesDir
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("go vet: no failure\n%s", out)
	}
	want := "db.go:" + itoa(lineOf(t, "sqlc/dbprepared/db.go", "db.PrepareContext(ctx, createAuthor)")) + ":"
	if !strings.Contains(string(out), want) || !strings.Contains(string(out), "prepared_statement") {
		t.Errorf("go vet output lacks %s prepared_statement:\n%s", want, out)
	}
	// The quickstart's deliberate pins carry allow-pin comments.
	if strings.Contains(string(out), "quickstart") {
		t.Errorf("allowed findings reported by go vet:\n%s", out)
	}
}

// TestNoValuesInOutput: literal values in SQL and DSNs (a password, a key)
// never reach the output, in any format; statements are fingerprints.
func TestNoValuesInOutput(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module secrets\n\ngo 1.22\n")
	write("s.go", `package secrets

import "database/sql"

const dsn = "postgres://app:hunter2-password@proxy/db?default_query_exec_mode=cache_statement"

func f(db *sql.DB) {
	db.Exec("SET app.api_key = 'sk-live-secret-1234'")
	db.Exec("SELECT pg_advisory_lock(987654321)")
}
`)
	write("q.sql", "SET app.token TO 'tok-secret-5678';\n")
	for _, format := range []string{"text", "json", "sarif"} {
		out, stderr, code := runLint(t, dir, "-v", "-format", format)
		if code != exitFindings {
			t.Fatalf("%s: exit %d: %s", format, code, stderr)
		}
		for _, secret := range []string{"hunter2", "sk-live", "987654321", "tok-secret"} {
			if strings.Contains(out+stderr, secret) {
				t.Errorf("%s output contains %q:\n%s", format, secret, out)
			}
		}
		if !strings.Contains(out, "SET app.api_key = ?") {
			t.Errorf("%s output lacks the fingerprint:\n%s", format, out)
		}
	}
}
