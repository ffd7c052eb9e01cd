package pinning

// The lexical statement classifier. It works on the tokens of one statement
// and mirrors the rules of the parser back-end (analyze_cgo.go); where the two
// cannot agree, POLICY.md says so.

// lexStatement is one statement of a multi-statement string: its tokens and
// the span of source text it covers (without the terminating semicolon).
type lexStatement struct {
	toks       []token
	start, end int
}

// splitStatements tokenizes src and splits it at top-level semicolons. Like
// psql it ignores semicolons inside parentheses (CREATE RULE ... DO (a; b))
// and inside CREATE FUNCTION/PROCEDURE ... BEGIN ATOMIC ... END bodies.
func splitStatements(src string) []lexStatement {
	var out []lexStatement
	l := lexer{src: src}
	var cur []token
	curStart := 0
	depth := 0
	atomic := 0 // BEGIN/CASE ... END nesting inside a routine definition
	routine := false
	for {
		t := l.next()
		if t.kind == tokEOF {
			break
		}
		if t.punct(src, ';') && depth <= 0 && atomic <= 0 {
			if len(cur) > 0 {
				out = append(out, lexStatement{toks: cur, start: curStart, end: t.start})
			}
			cur = nil
			depth, atomic, routine = 0, 0, false
			curStart = t.end
			continue
		}
		switch {
		case t.punct(src, '('):
			depth++
		case t.punct(src, ')'):
			depth--
		case t.kind == tokIdent && routine:
			switch {
			case t.is(src, "begin"), t.is(src, "case"):
				atomic++
			case t.is(src, "end"):
				atomic--
			}
		}
		if len(cur) == 0 {
			curStart = t.start
		}
		cur = append(cur, t)
		if !routine && isRoutineDefinition(src, cur) {
			routine = true
		}
	}
	if len(cur) > 0 {
		out = append(out, lexStatement{toks: cur, start: curStart, end: len(src)})
	}
	return out
}

// isRoutineDefinition reports whether toks starts CREATE [OR REPLACE]
// FUNCTION|PROCEDURE, looking only at the prefix seen so far.
func isRoutineDefinition(src string, toks []token) bool {
	if len(toks) < 2 || !toks[0].is(src, "create") {
		return false
	}
	i := 1
	if toks[i].is(src, "or") {
		if len(toks) < 4 || !toks[2].is(src, "replace") {
			return false
		}
		i = 3
	}
	return toks[i].is(src, "function") || toks[i].is(src, "procedure")
}

// analyzeLexical is the complete lexical analysis of sql.
func analyzeLexical(sql string) Report {
	var r Report
	if len(sql) > MaxStatementBytes {
		r.add(setStatementSize, sql)
	}
	for _, st := range splitStatements(sql) {
		r.add(classifyTokens(sql, st.toks), sql[st.start:st.end])
	}
	return r
}

// at returns toks[i] or an EOF token.
func at(toks []token, i int) token {
	if i >= 0 && i < len(toks) {
		return toks[i]
	}
	return token{kind: tokEOF}
}

// expressionless lists first keywords of statements that contain no
// expressions, so an identifier followed by "(" there is never a function call
// (ANALYZE t (col), DROP FUNCTION nextval(regclass), GRANT EXECUTE ON ...).
// Policy for the unconfirmed ones among them: LOCK (corpus 19) ends with the
// transaction; FETCH, MOVE, CLOSE (93-96) use a cursor whose DECLARE already
// pinned; NOTIFY (101) is transactional. None of them pins.
var expressionless = [...]string{
	"analyze", "analyse", "vacuum", "cluster", "reindex", "truncate", "lock",
	"drop", "grant", "revoke", "comment", "security", "notify", "listen",
	"unlisten", "fetch", "move", "close", "discard", "deallocate", "load",
	"checkpoint", "refresh", "reassign", "import", "begin", "start", "commit",
	"end", "rollback", "abort", "savepoint", "release",
}

// classifyTokens returns the reasons one statement pins.
func classifyTokens(src string, toks []token) reasonSet {
	i := 0
	for at(toks, i).punct(src, '(') {
		i++
	}
	first := at(toks, i)
	if first.kind != tokIdent {
		return scanCalls(src, toks)
	}
	for _, kw := range expressionless {
		if first.is(src, kw) {
			switch kw {
			case "discard":
				return setDiscard
			case "deallocate":
				return setPreparedStatement
			case "listen", "unlisten":
				// Policy (corpus 99, 100): UNLISTEN pins like LISTEN.
				return setListen
			case "load":
				return setLoad
			}
			return 0
		}
	}
	if first.is(src, "create") && isRoutineOrRule(src, toks[i:]) {
		// Routine bodies and rule actions run later, elsewhere; the proxy
		// does not look inside them (corpus 132, 133).
		return 0
	}
	return topLevel(src, toks[i:]) | selectInto(src, toks) | scanCalls(src, toks)
}

