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
// the server's grammar it keeps semicolons inside parentheses (CREATE RULE
// ... DO (a; b)) and inside the BEGIN ATOMIC ... END body of a CREATE
// FUNCTION/PROCEDURE in the statement. It also applies UESCAPE clauses to
// the U&"..." identifier or U&'...' string before them, dropping the clause's
// tokens, as PostgreSQL's parser does.
func splitStatements(src string) []lexStatement {
	var out []lexStatement
	l := lexer{src: src}
	var cur []token
	curStart := 0
	depth := 0
	body := 0 // BEGIN ATOMIC, CASE ... END nesting inside a routine body
	routine := false
	for {
		t := l.next()
		if t.kind == tokEOF {
			break
		}
		if t.punct(src, ';') && depth <= 0 && body <= 0 {
			if len(cur) > 0 {
				out = append(out, lexStatement{toks: cur, start: curStart, end: t.start})
			}
			cur = nil
			depth, body, routine = 0, 0, false
			curStart = t.end
			continue
		}
		if t.is(src, "uescape") && len(cur) > 0 && isUnicodeLiteral(src, cur[len(cur)-1]) {
			// U&"..." UESCAPE 'c': the clause belongs to the literal
			// before it; a malformed one leaves esc 0 (no value).
			save := l.pos
			op := l.next()
			if op.kind != tokString {
				l.pos = save // not an operand: leave it to be tokenized
			}
			cur[len(cur)-1].esc, _ = uescapeChar(src, op)
			continue
		}
		switch {
		case t.punct(src, '('):
			depth++
		case t.punct(src, ')'):
			depth--
		case routine && t.kind == tokIdent:
			body += routineBodyNesting(src, cur, t, depth, body)
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

// isUnicodeLiteral reports whether t is a U&"..." identifier or a U&'...'
// string, the tokens a UESCAPE clause may follow.
func isUnicodeLiteral(src string, t token) bool {
	return t.kind == tokUIdent || t.kind == tokString && (src[t.start] == 'u' || src[t.start] == 'U')
}

// routineBodyNesting returns how t changes the nesting of a routine
// definition's SQL-standard body: BEGIN ATOMIC opens it (only there is BEGIN
// special: begin is an ordinary name elsewhere, a parameter or a column), and
// inside it CASE opens and END closes. A keyword used as a column label (AS
// end) or after a dot (t.case) does not count, nor does BEGIN ATOMIC inside
// a body (SELECT begin atomic FROM t is a column and its label; a routine
// defined inside a body is refused by PostgreSQL when it runs).
func routineBodyNesting(src string, cur []token, t token, depth, body int) int {
	prev := at(cur, len(cur)-1)
	switch {
	case body <= 0:
		if t.is(src, "atomic") && prev.is(src, "begin") && depth <= 0 {
			return 1
		}
		return 0
	case prev.is(src, "as") || prev.punct(src, '.'):
		return 0
	case t.is(src, "case"):
		return 1
	case t.is(src, "end"):
		return -1
	}
	return 0
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
		r.add(classifyTokens(sql, st.toks, 0), sql[st.start:st.end])
	}
	return r
}

// lexicalQueryText returns the reasons SQL handed to a query-text function
// (query_to_xml and the like) would pin, at nesting depth depth.
func lexicalQueryText(sql string, depth int) reasonSet {
	var s reasonSet
	for _, st := range splitStatements(sql) {
		s |= classifyTokens(sql, st.toks, depth)
	}
	return s
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

// classifyTokens returns the reasons one statement pins; depth counts the
// query-text functions it is nested in (0 at the top).
func classifyTokens(src string, toks []token, depth int) reasonSet {
	i := 0
	for at(toks, i).punct(src, '(') {
		i++
	}
	first := at(toks, i)
	if first.kind != tokIdent {
		return scanCalls(src, toks, depth)
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
			case "import":
				// IMPORT FOREIGN SCHEMA ... INTO pg_temp creates
				// temporary foreign tables.
				for j := i + 1; j+1 < len(toks); j++ {
					if toks[j].is(src, "into") && isTempSchemaToken(src, toks[j+1]) {
						return setTempObject
					}
				}
			}
			return 0
		}
	}
	if first.is(src, "create") && isRoutineOrRule(src, toks[i:]) {
		// Routine bodies and rule actions run later, elsewhere; the proxy
		// does not look inside them (corpus 132, 133). A routine created
		// in pg_temp is itself a temporary object.
		return createRules(src, toks[i:])
	}
	return topLevel(src, toks[i:]) | selectInto(src, toks) | updatesPgSettings(src, toks) | scanCalls(src, toks, depth)
}

func isRoutineOrRule(src string, toks []token) bool {
	i := 1
	if at(toks, i).is(src, "or") && at(toks, i+1).is(src, "replace") {
		i += 2
	}
	t := at(toks, i)
	return t.is(src, "function") || t.is(src, "procedure") || t.is(src, "rule")
}

// updatesPgSettings finds UPDATE [ONLY] [schema.]pg_settings anywhere in a
// statement (also in a WITH query or after EXPLAIN). The view's update rule
// calls set_config(name, setting, false), so it is a session SET; INSERT,
// DELETE and MERGE on pg_settings are refused by PostgreSQL. Like function
// names, the name is matched by its last part.
func updatesPgSettings(src string, toks []token) reasonSet {
	for j, t := range toks {
		if !t.is(src, "update") || at(toks, j-1).punct(src, '.') {
			continue
		}
		k := j + 1
		if at(toks, k).is(src, "only") {
			k++
		}
		last := -1
		for isIdentLike(at(toks, k)) {
			last = k
			if !at(toks, k+1).punct(src, '.') {
				break
			}
			k += 2
		}
		if last >= 0 && toks[last].name(src, "pg_settings") {
			return setSessionSetting
		}
	}
	return 0
}

func isIdentLike(t token) bool {
	return t.kind == tokIdent || t.kind == tokQIdent || t.kind == tokUIdent
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
// UNLOGGED] TABLE|SEQUENCE|[RECURSIVE] VIEW, and every other object that
// PostgreSQL lets a session create in its temporary schema (pg_temp.name):
// such an object lives until the session ends.
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
		i = skipIfNotExists(src, toks, i+1)
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
	if n := schemaObjectName(src, toks, i); n > 0 && qualifiedInPgTemp(src, toks, skipIfNotExists(src, toks, n)) {
		return setTempObject
	}
	return 0
}

// schemaObjectKinds are the object kinds after CREATE [OR REPLACE] whose name
// may be qualified with pg_temp (PostgreSQL 15 accepts each of them there).
// Materialized views are refused in pg_temp, extensions too; an index or
// trigger always lives in its table's schema.
var schemaObjectKinds = [...][]string{
	{"function"}, {"procedure"}, {"aggregate"}, {"type"}, {"domain"},
	{"collation"}, {"conversion"}, {"default", "conversion"}, {"statistics"},
	{"operator", "class"}, {"operator", "family"}, {"operator"},
	{"foreign", "table"},
	{"text", "search", "configuration"}, {"text", "search", "dictionary"},
	{"text", "search", "parser"}, {"text", "search", "template"},
}

// schemaObjectName returns the index of the token after the object kind
// starting at toks[i] when it is one of schemaObjectKinds, else 0.
func schemaObjectName(src string, toks []token, i int) int {
	for _, words := range schemaObjectKinds {
		k := i
		for _, w := range words {
			if !at(toks, k).is(src, w) {
				k = -1
				break
			}
			k++
		}
		if k > 0 {
			return k
		}
	}
	return 0
}

func skipIfNotExists(src string, toks []token, i int) int {
	if at(toks, i).is(src, "if") && at(toks, i+1).is(src, "not") && at(toks, i+2).is(src, "exists") {
		return i + 3
	}
	return i
}

// qualifiedInPgTemp reports whether the (possibly qualified) name starting at
// toks[i] has a temporary schema as its schema: pg_temp.x, db.pg_temp.x, and
// for operators pg_temp.=== (the last part is not an identifier).
func qualifiedInPgTemp(src string, toks []token, i int) bool {
	// Collect up to three dotted parts.
	var parts [3]token
	n := 0
	for n < 3 {
		t := at(toks, i)
		if !isIdentLike(t) {
			if n > 0 && at(toks, i-1).punct(src, '.') {
				n++ // an operator after "schema.": count it as the last part
			}
			break
		}
		parts[n] = t
		n++
		if !at(toks, i+1).punct(src, '.') {
			break
		}
		i += 2
	}
	return n >= 2 && isTempSchemaToken(src, parts[n-2])
}

// isTempSchemaToken reports whether t names the session's temporary schema:
// pg_temp, or its real name pg_temp_N.
func isTempSchemaToken(src string, t token) bool {
	v, ok := identValue(src, t)
	return ok && isTempSchema(v)
}

// tempSchemaPrefix starts the real name of a session's temporary schema,
// pg_temp_N, N being the backend's slot.
const tempSchemaPrefix = "pg_temp_"

// isTempSchema reports whether a schema name (as the parser reports it) is
// the session's temporary schema: the alias pg_temp or a real name pg_temp_N
// (a session may create objects only in its own).
func isTempSchema(name string) bool {
	if name == "pg_temp" {
		return true
	}
	if len(name) <= len(tempSchemaPrefix) || name[:len(tempSchemaPrefix)] != tempSchemaPrefix {
		return false
	}
	for i := len(tempSchemaPrefix); i < len(name); i++ {
		if !isDigit(name[i]) {
			return false
		}
	}
	return true
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

// queryTextFuncs are the PostgreSQL 15 core functions that run SQL handed to
// them as text, with the (0-based) position of the query argument and the
// number of arguments of the overload that takes one (0: any).
// query_to_xmlschema is not one: it only prepares the query to describe its
// result and never runs it.
var queryTextFuncs = [...]struct {
	name         string
	arg, maxArgs int
}{
	{"query_to_xml", 0, 0},
	{"query_to_xml_and_xmlschema", 0, 0},
	{"ts_stat", 0, 0},
	// ts_rewrite(tsquery, text); ts_rewrite(tsquery, tsquery, tsquery)
	// takes no query.
	{"ts_rewrite", 1, 2},
}

// maxQueryTextDepth bounds how deep query text inside query text is
// analyzed: real code nests it once at most, and the bound keeps crafted
// input from recursing without end.
const maxQueryTextDepth = 4

// scanCalls finds calls of the functions in callFuncs anywhere in a
// statement, and analyzes the query text passed to queryTextFuncs as a
// string literal.
func scanCalls(src string, toks []token, depth int) reasonSet {
	var s reasonSet
	for j := 0; j+1 < len(toks); j++ {
		t := toks[j]
		if !isIdentLike(t) || !toks[j+1].punct(src, '(') {
			continue
		}
		var hit reasonSet
		for _, f := range callFuncs {
			if t.name(src, f.name) {
				hit = f.set
				break
			}
		}
		if hit == 0 && depth < maxQueryTextDepth {
			for _, f := range queryTextFuncs {
				if t.name(src, f.name) {
					if q, ok := queryTextArg(src, toks, j+1, f.arg, f.maxArgs); ok {
						hit = lexicalQueryText(q, depth+1)
					}
					break
				}
			}
		}
		if hit == 0 || !isCallContext(src, toks, j) {
			continue
		}
		s |= hit
	}
	return s
}

// queryTextArg returns the value of argument n of the call whose "(" is
// toks[open] when that argument is a string literal, optionally cast with ::
// (the forms the parser back-end reads too), and the call has at most maxArgs
// arguments (0: any). Any other expression is not analyzed (POLICY.md).
func queryTextArg(src string, toks []token, open, n, maxArgs int) (string, bool) {
	depth := 0
	arg, argStart := 0, open+1
	var lit token
	found := false
	for k := open; k < len(toks); k++ {
		t := toks[k]
		switch {
		case t.punct(src, '('), t.punct(src, '['):
			depth++
			continue
		case t.punct(src, ')'), t.punct(src, ']'):
			depth--
			if depth > 0 {
				continue
			}
		case depth == 1 && t.punct(src, ','):
		default:
			continue
		}
		// toks[argStart:k] is argument number arg.
		if arg == n {
			lit, found = castLiteral(src, toks[argStart:k])
		}
		arg++
		argStart = k + 1
		if depth == 0 {
			break
		}
	}
	if !found || maxArgs > 0 && arg > maxArgs {
		return "", false
	}
	return stringValue(src, lit)
}

// castLiteral reports whether toks is a string literal, possibly in
// parentheses, followed by zero or more ::type casts, and returns the
// literal.
func castLiteral(src string, toks []token) (token, bool) {
	for len(toks) > 0 && toks[0].punct(src, '(') {
		toks = toks[1:]
	}
	if len(toks) == 0 || toks[0].kind != tokString {
		return token{}, false
	}
	if len(toks) > 1 && toks[1].kind != tokCast && !toks[1].punct(src, ')') {
		return token{}, false
	}
	for _, t := range toks[1:] {
		switch {
		case t.kind == tokCast, isIdentLike(t) && !isExpressionWord(src, t), t.kind == tokNumber,
			t.punct(src, '.'), t.punct(src, '('), t.punct(src, ')'), t.punct(src, '['), t.punct(src, ']'):
		default:
			return token{}, false
		}
	}
	return toks[0], true
}

// expressionWords are keywords that continue an expression after a type
// name; an argument holding one is an expression, not a cast literal.
var expressionWords = [...]string{
	"collate", "at", "is", "isnull", "notnull", "and", "or", "not", "in", "between",
	"like", "ilike", "similar", "overlaps", "escape", "operator",
}

func isExpressionWord(src string, t token) bool {
	for _, w := range expressionWords {
		if t.is(src, w) {
			return true
		}
	}
	return false
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
	if p.is(src, "on") && toks[0].is(src, "create") {
		return false
	}
	// WITH a AS (...), nextval (x) AS [NOT] [MATERIALIZED] (...): a CTE
	// with a column list, not a call.
	after := skipParens(src, toks, j+1)
	if at(toks, after).is(src, "as") {
		n := at(toks, after+1)
		return !(n.punct(src, '(') || n.is(src, "materialized") || n.is(src, "not"))
	}
	return true
}
