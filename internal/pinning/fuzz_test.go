package pinning

import (
	"slices"
	"strings"
	"testing"
)

// FuzzAnalyze checks that nothing panics on any input and, with cgo, that the
// lexical classifier and the parser back-end agree on every input the parser
// accepts, and that the prefilter never hides a pin from either.
func FuzzAnalyze(f *testing.F) {
	for _, row := range loadCorpus(f) {
		f.Add(row.sql)
	}
	for _, s := range []string{
		"", ";", "\x00", "\xff\xfe", "SELECT 1 \x00; SET x = 1",
		"SELECT E'\\' ; SET x=1 '", "SELECT $a$ $b$ $a$; LISTEN x",
		"/* /* */ SET x = 1", "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT nextval('s'); END; SELECT 1",
		"SELECT * INTO TEMP x FROM t", "CREATE TABLE pg_temp.x AS EXECUTE p", `SELECT U&"nextval"('s')`,
		strings.Repeat("é", MaxStatementBytes/2+1),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		rep, err := Analyze(sql)
		lex := analyzeLexical(sql)
		may := mayPin(sql)
		if !may && lex.Pins() {
			t.Fatalf("prefilter hides a lexical pin %v in %q", lex.Reasons(), sql)
		}
		if !may && rep.Pins() {
			t.Fatalf("Analyze pins %v but prefilter said no in %q", rep.Reasons(), sql)
		}
		if len(sql) > MaxStatementBytes { // the size alone decides
			if !slices.Equal(rep.Reasons(), []Reason{ReasonStatementSize}) || err != nil {
				t.Fatalf("over the size limit: %v, %v", rep.Reasons(), err)
			}
			return
		}
		if err == nil && !slices.Equal(rep.Reasons(), lex.Reasons()) && parserAvailable && may {
			if why := documentedDifference(sql); why == "" {
				t.Fatalf("parser %v and lexical %v disagree on %q", rep.Reasons(), lex.Reasons(), sql)
			}
		}
		if parserAvailable && !may && strings.IndexByte(sql, 0) < 0 {
			// The prefilter must be sound for the parser too.
			if prep, perr := analyze(sql); perr == nil && prep.Pins() {
				t.Fatalf("prefilter said no, parser says %v for %q", prep.Reasons(), sql)
			}
		}
	})
}

// documentedDifference returns the POLICY.md entry that explains a
// disagreement between the two back-ends on sql, or "".
func documentedDifference(sql string) string {
	return ""
}