func isRoutineOrRule(src string, toks []token) bool {
	i := 1
	if at(toks, i).is(src, "or") && at(toks, i+1).is(src, "replace") {
		i += 2
	}
	t := at(toks, i)
	return t.is(src, "function") || t.is(src, "procedure") || t.is(src, "rule")
}

// topLevel applies the rules that depend on the kind of statement; toks starts
// at the statement's first keyword.
func topLevel(src string, toks []token) reasonSet {
	first := at(toks, 0)
	switch {
	case first.is(src, "set"), first.is(src, "reset"):
		// Every SET/RESET form: variables, ROLE, SESSION AUTHORIZATION,
		// SESSION CHARACTERISTICS. Policy (corpus 35, 36, 49, 50, 52):
		// SET LOCAL, SET TRANSACTION and SET CONSTRAINTS pin too, though
		// their effect ends with the transaction: to the proxy they are SETs.
		return setSessionSetting
	case first.is(src, "prepare"):
		// PREPARE TRANSACTION 'gid' is two-phase commit, not a statement.
		if at(toks, 1).is(src, "transaction") && at(toks, 2).kind == tokString {
			return 0
		}
		return setPreparedStatement
	case first.is(src, "execute"):
		return setPreparedStatement
	case first.is(src, "declare"):
		return setCursor
	case first.is(src, "explain"):
		// EXPLAIN [ANALYZE] [VERBOSE] [(options)] stmt: the inner statement
		// decides, executed or not (corpus 68, 114).
		i := 1
		for {
			t := at(toks, i)
			if t.is(src, "analyze") || t.is(src, "analyse") || t.is(src, "verbose") {
				i++
				continue
			}
			if t.punct(src, '(') {
				i = skipParens(src, toks, i)
				continue
			}
			break
		}
		if i >= len(toks) {
			return 0
		}
		return topLevel(src, toks[i:])
	case first.is(src, "create"):
		return createRules(src, toks)
	}
	return 0
}

// skipParens returns the index after the parenthesis group starting at i.
func skipParens(src string, toks []token, i int) int {
	depth := 0
	for ; i < len(toks); i++ {
		switch {
		case toks[i].punct(src, '('):
			depth++
		case toks[i].punct(src, ')'):
			depth--
			if depth == 0 {
				return i + 1
			}
		}
	}
	return i
}

// createRules handles CREATE [OR REPLACE] [GLOBAL|LOCAL] [TEMP|TEMPORARY|
// UNLOGGED] TABLE|SEQUENCE|[RECURSIVE] VIEW.
func createRules(src string, toks []token) reasonSet {
	i := 1
	if at(toks, i).is(src, "or") && at(toks, i+1).is(src, "replace") {
		i += 2
	}
	temp := false
	for {
		t := at(toks, i)
		if t.is(src, "global") || t.is(src, "local") || t.is(src, "unlogged") {
			i++
			continue
		}
		if t.is(src, "temp") || t.is(src, "temporary") {
			temp = true
			i++
			continue
		}
		break
	}
	kind := at(toks, i)
	switch {
	case kind.is(src, "view"), kind.is(src, "recursive") && at(toks, i+1).is(src, "view"):
		// Policy (corpus 85): every CREATE VIEW may be temporary. PostgreSQL
		// makes a view temporary, with only a NOTICE, when it references a
		// temporary relation, and unqualified names resolve through pg_temp
		// first, which no static analysis can rule out.
		return setTempObject
	case kind.is(src, "table"), kind.is(src, "sequence"):
		var s reasonSet
		i++
		if at(toks, i).is(src, "if") && at(toks, i+1).is(src, "not") && at(toks, i+2).is(src, "exists") {
			i += 3
		}
		if temp || qualifiedInPgTemp(src, toks, i) {
			s |= setTempObject
		}
		if kind.is(src, "table") {
			// CREATE TABLE ... AS EXECUTE name: the first AS outside
			// parentheses starts the query.
			depth := 0
			for j := i; j < len(toks); j++ {
				switch {
				case toks[j].punct(src, '('):
					depth++
				case toks[j].punct(src, ')'):
					depth--
				case depth == 0 && toks[j].is(src, "as"):
					if at(toks, j+1).is(src, "execute") {
						s |= setPreparedStatement
					}
					return s
				}
			}
		}
		return s
	}
	return 0
}

// qualifiedInPgTemp reports whether the (possibly qualified) name starting at
// toks[i] has pg_temp as its schema: pg_temp.x or db.pg_temp.x.
func qualifiedInPgTemp(src string, toks []token, i int) bool {
	// Collect up to three dotted parts.
	var parts [3]token
	n := 0
	for n < 3 {
		t := at(toks, i)
		if t.kind != tokIdent && t.kind != tokQIdent && t.kind != tokUIdent {
			break
		}
		parts[n] = t
		n++
		if !at(toks, i+1).punct(src, '.') {
			break
		}
		i += 2
	}
	return n >= 2 && parts[n-2].name(src, "pg_temp")
}

