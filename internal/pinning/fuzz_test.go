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
		"SELECT 1; -- note\rSET work_mem = '8MB'", "UPDATE pg_settings SET setting = '1' WHERE name = 'x'",
		`SELECT U&"!006Eextval" UESCAPE '!'('s')`, "CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
		"CREATE FUNCTION f(begin int) RETURNS int LANGUAGE sql AS 'SELECT 1'; SET x = 1",
		"SELECT query_to_xml('SELECT nextval(''s'')', true, true, '')", "SELECT * FROM t nextval(a)",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		// Literal and identifier decoding on arbitrary text: must not panic.
		analyzeLexical("SELECT query_to_xml(" + sql + ", true, true, '')")
		analyzeLexical(`SELECT U&"` + sql + `"(1), U&"x" UESCAPE ` + sql)
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
			if why := documentedDifference(sql, rep, lex); why == "" {
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

// documentedDifference returns the knownGaps tag (POLICY.md) that explains
// a disagreement between the parser's verdict and the lexical one on sql, or
// "". name-before-call: the lexical verdict only adds call reasons, and a
// pinning function's name follows another name (or a table's inheritance
// star, t*) and precedes "(".
func documentedDifference(sql string, parser, lexical Report) string {
	var callSets reasonSet
	for _, f := range callFuncs {
		callSets |= f.set
	}
	p, l := reasonsOf(parser), reasonsOf(lexical)
	if p&^l != 0 || (l&^p)&^callSets != 0 {
		return ""
	}
	if hasNestedRoutineBody(sql) {
		return "nested-routine-body"
	}
	for _, st := range splitStatements(sql) {
		for j := 1; j+1 < len(st.toks); j++ {
			afterName := isIdentLike(st.toks[j-1]) ||
				j >= 2 && st.toks[j-1].punct(sql, '*') && isIdentLike(st.toks[j-2]) // FROM t* (inheritance)
			if !afterName || !st.toks[j+1].punct(sql, '(') {
				continue
			}
			for _, f := range callFuncs {
				if st.toks[j].name(sql, f.name) {
					return "name-before-call"
				}
			}
		}
	}
	return ""
}

func reasonsOf(r Report) reasonSet {
	var s reasonSet
	for _, reason := range r.Reasons() {
		for i, known := range allReasons {
			if known == reason {
				s |= 1 << i
			}
		}
	}
	return s
}

// hasNestedRoutineBody reports whether sql has BEGIN ATOMIC, then CREATE
// [OR REPLACE] FUNCTION|PROCEDURE, then BEGIN ATOMIC again.
func hasNestedRoutineBody(sql string) bool {
	l := lexer{src: sql}
	var prev token
	stage := 0
	for t := l.next(); t.kind != tokEOF; prev, t = t, l.next() {
		switch {
		case (stage == 0 || stage == 2) && t.is(sql, "atomic") && prev.is(sql, "begin"):
			stage++
		case stage == 1 && (t.is(sql, "function") || t.is(sql, "procedure")) &&
			(prev.is(sql, "create") || prev.is(sql, "replace")):
			stage++
		}
		if stage == 3 {
			return true
		}
	}
	return false
}
