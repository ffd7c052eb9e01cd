// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

package pinlint_test

import (
	"strings"
	"testing"

	"golang.org/x/tools/go/analysis/analysistest"

	"github.com/rdsproxy/rdsproxy/pinlint"
)

// TestAnalyzer runs the analyzer over one package per API family. The stub
// packages under testdata/src (pgx, pgxpool, pgconn, sqlx, gorm) have the
// real import paths and method signatures, which is all the analyzer looks
// at; database/sql is the real standard library.
func TestAnalyzer(t *testing.T) {
	results := analysistest.Run(t, analysistest.TestData(), pinlint.Analyzer, "sqldb", "pgxuse", "sqlxuse", "gormuse")
	for _, r := range results {
		if r.Action.Package.PkgPath != "sqldb" {
			continue
		}
		res := r.Action.Result.(*pinlint.Result)
		// Suppressed findings are kept in the result with their reason.
		var suppressed []string
		for _, f := range res.Findings {
			if f.Suppressed {
				suppressed = append(suppressed, f.Statement+" | "+f.Justification)
			}
		}
		wantSuppressed := []string{
			"SET lock_timeout = ? | runs on the migration connection, not through the proxy",
			"SELECT pg_advisory_lock(?) | the lock is released by the same session before it returns to the pool",
			"LISTEN ok | a space after // and a colon are accepted",
			"DISCARD TEMP | a suppression at the caller's constant works too",
		}
		if strings.Join(suppressed, "\n") != strings.Join(wantSuppressed, "\n") {
			t.Errorf("suppressed:\n%s\nwant:\n%s", strings.Join(suppressed, "\n"), strings.Join(wantSuppressed, "\n"))
		}
		// Dynamic SQL is listed as unchecked, also a parameter of a function
		// used as a value (escapes), besides its constant.
		var unchecked []string
		for _, u := range res.Unchecked {
			unchecked = append(unchecked, u.Expr)
		}
		for _, w := range []string{`fmt.Sprintf("SET search_path TO %s", tenant)`, `"SET search_path TO " + tenant`, "setPath", "q"} {
			if !strings.Contains("\n"+strings.Join(unchecked, "\n")+"\n", "\n"+w+"\n") {
				t.Errorf("unchecked %q missing from %q", w, unchecked)
			}
		}
		var escapesUnchecked bool
		for _, u := range res.Unchecked {
			escapesUnchecked = escapesUnchecked || (u.Expr == "q" && u.Pos.Line == lineOfFinding(res, "UNLISTEN *"))
		}
		if !escapesUnchecked {
			t.Errorf("escapes's parameter is not unchecked: %+v", res.Unchecked)
		}
		// Every allow-pin comment is listed; only the stale one is unused.
		var unused []string
		for _, a := range res.AllowPins {
			if !a.Used {
				unused = append(unused, a.Why)
			}
		}
		if len(res.AllowPins) < 6 || strings.Join(unused, "|") != "stale: nothing here pins any more" {
			t.Errorf("allow-pins %+v: want the stale one alone unused", res.AllowPins)
		}
		return
	}
	t.Fatal("no result for sqldb")
}

func TestFuncFlag(t *testing.T) {
	for _, bad := range []string{"nodot:1", "example.com/db.Run", "example.com/db.Run:x", "example.com/db.Run:-1", "example.com/db:1"} {
		if err := pinlint.Analyzer.Flags.Set("func", bad); err == nil {
			t.Errorf("-func %q: no error", bad)
		}
	}
}

// TestExtraFuncs: -func adds a function and a method of the application's
// own packages; their other arguments and other functions stay unchecked.
func TestExtraFuncs(t *testing.T) {
	if err := pinlint.Analyzer.Flags.Set("func", "extra/db.Run:1,extra/db.Store.Exec:0"); err != nil {
		t.Fatal(err)
	}
	analysistest.Run(t, analysistest.TestData(), pinlint.Analyzer, "extra/use")
}

// lineOfFinding returns the line of the finding whose statement is stmt.
func lineOfFinding(res *pinlint.Result, stmt string) int {
	for _, f := range res.Findings {
		if f.Statement == stmt {
			return f.Pos.Line
		}
	}
	return -1
}
