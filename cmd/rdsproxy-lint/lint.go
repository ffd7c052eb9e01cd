// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

package main

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/tools/go/analysis"
	"golang.org/x/tools/go/analysis/checker"
	"golang.org/x/tools/go/packages"

	"github.com/rdsproxy/rdsproxy/pinlint"
)

// report is everything one run found, with paths relative to the working
// directory.
type report struct {
	findings   []pinlint.Finding // not suppressed
	suppressed []pinlint.Finding
	unchecked  []pinlint.Unchecked
	excluded   int // findings in files matched by -exclude
	// unusedAllows are allow-pin comments that accepted nothing: stale, or
	// on the wrong line.
	unusedAllows []pinlint.AllowPin
}

// inputs are the command line's arguments, sorted into package patterns,
// files and directories to search for .sql files and sqlc configs.
type inputs struct {
	patterns []string
	files    []string
	dirs     []walkDir
}

type walkDir struct {
	dir       string
	recursive bool
}

func isSQLInput(name string) bool {
	return strings.EqualFold(filepath.Ext(name), ".sql") || pinlint.IsSQLCConfig(name)
}

// classify sorts args. A pattern dir/... also searches dir recursively for
// .sql files, a plain directory only itself; a directory without Go files is
// searched but not loaded as a package.
func classify(wd string, args []string) (inputs, error) {
	if len(args) == 0 {
		args = []string{"./..."}
	}
	var in inputs
	abs := func(p string) string {
		if filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(wd, p)
	}
	for _, a := range args {
		if isSQLInput(a) {
			if _, err := os.Stat(abs(a)); err != nil {
				return in, err
			}
			in.files = append(in.files, abs(a))
			continue
		}
		if dir, ok := strings.CutSuffix(a, "/..."); ok {
			if dir == "." || strings.HasPrefix(dir, "./") || strings.HasPrefix(dir, "../") || filepath.IsAbs(dir) {
				in.dirs = append(in.dirs, walkDir{abs(dir), true})
			}
			in.patterns = append(in.patterns, a)
			continue
		}
		if st, err := os.Stat(abs(a)); err == nil && st.IsDir() {
			in.dirs = append(in.dirs, walkDir{abs(a), false})
			if hasGoFiles(abs(a)) {
				in.patterns = append(in.patterns, a)
			}
			continue
		}
		in.patterns = append(in.patterns, a) // an import path
	}
	return in, nil
}

func hasGoFiles(dir string) bool {
	m, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	return len(m) > 0
}

// lint runs the analyzer over the packages and checks the SQL files.
func lint(wd string, args []string, o options) (*report, error) {
	in, err := classify(wd, args)
	if err != nil {
		return nil, err
	}
	rep := &report{}
	rel := func(p string) string {
		if r, err := filepath.Rel(wd, p); err == nil && !strings.HasPrefix(r, "..") {
			return filepath.ToSlash(r)
		}
		return filepath.ToSlash(p)
	}
	keep := func(f *pinlint.Finding) bool {
		f.Pos.Filename = rel(f.Pos.Filename)
		if excluded(o.excludes, f.Pos.Filename) {
			rep.excluded++
			return false
		}
		return true
	}
	var all []pinlint.Finding
	// allows merges the allow-pin comments by position: a comment is used if
	// any package variant (with or without tests) used it.
	allows := map[string]*pinlint.AllowPin{}
	addAllows := func(as []pinlint.AllowPin) {
		for _, a := range as {
			a.Pos.Filename = rel(a.Pos.Filename)
			if excluded(o.excludes, a.Pos.Filename) {
				continue
			}
			k := fmt.Sprintf("%s:%d:%d", a.Pos.Filename, a.Pos.Line, a.Pos.Column)
			if prev, ok := allows[k]; ok {
				prev.Used = prev.Used || a.Used
				continue
			}
			allows[k] = &a
		}
	}
	if len(in.patterns) > 0 {
		res, err := analyzePackages(wd, in.patterns, o)
		if err != nil {
			return nil, err
		}
		for _, r := range res {
			for _, f := range r.Findings {
				if keep(&f) {
					all = append(all, f)
				}
			}
			addAllows(r.AllowPins)
			for _, u := range r.Unchecked {
				u.Pos.Filename = rel(u.Pos.Filename)
				if !excluded(o.excludes, u.Pos.Filename) {
					rep.unchecked = append(rep.unchecked, u)
				}
			}
		}
	}
	files, err := sqlFiles(in)
	if err != nil {
		return nil, err
	}
	for _, name := range files {
		if excluded(o.excludes, rel(name)) {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			return nil, err
		}
		var res *pinlint.Result
		if pinlint.IsSQLCConfig(name) {
			if res, err = pinlint.CheckSQLCConfig(rel(name), src); err != nil {
				return nil, err
			}
		} else {
			res = pinlint.CheckSQLFile(rel(name), src)
		}
		all = append(all, res.Findings...)
		addAllows(res.AllowPins)
	}
	for _, a := range allows {
		if !a.Used {
			rep.unusedAllows = append(rep.unusedAllows, *a)
		}
	}
	slices.SortFunc(rep.unusedAllows, func(a, b pinlint.AllowPin) int {
		return cmp.Or(cmp.Compare(a.Pos.Filename, b.Pos.Filename), cmp.Compare(a.Pos.Line, b.Pos.Line))
	})
	all = dedup(all)
	for _, f := range all {
		if f.Suppressed {
			rep.suppressed = append(rep.suppressed, f)
		} else {
			rep.findings = append(rep.findings, f)
		}
	}
	rep.unchecked = dedupUnchecked(rep.unchecked)
	return rep, nil
}

