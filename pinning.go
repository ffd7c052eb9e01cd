// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

package rdsproxy

import (
	"fmt"

	"github.com/rdsproxy/rdsproxy/internal/pinning"
)

// PinReason is a stable identifier for why RDS Proxy pins a client session to
// its database connection. The string values are part of the API: they appear
// in logs (the reason attribute) and may be used as metric labels, so they
// never change once released.
type PinReason string

// The pin reasons, in the canonical order [PinReport.Reasons] uses. They are
// the analyzer's reasons (internal/pinning), under names of this package.
const (
	// PinSessionSetting, "session_setting": SET / RESET in any form, or a set_config call.
	PinSessionSetting = PinReason(pinning.ReasonSessionSetting)
	// PinPreparedStatement, "prepared_statement": SQL PREPARE / EXECUTE / DEALLOCATE, or (seen only
	// by the runtime check) a named protocol-level prepared statement.
	PinPreparedStatement = PinReason(pinning.ReasonPreparedStatement)
	// PinDiscard, "discard": DISCARD.
	PinDiscard = PinReason(pinning.ReasonDiscard)
	// PinTempObject, "temp_object": a temporary table, sequence or view (every CREATE VIEW,
	// since PostgreSQL can make one temporary implicitly).
	PinTempObject = PinReason(pinning.ReasonTempObject)
	// PinCursor, "cursor": DECLARE ... CURSOR.
	PinCursor = PinReason(pinning.ReasonCursor)
	// PinListen, "listen": LISTEN / UNLISTEN.
	PinListen = PinReason(pinning.ReasonListen)
	// PinLoad, "load": LOAD.
	PinLoad = PinReason(pinning.ReasonLoad)
	// PinSequence, "sequence": a nextval / setval call.
	PinSequence = PinReason(pinning.ReasonSequence)
	// PinAdvisoryLock, "advisory_lock": a session-level advisory lock function.
	PinAdvisoryLock = PinReason(pinning.ReasonAdvisoryLock)
	// PinStatementSize, "statement_size": statement text over 16384 bytes.
	PinStatementSize = PinReason(pinning.ReasonStatementSize)
)

// pinReasonOrder is every PinReason in canonical order: the analyzer's.
var pinReasonOrder = func() []PinReason {
	all := pinning.AllReasons()
	order := make([]PinReason, len(all))
	for i, r := range all {
		order[i] = PinReason(r)
	}
	return order
}()

// PinFinding is one reason why one statement pins.
type PinFinding struct {
	Reason PinReason
	// Statement is the offending statement. From [AnalyzePinning] it is the
	// caller's own text, trimmed and truncated to about 200 bytes; in a
	// [PinEvent] it is a fingerprint without literal values.
	Statement string
	// Remedy is one line of advice.
	Remedy string
}

// PinReport is the result of [AnalyzePinning]. The zero PinReport does not pin.
type PinReport struct {
	// Reasons are the distinct reasons of Findings, in canonical order.
	Reasons []PinReason
	// Findings has one entry per reason per offending statement.
	Findings []PinFinding
}

// Pins reports whether running the analyzed SQL would pin the session.
func (r PinReport) Pins() bool { return len(r.Findings) > 0 }

// AnalyzePinning reports whether running sql through RDS Proxy would pin the
// client session to its database connection, and why. sql may hold several
// statements separated by semicolons; it pins if any of them does. No database
// is needed; the rules are in internal/pinning/POLICY.md.
//
// Text over 16384 bytes pins for its size: its report is statement_size
// alone, decided from its length, and it is neither parsed nor classified, so
// a multi-megabyte INSERT costs no more than a 16 KB one.
//
// Error policy: the PinReport is always usable. With cgo, statements that may
// pin are confirmed with the PostgreSQL parser; if the parser rejects sql (or
// it contains a NUL byte, or nests too deeply for the parser's C stack, which
// would crash the process rather than fail), AnalyzePinning returns the
// lexical classifier's verdict together with an error wrapping
// [ErrUnparsable]. A caller that only
// warns should use the report and may log the error; a caller that needs
// certainty should treat the error as "unknown". Without cgo the lexical
// classifier is the whole verdict, and the only error is for text holding a
// NUL byte, which both builds refuse to parse. Statements
// the zero-allocation prefilter clears are never parsed.
func AnalyzePinning(sql string) (PinReport, error) {
	r, err := pinning.Analyze(sql)
	if err != nil {
		err = fmt.Errorf("rdsproxy: analyze pinning: %w", err)
	}
	return convertReport(r), err
}

// convertReport copies an internal report into the public types.
func convertReport(r pinning.Report) PinReport {
	if !r.Pins() {
		return PinReport{}
	}
	out := PinReport{Findings: make([]PinFinding, len(r.Findings))}
	for i, f := range r.Findings {
		out.Findings[i] = PinFinding{Reason: PinReason(f.Reason), Statement: f.Statement, Remedy: f.Remedy}
	}
	for _, reason := range r.Reasons() {
		out.Reasons = append(out.Reasons, PinReason(reason))
	}
	return out
}
