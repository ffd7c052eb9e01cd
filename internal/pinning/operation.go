package pinning

// FirstKeyword returns the first word of sql as written (not case-folded),
// which names the statement's operation: "select" in "/* c */ (select 1)".
// It skips whitespace, comments (with PostgreSQL's rules: block comments
// nest) and opening parentheses, and returns "" when sql starts with anything
// else: a literal, a quoted identifier, a parameter, other punctuation, or
// nothing at all. The result is a substring of sql: no allocation.
//
// It shares the analyzer's tokenizer so that one set of lexical rules decides
// both what pins and what a statement is called in telemetry.
func FirstKeyword(sql string) string {
	l := lexer{src: sql}
	for {
		t := l.next()
		switch {
		case t.punct(sql, '('):
			continue
		case t.kind == tokIdent:
			return sql[t.vs:t.ve]
		}
		return ""
	}
}
