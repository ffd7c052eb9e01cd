// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

package pinlint

import (
	"go/token"
	"path/filepath"
	"regexp"
	"strings"
)

// SQL file kinds, which decide what a tool sends as one query. They are the
// Source of the findings in such a file.
const (
	KindSQLCQueries   = "sqlc query file"
	KindGoose         = "goose migration"
	KindGolangMigrate = "golang-migrate migration"
	KindSQL           = "sql file"
)

var (
	// sqlcName is sqlc's query annotation: -- name: GetAuthor :one
	sqlcName = regexp.MustCompile(`(?m)^[ \t]*--[ \t]*name:[ \t]*(\S+)[ \t]+:\S+`)
	// gooseAnnotation is a goose directive line: -- +goose Up, Down,
	// StatementBegin, StatementEnd, NO TRANSACTION, ENVSUB ON|OFF.
	gooseAnnotation = regexp.MustCompile(`^[ \t]*--[ \t]*\+goose[ \t]+(.*?)[ \t]*$`)
	// sqlAllowPin is an allow-pin directive in an SQL (-- or /* */) or YAML
	// (#) comment: the comment marker, the directive and the start of the
	// reason (group 2).
	sqlAllowPin = regexp.MustCompile(`(--|/\*|#)[ \t]*` + regexp.QuoteMeta(allowPin) + `(?:$|[ \t:]|\*/)`)
)

// unit is the text a tool sends as one query, and where it starts in the file.
type unit struct {
	text   string
	offset int
	name   string // sqlc query name
}

// SQLFileKind classifies an .sql file by its name and annotations.
func SQLFileKind(name string, src string) string {
	base := strings.ToLower(filepath.Base(name))
	switch {
	case strings.HasSuffix(base, ".up.sql") || strings.HasSuffix(base, ".down.sql"):
		return KindGolangMigrate
	case hasGooseAnnotation(src):
		return KindGoose
	case sqlcName.MatchString(src):
		return KindSQLCQueries
	}
	return KindSQL
}

func hasGooseAnnotation(src string) bool {
	for line := range strings.Lines(src) {
		if m := gooseAnnotation.FindStringSubmatch(strings.TrimRight(line, "\r\n")); m != nil {
			return true
		}
	}
	return false
}

// CheckSQLFile checks the statements of one .sql file, each at its own line.
// The file is split as its tool sends it: a sqlc query file per query (the
// query's name is in the finding's Note), a goose migration per statement
// (goose's rules: a line ending in a semicolon ends one, except between
// StatementBegin and StatementEnd), a golang-migrate migration and any
// other .sql file as one query, as golang-migrate and db.Exec(file) do.
//
// The result has no Unchecked entries.
func CheckSQLFile(name string, src []byte) *Result {
	text := string(src)
	kind := SQLFileKind(name, text)
	var units []unit
	switch kind {
	case KindSQLCQueries:
		units = sqlcUnits(text)
	case KindGoose:
		units = gooseUnits(text)
	default:
		units = []unit{{text: text}}
	}
	lines := newLineIndex(text)
	allow := sqlAllowances(name, text)
	var out []Finding
	for _, u := range units {
		cursor := 0
		for _, s := range analyzeSQL(u.text) {
			at := locate(u.text, s.text, cursor)
			if at >= 0 {
				cursor = at + 1
			} else {
				at = 0
			}
			off := u.offset + skipSpaceAndComments(u.text, at)
			f := Finding{Pos: lines.position(name, off), Reasons: s.reasons, Statement: fingerprint(s.text),
				Remedy: s.remedy, Source: kind}
			if u.name != "" {
				f.Note = "query " + u.name
			}
			allow.apply(&f, commentBlockAbove(text, lines, f.Pos.Line)...)
			out = append(out, f)
		}
	}
	return &Result{Findings: out, AllowPins: allow.list()}
}

// locate finds the statement text AnalyzePinning returned (trimmed, maybe
// cut and ended with "...") in src at or after from; -1 if it is not there.
func locate(src, stmt string, from int) int {
	if from > len(src) {
		from = len(src)
	}
	if i := strings.Index(src[from:], stmt); i >= 0 {
		return from + i
	}
	if cut, ok := strings.CutSuffix(stmt, "..."); ok && cut != "" {
		if i := strings.Index(src[from:], cut); i >= 0 {
			return from + i
		}
	}
	return -1
}

