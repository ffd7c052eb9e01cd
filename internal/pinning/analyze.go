package pinning

import (
	"errors"
	"strings"
)

// ErrUnparsable is wrapped by the error [Analyze] returns when the PostgreSQL
// parser rejects the SQL. The Report returned with it is still usable: it is
// the lexical classifier's verdict.
var ErrUnparsable = errors.New("pinning: SQL did not parse, verdict is lexical")

// errNUL is returned (wrapped in ErrUnparsable) for text with a NUL byte: the
// PostgreSQL protocol cannot carry one in a query, and the C parser would only
// see the text before it.
var errNUL = errors.New("statement contains a NUL byte")

// Analyze reports whether running sql through RDS Proxy would pin the client
// session to its backend connection, and why. sql may hold several statements
// separated by semicolons; it pins if any of them pins.
//
// With cgo, statements that may pin (see mayPin) are parsed with the
// PostgreSQL parser (pg_query_go); everything else returns without parsing.
// Without cgo, the lexical classifier decides. If the parser rejects sql,
// Analyze returns the lexical verdict together with an error wrapping
// [ErrUnparsable]: the verdict is best effort, and the error says why it is
// less certain. The error text quotes at most a short prefix of the SQL.
func Analyze(sql string) (Report, error) {
	if strings.IndexByte(sql, 0) >= 0 {
		return analyzeLexical(sql), unparsable(errNUL.Error())
	}
	if !mayPin(sql) {
		return Report{}, nil
	}
	return analyze(sql)
}

func unparsable(msg string) error {
	return &parseError{msg: truncate(msg, maxFindingStatementBytes)}
}

// parseError carries the parser's message, truncated, and matches
// ErrUnparsable with errors.Is.
type parseError struct{ msg string }

func (e *parseError) Error() string { return ErrUnparsable.Error() + ": " + e.msg }
func (e *parseError) Unwrap() error { return ErrUnparsable }
