// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/rdsproxy/rdsproxy"
	"github.com/rdsproxy/rdsproxy/pinlint"
)

// allowPinDirective is the suppression comment's keyword, for messages.
const allowPinDirective = "rdsproxy:allow-pin"

// writeText prints one finding per line and a summary by reason.
func writeText(w io.Writer, rep *report, verbose bool) {
	for _, f := range rep.findings {
		fmt.Fprintf(w, "%s: %s\n", posString(f), f.Message())
	}
	for _, a := range rep.unusedAllows {
		fmt.Fprintf(w, "%s:%d:%d: warning: unused %s: no finding on this line or the next\n", a.Pos.Filename, a.Pos.Line, a.Pos.Column, allowPinDirective)
	}
	if verbose {
		for _, f := range rep.suppressed {
			fmt.Fprintf(w, "%s: allowed (%s): %s\n", posString(f), f.Justification, f.Message())
		}
		for _, u := range rep.unchecked {
			fmt.Fprintf(w, "%s:%d:%d: unchecked: SQL not a constant: %s [%s]\n", u.Pos.Filename, u.Pos.Line, u.Pos.Column, u.Expr, u.Source)
		}
	}
	fmt.Fprintf(w, "rdsproxy-lint: %d finding%s%s", len(rep.findings), plural(len(rep.findings)), byReason(rep.findings))
	fmt.Fprintf(w, ", %d allowed by allow-pin comments%s", len(rep.suppressed), byReason(rep.suppressed))
	if rep.excluded > 0 {
		fmt.Fprintf(w, ", %d in excluded files", rep.excluded)
	}
	if len(rep.unusedAllows) > 0 {
		fmt.Fprintf(w, ", %d unused allow-pin comment%s", len(rep.unusedAllows), plural(len(rep.unusedAllows)))
	}
	fmt.Fprintf(w, ", %d unchecked (SQL not a constant", len(rep.unchecked))
	if !verbose && (len(rep.unchecked) > 0 || len(rep.suppressed) > 0) {
		fmt.Fprint(w, "; -v lists them and the allowed findings")
	}
	fmt.Fprintln(w, ")")
}

func posString(f pinlint.Finding) string {
	return fmt.Sprintf("%s:%d:%d", f.Pos.Filename, f.Pos.Line, f.Pos.Column)
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// byReason is " (reason: n, ...)" in canonical reason order, or "".
func byReason(fs []pinlint.Finding) string {
	counts := map[rdsproxy.PinReason]int{}
	var order []rdsproxy.PinReason
	for _, f := range fs {
		for _, r := range f.Reasons {
			if counts[r] == 0 {
				order = append(order, r)
			}
			counts[r]++
		}
	}
	if len(order) == 0 {
		return ""
	}
	slices.SortFunc(order, func(a, b rdsproxy.PinReason) int { return strings.Compare(string(a), string(b)) })
	parts := make([]string, len(order))
	for i, r := range order {
		parts[i] = fmt.Sprintf("%s: %d", r, counts[r])
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// jsonFinding is one finding in -format json.
type jsonFinding struct {
	File          string   `json:"file"`
	Line          int      `json:"line"`
	Column        int      `json:"column"`
	Reasons       []string `json:"reasons"`
	Statement     string   `json:"statement"`
	Remedy        string   `json:"remedy"`
	Source        string   `json:"source"`
	Note          string   `json:"note,omitempty"`
	Justification string   `json:"justification,omitempty"`
}

type jsonUnchecked struct {
	File   string `json:"file"`
	Line   int    `json:"line"`
	Column int    `json:"column"`
	Expr   string `json:"expr"`
	Source string `json:"source"`
}

type jsonAllowPin struct {
	File          string `json:"file"`
	Line          int    `json:"line"`
	Column        int    `json:"column"`
	Justification string `json:"justification"`
}

type jsonReport struct {
	Findings      []jsonFinding   `json:"findings"`
	Suppressed    []jsonFinding   `json:"suppressed"`
	Unchecked     int             `json:"unchecked"`
	UncheckedSQL  []jsonUnchecked `json:"unchecked_sql"`
	ExcludedCount int             `json:"excluded"`
	UnusedAllows  []jsonAllowPin  `json:"unused_allow_pins"`
}

func toJSON(f pinlint.Finding) jsonFinding {
	rs := make([]string, len(f.Reasons))
	for i, r := range f.Reasons {
		rs[i] = string(r)
	}
	return jsonFinding{File: f.Pos.Filename, Line: f.Pos.Line, Column: f.Pos.Column, Reasons: rs,
		Statement: f.Statement, Remedy: f.Remedy, Source: f.Source, Note: f.Note, Justification: f.Justification}
}

func writeJSON(w io.Writer, rep *report) error {
	out := jsonReport{Findings: []jsonFinding{}, Suppressed: []jsonFinding{}, Unchecked: len(rep.unchecked),
		UncheckedSQL: []jsonUnchecked{}, ExcludedCount: rep.excluded, UnusedAllows: []jsonAllowPin{}}
	for _, a := range rep.unusedAllows {
		out.UnusedAllows = append(out.UnusedAllows, jsonAllowPin{File: a.Pos.Filename, Line: a.Pos.Line, Column: a.Pos.Column, Justification: a.Why})
	}
	for _, f := range rep.findings {
		out.Findings = append(out.Findings, toJSON(f))
	}
	for _, f := range rep.suppressed {
		out.Suppressed = append(out.Suppressed, toJSON(f))
	}
	for _, u := range rep.unchecked {
		out.UncheckedSQL = append(out.UncheckedSQL, jsonUnchecked{File: u.Pos.Filename, Line: u.Pos.Line, Column: u.Pos.Column, Expr: u.Expr, Source: u.Source})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
