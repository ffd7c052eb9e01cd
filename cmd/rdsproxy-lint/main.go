// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

// Command rdsproxy-lint finds the SQL and settings that would pin RDS Proxy
// sessions before traffic goes through the proxy: in Go code (database/sql,
// pgx, sqlx, GORM), in .sql files (sqlc queries, goose and golang-migrate
// migrations) and in sqlc configuration. Each verdict is
// rdsproxy.AnalyzePinning's.
//
//	go run github.com/rdsproxy/rdsproxy/cmd/rdsproxy-lint@latest ./...
//
// Usage:
//
//	rdsproxy-lint [flags] [packages] [.sql files, sqlc configs or directories]
//
// With no arguments it checks ./... and every .sql file and sqlc config under
// the working directory, skipping what ./... skips (testdata, vendor, names
// starting with . or _, nested modules). A package pattern also checks the
// .sql files of its directories (recursively for dir/...).
//
// Output is one finding per line, file:line:col: reason[,reason]: fingerprint
// (remedy), then a summary; -format json and -format sarif (2.1.0, for code
// scanning) are for tools. Exit status: 0 no findings, 1 findings, 2 the
// packages or files could not be loaded.
//
// A finding is accepted with a comment on its line or the line before,
// giving the reason: //rdsproxy:allow-pin <why> in Go, -- rdsproxy:allow-pin
// <why> in SQL, # rdsproxy:allow-pin <why> in YAML. Accepted findings are
// counted in the summary and listed with -v.
//
// Run as go vet -vettool=$(which rdsproxy-lint) ./... it speaks go vet's
// protocol (Go code only, with go vet's output and exit status).
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/tools/go/analysis/unitchecker"

	"github.com/rdsproxy/rdsproxy/pinlint"
)

// Exit statuses.
const (
	exitClean    = 0
	exitFindings = 1
	exitError    = 2
)

func main() {
	if isVetInvocation(os.Args[1:]) {
		unitchecker.Main(pinlint.Analyzer) // does not return
	}
	wd, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(os.Stderr, "rdsproxy-lint:", err)
		os.Exit(exitError)
	}
	os.Exit(run(os.Args[1:], wd, os.Stdout, os.Stderr))
}

// isVetInvocation reports whether go vet -vettool started the command: it
// asks for -V=full and -flags, then passes one .cfg file.
func isVetInvocation(args []string) bool {
	if len(args) == 0 {
		return false
	}
	first, last := args[0], args[len(args)-1]
	return first == "-V=full" || first == "-flags" || strings.HasSuffix(last, ".cfg")
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// options are the command's flags.
type options struct {
	format   string
	verbose  bool
	tests    bool
	tags     string
	excludes multiFlag
	funcs    multiFlag
}

// run is the command with its arguments, run in the directory wd.
func run(args []string, wd string, stdout, stderr io.Writer) int {
	var o options
	fs := flag.NewFlagSet("rdsproxy-lint", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.format, "format", "text", "output `format`: text, json or sarif")
	fs.BoolVar(&o.verbose, "v", false, "also list suppressed findings and the SQL that could not be checked")
	fs.BoolVar(&o.tests, "tests", true, "also check the packages' test files")
	fs.StringVar(&o.tags, "tags", "", "comma-separated build `tags` for loading packages")
	fs.Var(&o.excludes, "exclude", "skip files matching `glob` (repeatable); a glob without / matches any path element, one with / the path from the working directory or a directory above the file")
	fs.Var(&o.funcs, "func", "also check `importpath.Func:N` or importpath.Type.Method:N, whose argument N is SQL (repeatable)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: rdsproxy-lint [flags] [packages] [.sql files, sqlc configs or directories]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitError
	}
	switch o.format {
	case "text", "json", "sarif":
	default:
		fmt.Fprintf(stderr, "rdsproxy-lint: -format %q: want text, json or sarif\n", o.format)
		return exitError
	}
	for _, g := range o.excludes {
		if err := checkGlob(g); err != nil {
			fmt.Fprintf(stderr, "rdsproxy-lint: -exclude %q: %v\n", g, err)
			return exitError
		}
	}
	if err := pinlint.SetFuncs(o.funcs...); err != nil {
		fmt.Fprintln(stderr, "rdsproxy-lint:", err)
		return exitError
	}
	rep, err := lint(wd, fs.Args(), o)
	if err != nil {
		fmt.Fprintln(stderr, "rdsproxy-lint:", err)
		return exitError
	}
	switch o.format {
	case "json":
		err = writeJSON(stdout, rep)
	case "sarif":
		err = writeSARIF(stdout, rep)
	default:
		writeText(stdout, rep, o.verbose)
	}
	if err != nil {
		fmt.Fprintln(stderr, "rdsproxy-lint:", err)
		return exitError
	}
	if len(rep.findings) > 0 {
		return exitFindings
	}
	return exitClean
}