// skipSpaceAndComments returns the offset of the first token at or after i,
// so that a finding points at the statement, not at a comment before it.
func skipSpaceAndComments(src string, i int) int {
	for i < len(src) {
		switch {
		case src[i] == ' ' || src[i] == '\t' || src[i] == '\n' || src[i] == '\r' || src[i] == '\f':
			i++
		case strings.HasPrefix(src[i:], "--"):
			j := strings.IndexByte(src[i:], '\n')
			if j < 0 {
				return len(src)
			}
			i += j + 1
		case strings.HasPrefix(src[i:], "/*"):
			j := strings.Index(src[i+2:], "*/")
			if j < 0 {
				return len(src)
			}
			i += j + 4
		default:
			return i
		}
	}
	return i
}

// sqlcUnits splits a sqlc query file at its -- name: annotations.
func sqlcUnits(src string) []unit {
	ms := sqlcName.FindAllStringSubmatchIndex(src, -1)
	var out []unit
	for i, m := range ms {
		end := len(src)
		if i+1 < len(ms) {
			end = ms[i+1][0]
		}
		out = append(out, unit{text: src[m[1]:end], offset: m[1], name: src[m[2]:m[3]]})
	}
	return out
}

// gooseUnits splits a goose migration as goose does. Goose's own parser is in
// an internal package of a module the library should not depend on, and its
// rules are few: outside StatementBegin/StatementEnd a line whose code ends
// in a semicolon ends the statement; annotation lines are not sent.
func gooseUnits(src string) []unit {
	var out []unit
	start, inBlock := -1, false
	flush := func(end int) {
		if start >= 0 && strings.TrimSpace(src[start:end]) != "" {
			out = append(out, unit{text: src[start:end], offset: start})
		}
		start = -1
	}
	off := 0
	for line := range strings.Lines(src) {
		lineStart := off
		off += len(line)
		if m := gooseAnnotation.FindStringSubmatch(strings.TrimRight(line, "\r\n")); m != nil {
			switch strings.ToLower(m[1]) {
			case "statementbegin":
				flush(lineStart)
				inBlock = true
			case "statementend":
				flush(lineStart)
				inBlock = false
			case "up", "down":
				flush(lineStart)
			}
			continue
		}
		if start < 0 {
			if strings.TrimSpace(line) == "" {
				continue
			}
			start = lineStart
		}
		if !inBlock && endsWithSemicolon(line) {
			flush(off)
		}
	}
	flush(len(src))
	return out
}

// endsWithSemicolon reports whether the code on line (before a -- comment)
// ends with a semicolon.
func endsWithSemicolon(line string) bool {
	if i := strings.Index(line, "--"); i >= 0 {
		line = line[:i]
	}
	return strings.HasSuffix(strings.TrimSpace(line), ";")
}

// sqlAllowances returns the allow-pin comments of an SQL or YAML file.
func sqlAllowances(name, src string) allowances {
	a := allowances{}
	n := 0
	for line := range strings.Lines(src) {
		n++
		text := strings.TrimRight(line, "\r\n")
		if m := sqlAllowPin.FindStringSubmatchIndex(text); m != nil {
			rest := text[m[0]+len(text[m[2]:m[3]]):] // after the comment marker
			if text[m[2]:m[3]] == "/*" {
				rest, _, _ = strings.Cut(rest, "*/")
			}
			why, _ := parseAllowPin(rest)
			a[n] = &AllowPin{Pos: token.Position{Filename: name, Line: n, Column: m[0] + 1}, Why: why}
		}
	}
	return a
}

// commentBlockAbove returns line and the lines of the comment block directly
// above it, so that an allow-pin comment above a sqlc -- name: annotation
// also applies to its query. apply looks one line further up on its own.
func commentBlockAbove(src string, lines lineIndex, line int) []int {
	out := []int{line}
	for l := line - 1; l >= 1; l-- {
		if !strings.HasPrefix(strings.TrimSpace(lines.text(src, l)), "--") {
			break
		}
		out = append(out, l)
	}
	return out
}

// lineIndex maps offsets to positions.
type lineIndex []int // offsets of line starts

func newLineIndex(src string) lineIndex {
	idx := lineIndex{0}
	for i := range len(src) {
		if src[i] == '\n' {
			idx = append(idx, i+1)
		}
	}
	return idx
}

func (li lineIndex) position(file string, off int) token.Position {
	l := 0
	for l+1 < len(li) && li[l+1] <= off {
		l++
	}
	return token.Position{Filename: file, Offset: off, Line: l + 1, Column: off - li[l] + 1}
}

func (li lineIndex) text(src string, line int) string {
	if line < 1 || line > len(li) {
		return ""
	}
	end := len(src)
	if line < len(li) {
		end = li[line]
	}
	return src[li[line-1]:end]
}