// selectInto finds SELECT ... INTO [GLOBAL|LOCAL] TEMP|TEMPORARY [TABLE] name
// and SELECT ... INTO [TABLE|UNLOGGED] pg_temp.name, at any depth and in any
// statement (the parser back-end checks every SelectStmt's INTO clause).
func selectInto(src string, toks []token) reasonSet {
	for j := 1; j < len(toks); j++ {
		if !toks[j].is(src, "into") {
			continue
		}
		if p := toks[j-1]; p.is(src, "insert") || p.is(src, "merge") {
			continue
		}
		k := j + 1
		if at(toks, k).is(src, "global") || at(toks, k).is(src, "local") {
			k++
		}
		if t := at(toks, k); t.is(src, "temp") || t.is(src, "temporary") {
			n := at(toks, k+1)
			if n.is(src, "table") || isNameToken(src, n) {
				return setTempObject
			}
			continue
		}
		if at(toks, k).is(src, "table") || at(toks, k).is(src, "unlogged") {
			k++
			if at(toks, k).is(src, "table") {
				k++
			}
		}
		if qualifiedInPgTemp(src, toks, k) {
			return setTempObject
		}
	}
	return 0
}

// clauseWords are reserved words that can follow SELECT ... INTO name; after
// INTO TEMP they mean "temp" was the table's name (a table called temp).
var clauseWords = [...]string{
	"from", "where", "group", "having", "window", "order", "limit", "offset",
	"fetch", "for", "union", "intersect", "except",
}

func isNameToken(src string, t token) bool {
	switch t.kind {
	case tokQIdent, tokUIdent:
		return true
	case tokIdent:
		for _, w := range clauseWords {
			if t.is(src, w) {
				return false
			}
		}
		return true
	}
	return false
}

// callFuncs maps function names to the reason a call pins. Only the last part
// of a qualified name counts (pg_catalog.nextval, public.nextval: corpus 106,
// 112).
var callFuncs = [...]struct {
	name string
	set  reasonSet
}{
	{"set_config", setSessionSetting},
	{"nextval", setSequence},
	{"setval", setSequence},
	{"pg_advisory_lock", setAdvisoryLock},
	{"pg_advisory_lock_shared", setAdvisoryLock},
	{"pg_try_advisory_lock", setAdvisoryLock},
	{"pg_try_advisory_lock_shared", setAdvisoryLock},
	// Policy (corpus 120-122): unlocking is session-lock manipulation too.
	{"pg_advisory_unlock", setAdvisoryLock},
	{"pg_advisory_unlock_shared", setAdvisoryLock},
	{"pg_advisory_unlock_all", setAdvisoryLock},
	// The pg_*advisory_xact_lock* functions are exempt: their locks end
	// with the transaction. currval and lastval only read (policy, corpus
	// 110, 111), and pg_notify is transactional (102): none of them pins.
}

// notCallAfter lists tokens after which "name(" is a definition, a column or
// alias list or a type modifier rather than a call (CREATE TABLE nextval (id
// int), INSERT INTO setval (a), FROM f() AS nextval(x), EXECUTE nextval(1)).
var notCallAfter = [...]string{
	"table", "into", "function", "procedure", "routine", "aggregate", "type",
	"exists", "view", "references", "only", "trigger", "as",
	"with", "recursive", "copy", "execute", "prepare",
}

// scanCalls finds calls of the functions in callFuncs anywhere in a statement.
func scanCalls(src string, toks []token) reasonSet {
	var s reasonSet
	for j := 0; j+1 < len(toks); j++ {
		t := toks[j]
		if t.kind != tokIdent && t.kind != tokQIdent && t.kind != tokUIdent {
			continue
		}
		if !toks[j+1].punct(src, '(') {
			continue
		}
		var hit reasonSet
		for _, f := range callFuncs {
			if t.name(src, f.name) {
				hit = f.set
				break
			}
		}
		if hit == 0 || !isCallContext(src, toks, j) {
			continue
		}
		s |= hit
	}
	return s
}

// isCallContext looks at what precedes the (possibly qualified) name ending
// at toks[j].
func isCallContext(src string, toks []token, j int) bool {
	k := j - 1
	for k >= 1 && toks[k].punct(src, '.') {
		k -= 2 // skip "schema ."
	}
	p := at(toks, k)
	if p.kind == tokCast {
		return false // x::nextval(3) would be a type with a modifier
	}
	for _, w := range notCallAfter {
		if p.is(src, w) {
			return false
		}
	}
	// CREATE INDEX ON setval (c), CREATE TRIGGER ... ON nextval (...): in
	// DDL, ON names a table. Elsewhere (JOIN ... ON f(x)) it is a call.
	return !(p.is(src, "on") && toks[0].is(src, "create"))
}