// loadMode loads syntax and types for the named packages only; dependencies
// come from export data, which the analyzer (no facts) does not need more of.
const loadMode = packages.NeedName | packages.NeedFiles | packages.NeedSyntax | packages.NeedTypes |
	packages.NeedTypesInfo | packages.NeedImports | packages.NeedTypesSizes | packages.NeedModule

// analyzePackages loads the packages and runs the analyzer on each. A package
// that does not load or type-check is an error: the run's result would be
// incomplete.
func analyzePackages(wd string, patterns []string, o options) ([]*pinlint.Result, error) {
	cfg := &packages.Config{Mode: loadMode, Tests: o.tests, Dir: wd}
	if o.tags != "" {
		cfg.BuildFlags = []string{"-tags=" + o.tags}
	}
	pkgs, err := packages.Load(cfg, patterns...)
	if err != nil {
		return nil, err
	}
	var msgs []string
	packages.Visit(pkgs, nil, func(p *packages.Package) {
		for _, e := range p.Errors {
			msgs = append(msgs, e.Error())
		}
	})
	if len(msgs) > 0 {
		return nil, errors.New("packages could not be loaded:\n\t" + strings.Join(slices.Compact(msgs), "\n\t"))
	}
	// A pattern that matches no packages (a directory of .sql files only)
	// is no error; an import path that does not exist is a package error.
	g, err := checker.Analyze([]*analysis.Analyzer{pinlint.Analyzer}, pkgs, nil)
	if err != nil {
		return nil, err
	}
	var out []*pinlint.Result
	for _, act := range g.Roots {
		if act.Err != nil {
			return nil, fmt.Errorf("%s: %w", act.Package.PkgPath, act.Err)
		}
		if r, ok := act.Result.(*pinlint.Result); ok {
			out = append(out, r)
		}
	}
	return out, nil
}

// sqlFiles lists the .sql files and sqlc configs to check, each once.
func sqlFiles(in inputs) ([]string, error) {
	out := slices.Clone(in.files)
	for _, d := range in.dirs {
		err := filepath.WalkDir(d.dir, func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if e.IsDir() {
				if p == d.dir {
					return nil
				}
				if !d.recursive || skipDir(p, e.Name()) {
					return filepath.SkipDir
				}
				return nil
			}
			if isSQLInput(e.Name()) {
				out = append(out, p)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	for i, f := range out {
		out[i] = filepath.Clean(f)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// skipDir reports whether ./... would skip the directory: testdata, vendor,
// names starting with . or _, and nested modules.
func skipDir(p, name string) bool {
	if name == "testdata" || name == "vendor" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") {
		return true
	}
	_, err := os.Stat(filepath.Join(p, "go.mod"))
	return err == nil
}

// checkGlob rejects a malformed -exclude pattern up front.
func checkGlob(g string) error {
	_, err := path.Match(g, "")
	return err
}

// excluded reports whether file (slash-separated, relative) matches one of
// the globs: a glob without / against any path element, a glob with /
// against the path or any directory above the file.
func excluded(globs []string, file string) bool {
	for _, g := range globs {
		g = strings.TrimSuffix(filepath.ToSlash(g), "/")
		if !strings.Contains(g, "/") {
			for _, el := range strings.Split(file, "/") {
				if ok, _ := path.Match(g, el); ok {
					return true
				}
			}
			continue
		}
		for p := file; p != "." && p != "/" && p != ""; p = path.Dir(p) {
			if ok, _ := path.Match(strings.TrimPrefix(g, "./"), p); ok {
				return true
			}
		}
	}
	return false
}

// dedup drops findings reported twice (a package and its test variant) and
// sorts by position.
func dedup(fs []pinlint.Finding) []pinlint.Finding {
	slices.SortStableFunc(fs, func(a, b pinlint.Finding) int {
		return cmp.Or(cmp.Compare(a.Pos.Filename, b.Pos.Filename), cmp.Compare(a.Pos.Line, b.Pos.Line),
			cmp.Compare(a.Pos.Column, b.Pos.Column), cmp.Compare(a.Message(), b.Message()))
	})
	return slices.CompactFunc(fs, func(a, b pinlint.Finding) bool {
		return a.Pos == b.Pos && a.Message() == b.Message()
	})
}

func dedupUnchecked(us []pinlint.Unchecked) []pinlint.Unchecked {
	slices.SortStableFunc(us, func(a, b pinlint.Unchecked) int {
		return cmp.Or(cmp.Compare(a.Pos.Filename, b.Pos.Filename), cmp.Compare(a.Pos.Line, b.Pos.Line),
			cmp.Compare(a.Pos.Column, b.Pos.Column))
	})
	return slices.CompactFunc(us, func(a, b pinlint.Unchecked) bool {
		return a.Pos.Filename == b.Pos.Filename && a.Pos.Line == b.Pos.Line && a.Pos.Column == b.Pos.Column
	})
}
