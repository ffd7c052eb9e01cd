package pinning

import (
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ErrUnparsable is wrapped by the error [Analyze] returns when the PostgreSQL
// parser rejects the SQL. The Report returned with it is still usable: it is
// the lexical classifier's verdict.
var ErrUnparsable = errors.New("pinning: SQL did not parse, verdict is lexical")

// errNUL is returned (wrapped in ErrUnparsable) for text with a NUL byte: the
// PostgreSQL protocol cannot carry one in a query, and the C parser would only
// see the text before it.
var errNUL = errors.New("statement contains a NUL byte")

// errTooDeep is returned (wrapped in ErrUnparsable) for text whose syntax
// tree may be too deep for the C parser's stack (see maxParserDepth).
var errTooDeep = errors.New("statement nests too deeply for the parser check")

// Analyze reports whether running sql through RDS Proxy would pin the client
// session to its backend connection, and why. sql may hold several statements
// separated by semicolons; it pins if any of them pins.
//
// Text over [MaxStatementBytes] pins for its size whatever it says: its
// verdict is statement_size alone, decided from its length, and the text is
// neither parsed nor classified (only the start of it is read, for
// Finding.Statement). Below that, with cgo, statements that may pin (see
// mayPin) are parsed with the PostgreSQL parser (pg_query_go); everything else
// returns without parsing. Without cgo, the lexical classifier decides. If
// the parser rejects sql, or its tree may nest too deeply for the parser's
// stack (overParserBudget), Analyze returns the lexical verdict together with
// an error wrapping [ErrUnparsable]: the verdict is best effort, and the error
// says why it is less certain. The error text quotes at most a short prefix
// of the SQL.
func Analyze(sql string) (Report, error) {
	if len(sql) > MaxStatementBytes {
		return sizeReport(sql), nil
	}
	if strings.IndexByte(sql, 0) >= 0 {
		return analyzeLexical(sql), unparsable(errNUL.Error())
	}
	if !mayPin(sql) {
		return Report{}, nil
	}
	if parserAvailable && overParserBudget(sql) {
		return analyzeLexical(sql), unparsable(errTooDeep.Error())
	}
	return analyze(sql)
}

// sizeReport is the verdict on text over MaxStatementBytes: one
// statement_size finding quoting the start of the text. It reads the leading
// whitespace and at most a finding's worth of text after it, so its cost does
// not grow with the statement.
func sizeReport(sql string) Report {
	start := len(sql) - len(strings.TrimLeftFunc(sql, unicode.IsSpace))
	// One byte more than a finding holds, so that truncate marks the cut.
	end := min(len(sql), start+maxFindingStatementBytes+utf8.UTFMax+1)
	var r Report
	r.add(setStatementSize, sql[start:end])
	return r
}

func unparsable(msg string) error {
	return &parseError{msg: truncate(msg, maxFindingStatementBytes)}
}

// parseError carries the parser's message, truncated, and matches
// ErrUnparsable with errors.Is.
type parseError struct{ msg string }

func (e *parseError) Error() string { return ErrUnparsable.Error() + ": " + e.msg }
func (e *parseError) Unwrap() error { return ErrUnparsable }
