// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

package pinlint

import (
	"go/token"
	"slices"
	"strings"

	"github.com/rdsproxy/rdsproxy"
	"github.com/rdsproxy/rdsproxy/internal/pinning"
)

// Finding is one statement or setting that pins the RDS Proxy session, at
// the place in the source that carries it.
type Finding struct {
	Pos     token.Position
	Reasons []rdsproxy.PinReason
	// Statement is the statement's fingerprint: comments dropped and literal
	// values replaced by ?, as the runtime check logs it, so a CI log shows
	// no values and a finding can be matched with a runtime warning. For
	// findings about a setting (GORM PrepareStmt, sqlc emit_prepared_queries,
	// a DSN) it names the setting.
	Statement string
	// Remedy is one line of advice per reason, joined with "; ".
	Remedy string
	// Source names the API or file kind that carried the SQL, e.g.
	// "database/sql DB.ExecContext" or "goose migration".
	Source string
	// Note adds context: the sqlc query name, or where a constant passed
	// through a parameter came from.
	Note string
	// Suppressed is set by an allow-pin comment with a reason; Justification
	// is that reason.
	Suppressed    bool
	Justification string
}

// Message is the finding without its position: reasons, fingerprint,
// (remedy) and [note].
func (f Finding) Message() string {
	rs := make([]string, len(f.Reasons))
	for i, r := range f.Reasons {
		rs[i] = string(r)
	}
	msg := strings.Join(rs, ",") + ": " + f.Statement + " (" + f.Remedy + ")"
	if f.Note != "" {
		msg += " [" + f.Note + "]"
	}
	return msg
}

// Unchecked is SQL the analyzer could not evaluate: not a constant. It
// is never a finding: the runtime check sees it.
type Unchecked struct {
	Pos    token.Position
	Source string
	Expr   string
}

// Remedies for what only the API shows, not the SQL text: a named
// server-side prepared statement. They match the runtime check's advice.
const (
	prepareRemedy = "Prepare creates a named server-side statement, which exists in one session only; " +
		"use Query/Exec with arguments (rdsproxy caches statement descriptions without server state)"
	gormPrepareRemedy = "leave GORM's PrepareStmt off: it prepares every statement as a named server-side statement"
	sqlcPrepareRemedy = "remove emit_prepared_queries: the generated Prepare creates a named server-side statement per query"
	dsnPrepareRemedy  = "drop default_query_exec_mode=cache_statement: it prepares every statement as a named " +
		"server-side statement; rdsproxy's default (cache_describe) leaves no server state"
)

// canonicalReasons is the order of rdsproxy's pin reason constants, used to
// merge reasons from the API (prepared_statement) with those of the SQL.
var canonicalReasons = []rdsproxy.PinReason{
	rdsproxy.PinSessionSetting, rdsproxy.PinPreparedStatement, rdsproxy.PinDiscard,
	rdsproxy.PinTempObject, rdsproxy.PinCursor, rdsproxy.PinListen, rdsproxy.PinLoad,
	rdsproxy.PinSequence, rdsproxy.PinAdvisoryLock, rdsproxy.PinStatementSize,
}

func reasonRank(r rdsproxy.PinReason) int {
	if i := slices.Index(canonicalReasons, r); i >= 0 {
		return i
	}
	return len(canonicalReasons) // a reason added later sorts last
}

// stmtFinding is one offending statement of an AnalyzePinning report.
type stmtFinding struct {
	text    string // the statement as AnalyzePinning returned it (trimmed, maybe truncated)
	reasons []rdsproxy.PinReason
	remedy  string
}

// analyzeSQL runs rdsproxy.AnalyzePinning, the only rule set, and groups its
// findings by statement. A parse error (cgo builds only) does not change the
// verdict: AnalyzePinning then returns the lexical classifier's report, which
// is the one a CGO_ENABLED=0 build uses.
func analyzeSQL(sql string) []stmtFinding {
	// The report is always usable; the error only says the verdict is the
	// lexical one.
	rep, _ := rdsproxy.AnalyzePinning(sql)
	var out []stmtFinding
	for _, f := range rep.Findings {
		if n := len(out); n > 0 && out[n-1].text == f.Statement {
			out[n-1].reasons = append(out[n-1].reasons, f.Reason)
			out[n-1].remedy += "; " + f.Remedy
			continue
		}
		out = append(out, stmtFinding{text: f.Statement, reasons: []rdsproxy.PinReason{f.Reason}, remedy: f.Remedy})
	}
	return out
}

// fingerprint returns the statement text without literal values, as the
// runtime check logs it.
func fingerprint(sql string) string {
	text, _ := pinning.Fingerprint(sql)
	return text
}

// mergeReasons returns a and b without duplicates in canonical order.
func mergeReasons(a []rdsproxy.PinReason, b ...rdsproxy.PinReason) []rdsproxy.PinReason {
	out := slices.Clone(a)
	for _, r := range b {
		if !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	slices.SortStableFunc(out, func(x, y rdsproxy.PinReason) int { return reasonRank(x) - reasonRank(y) })
	return out
}

// allowPin is the suppression directive, in a Go (//rdsproxy:allow-pin why)
// or SQL (-- rdsproxy:allow-pin why) or YAML (# rdsproxy:allow-pin why)
// comment on the finding's line or the line before.
const allowPin = "rdsproxy:allow-pin"

// noJustificationNote is added to a finding whose allow-pin comment gives
// no reason: such a comment does not suppress, so that every accepted pin
// says why it is acceptable.
const noJustificationNote = "allow-pin without a reason does not suppress: write " + allowPin + " <why>"

// parseAllowPin reports whether comment (its text after the comment marker)
// is an allow-pin directive and returns the reason given.
func parseAllowPin(comment string) (why string, ok bool) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(comment), allowPin)
	if !ok || (rest != "" && rest[0] != ' ' && rest[0] != '\t' && rest[0] != ':') {
		return "", false
	}
	return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(rest), ":")), true
}

// AllowPin is one allow-pin comment. Used reports whether it accepted (or, for
// lack of a reason, refused to accept) a finding; an unused one is stale.
type AllowPin struct {
	Pos  token.Position
	Why  string
	Used bool
}

// allowances maps line numbers of one file to the allow-pin comments on them.
type allowances map[int]*AllowPin

// list returns the comments in line order.
func (a allowances) list() []AllowPin {
	out := make([]AllowPin, 0, len(a))
	for _, x := range a {
		out = append(out, *x)
	}
	slices.SortFunc(out, func(x, y AllowPin) int { return x.Pos.Line - y.Pos.Line })
	return out
}

// apply marks f suppressed if an allow-pin comment with a reason is on any of
// lines or the line before it; one without a reason adds a note instead.
func (a allowances) apply(f *Finding, lines ...int) {
	for _, l := range lines {
		for _, at := range []int{l, l - 1} {
			x, ok := a[at]
			if !ok {
				continue
			}
			x.Used = true
			if x.Why == "" {
				f.Note = joinNote(f.Note, noJustificationNote)
				return
			}
			f.Suppressed, f.Justification = true, x.Why
			return
		}
	}
}

func joinNote(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}
