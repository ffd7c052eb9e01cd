package pinning

import (
	"slices"
	"strings"
	"unicode/utf8"
)

// Reason is a stable identifier for why RDS Proxy pins a client session to its
// backend connection. The string values are part of the API: they appear in
// logs and metrics labels, so they never change once released.
type Reason string

// The reasons, in their canonical order (the order [Report.Reasons] uses).
const (
	ReasonSessionSetting    Reason = "session_setting"
	ReasonPreparedStatement Reason = "prepared_statement"
	ReasonDiscard           Reason = "discard"
	ReasonTempObject        Reason = "temp_object"
	ReasonCursor            Reason = "cursor"
	ReasonListen            Reason = "listen"
	ReasonLoad              Reason = "load"
	ReasonSequence          Reason = "sequence"
	ReasonAdvisoryLock      Reason = "advisory_lock"
	ReasonStatementSize     Reason = "statement_size"
)

// MaxStatementBytes is the largest statement text RDS Proxy handles without
// pinning. The proxy logs "The connection ran a SQL query which exceeded the
// 16384 byte limit.": the limit is on UTF-8 bytes, not characters, and a text
// of exactly this many bytes does not pin.
const MaxStatementBytes = 16384

// maxFindingStatementBytes bounds Finding.Statement and error texts so that a
// 1 MB INSERT does not end up in a log line.
const maxFindingStatementBytes = 200

// reasonSet is a bit set indexed like allReasons; it keeps the classifiers
// allocation-free and gives Reasons its canonical order for free.
type reasonSet uint16

var allReasons = [...]Reason{
	ReasonSessionSetting,
	ReasonPreparedStatement,
	ReasonDiscard,
	ReasonTempObject,
	ReasonCursor,
	ReasonListen,
	ReasonLoad,
	ReasonSequence,
	ReasonAdvisoryLock,
	ReasonStatementSize,
}

// AllReasons returns every reason, in canonical order.
func AllReasons() []Reason { return slices.Clone(allReasons[:]) }

const (
	setSessionSetting reasonSet = 1 << iota
	setPreparedStatement
	setDiscard
	setTempObject
	setCursor
	setListen
	setLoad
	setSequence
	setAdvisoryLock
	setStatementSize
)

// remedies holds one line of advice per reason.
var remedies = map[Reason]string{
	ReasonSessionSetting:    "send application_name, search_path or TimeZone as startup parameters (DSN keys) or put the SET in the proxy's InitQuery; keep other settings inside functions (ALTER FUNCTION ... SET) or role defaults (ALTER ROLE ... SET)",
	ReasonPreparedStatement: "use protocol-level parameters ($1 placeholders through the extended protocol) instead of SQL PREPARE/EXECUTE/DEALLOCATE",
	ReasonDiscard:           "do not run DISCARD (e.g. as a pool reset query): the proxy already gives each transaction a clean backend",
	ReasonTempObject:        "use a regular (or UNLOGGED) table with a per-request key, a CTE, or a VALUES list instead of a temporary table/view/sequence",
	ReasonCursor:            "page with LIMIT and a keyset (WHERE id > $1) instead of DECLARE ... CURSOR",
	ReasonListen:            "run LISTEN/UNLISTEN on a dedicated direct connection to the database, not through the proxy",
	ReasonLoad:              "load modules with shared_preload_libraries or session_preload_libraries in the DB parameter group instead of LOAD",
	ReasonSequence:          "use INSERT ... RETURNING (or a DEFAULT nextval column) instead of calling nextval/setval directly",
	ReasonAdvisoryLock:      "use pg_advisory_xact_lock inside a transaction (released at COMMIT/ROLLBACK) instead of session-level advisory locks",
	ReasonStatementSize:     "keep statement text at or below 16384 bytes: pass large values as bind parameters or split the batch",
}

// Remedy returns one line of advice for r, or "" for an unknown reason.
func (r Reason) Remedy() string { return remedies[r] }

// Finding is one reason why one statement pins.
type Finding struct {
	Reason Reason
	// Statement is the offending statement's text, trimmed and truncated to
	// about 200 bytes (on a UTF-8 boundary).
	Statement string
	// Remedy is one line of advice.
	Remedy string
}

// Report is the result of [Analyze]. The zero Report does not pin.
type Report struct {
	Findings []Finding
}

// Pins reports whether running the analyzed SQL would pin the session.
func (r Report) Pins() bool { return len(r.Findings) > 0 }

// Reasons returns the distinct reasons of all findings in canonical order
// (the order of the Reason constants), so that output is stable.
func (r Report) Reasons() []Reason {
	var s reasonSet
	for _, f := range r.Findings {
		s |= reasonBit(f.Reason)
	}
	return s.reasons()
}

func reasonBit(r Reason) reasonSet {
	for i, x := range allReasons {
		if x == r {
			return 1 << i
		}
	}
	return 0
}

func (s reasonSet) reasons() []Reason {
	if s == 0 {
		return nil
	}
	out := make([]Reason, 0, 2)
	for i, r := range allReasons {
		if s&(1<<i) != 0 {
			out = append(out, r)
		}
	}
	return out
}

// add appends one finding per reason in s for the statement text stmt.
func (r *Report) add(s reasonSet, stmt string) {
	if s == 0 {
		return
	}
	text := truncate(strings.TrimSpace(stmt), maxFindingStatementBytes)
	for i, reason := range allReasons {
		if s&(1<<i) != 0 {
			r.Findings = append(r.Findings, Finding{Reason: reason, Statement: text, Remedy: reason.Remedy()})
		}
	}
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence and
// marks the cut with "...".
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && cut > n-utf8.UTFMax && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}
