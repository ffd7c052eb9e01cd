package pinning

// The parser guard. pg_query's C code walks the syntax tree recursively,
// without PostgreSQL's stack depth check, on the calling thread's C stack
// (cgo code runs on the thread stack, never on a growable goroutine stack).
// Too deep a tree overflows that stack and the process dies with SIGSEGV; no
// error and no recover. So before the parser sees a statement, one cheap pass
// over its tokens estimates how deep its tree can be, and text over budget is
// classified lexically instead.

// maxParserDepth is the budget, in the units of parserDepth: one per counted
// token along the deepest path, bracketDepthWeight per nested bracket.
//
// Its reason is the smallest C stack a cgo call can run on: musl libc
// (Alpine) gives threads 128 KiB regardless of RLIMIT_STACK; glibc gives
// RLIMIT_STACK, usually 8 MiB. The costliest units measured (x86-64,
// pg_query_go v6) take about 380 bytes of stack each: with a 128 KiB stack,
// `SELECT 1+1+...` and `SELECT NOT NOT ...` crash at about 350 units, nested
// subqueries at about 450. 150 units leaves more than twice that margin, for
// larger stack frames on other architectures and compilers: every test shape
// at the budget also survives a 64 KiB stack. It is far above what
// hand-written statements use: a 15-way join with a 60-term WHERE clause
// measures 23, since commas, literals and qualified names cost nothing.
const maxParserDepth = 150

// bracketDepthWeight is the cost of one open bracket level: "(", "[" or
// CASE ... END. A nested subquery level costs about three times the stack
// of one operator level.
const bracketDepthWeight = 3

// maxGuardLevels bounds the bracket stack: deeper nesting is over budget.
const maxGuardLevels = maxParserDepth/bracketDepthWeight + 1

// depthLevel is one open bracket level of the estimate (or the statement
// itself, at the bottom).
type depthLevel struct {
	closer  byte // ')' or ']', or 'e' for CASE ... END
	chain   int  // counted tokens since the last list separator at this level
	best    int  // the deepest chain seen at this level, with the bracket levels closed inside it
	spine   int  // UNION, INTERSECT, EXCEPT and JOIN at this level (never reset)
	between bool // a BETWEEN at this level waits for its AND
}

// count adds one counted token to the level's chain.
func (lv *depthLevel) count() {
	lv.chain++
	lv.best = max(lv.best, lv.chain)
}

// depth is the level's estimate once it is closed: set operations and joins
// nest left-deep, so the first operand, which may hold the deepest chain,
// lies under every one of them.
func (lv *depthLevel) depth() int { return lv.spine + lv.best }

// overParserBudget reports whether the syntax tree of sql may be too deep for
// the C parser to walk safely (see maxParserDepth). It is one linear pass of
// the lexer and allocates nothing.
//
// The estimate is an upper bound on the depth of the tree: every tree level
// needs at least one counted token (an identifier or keyword, an operator
// byte, a cast) or an open bracket. Literals, parameters and qualified name
// parts are leaves and cost nothing. Within one bracket level the count
// restarts where the tree starts a sibling rather than a deeper node: at a
// comma, at a boolean AND or OR (the parser flattens their chains into one
// node; BETWEEN's AND does not restart), at WHEN, THEN and ELSE. Set
// operations and joins nest left-deep whatever separates them, so they are
// counted apart, never restart, and add to the deepest chain of their level.
// A semicolon outside brackets ends a statement.
func overParserBudget(sql string) bool {
	return parserDepth(sql) > maxParserDepth
}

// parserDepth returns the estimate of overParserBudget for the deepest
// statement of sql, or a number over maxParserDepth as soon as the estimate
// is sure to exceed it.
func parserDepth(sql string) int {
	var levels [maxGuardLevels]depthLevel
	n := 1       // levels in use; levels[0] is the statement itself
	running := 0 // the open path: a lower bound of the statement's estimate
	deepest := 0 // of the statements ended so far
	// closeTop folds the innermost bracket level into its parent.
	closeTop := func() {
		n--
		lv := &levels[n]
		running -= bracketDepthWeight + lv.spine + lv.chain
		p := &levels[n-1]
		p.best = max(p.best, p.chain+bracketDepthWeight+lv.depth())
	}
	l := lexer{src: sql}
	prevDot := false
	for {
		t := l.next()
		if t.kind == tokEOF {
			break
		}
		top := &levels[n-1]
		afterDot := prevDot
		prevDot = false
		switch t.kind {
		case tokString, tokNumber, tokParam:
			continue // leaves
		case tokPunct:
			switch c := sql[t.start]; c {
			case '.':
				prevDot = true
				continue
			case ',':
				running -= top.chain
				top.chain = 0
				continue
			case ';':
				if n == 1 {
					deepest = max(deepest, top.depth())
					levels[0] = depthLevel{}
					running = 0
				}
				continue
			case '(', '[':
				if n == len(levels) {
					return maxParserDepth + 1
				}
				closer := byte(')')
				if c == '[' {
					closer = ']'
				}
				levels[n] = depthLevel{closer: closer}
				n++
				running += bracketDepthWeight
			case ')', ']':
				// Close the innermost bracket level, and any CASE left
				// open inside it (the parser will reject that text).
				for n > 1 {
					closer := levels[n-1].closer
					closeTop()
					if closer == c {
						break
					}
				}
				continue
			default:
				top.count()
				running++
			}
		case tokIdent:
			if afterDot {
				continue // a qualified name is one leaf: a.b.c
			}
			switch {
			case t.is(sql, "case"):
				if n == len(levels) {
					return maxParserDepth + 1
				}
				levels[n] = depthLevel{closer: 'e'}
				n++
				running += bracketDepthWeight
			case t.is(sql, "end") && n > 1 && top.closer == 'e':
				closeTop()
				continue
			case t.is(sql, "union"), t.is(sql, "intersect"), t.is(sql, "except"), t.is(sql, "join"):
				top.spine++
				running++
			case t.is(sql, "between"):
				top.between = true
				top.count()
				running++
			case t.is(sql, "and") && top.between:
				// BETWEEN's AND: the expression goes on.
				top.between = false
				top.count()
				running++
			case t.is(sql, "and"), t.is(sql, "or"), t.is(sql, "when"), t.is(sql, "then"), t.is(sql, "else"):
				running -= top.chain
				top.chain = 0
				continue
			default:
				top.count()
				running++
			}
		default: // quoted identifiers, casts
			if afterDot && t.kind != tokCast {
				continue
			}
			top.count()
			running++
		}
		if running > maxParserDepth {
			return running
		}
	}
	for n > 1 { // brackets left open: the parser will reject the text
		closeTop()
	}
	return max(deepest, levels[0].depth())
}
