package pinning

// The parser guard. pg_query's C code walks the syntax tree recursively,
// without PostgreSQL's stack depth check, on the calling thread's C stack
// (cgo code runs on the thread stack, never on a growable goroutine stack).
// Too deep a tree overflows that stack and the process dies with SIGSEGV; no
// error and no recover. So before the parser sees a statement, one cheap pass
// over its tokens estimates how deep its tree can be, and text over budget is
// classified lexically instead.

// maxParserDepth is the budget, in the units of parserDepth (about one tree
// level, or one nested bracket for bracketDepthWeight of them).
//
// Its reason is the smallest C stack a cgo call can run on: musl libc
// (Alpine) gives threads 128 KiB regardless of RLIMIT_STACK; glibc gives
// RLIMIT_STACK, usually 8 MiB. The deepest tree levels measured (x86-64,
// pg_query_go v6) cost about 380 bytes of stack per unit: with a 128 KiB
// stack, `SELECT 1+1+...` and `SELECT NOT NOT ...` crash at about 350 units,
// nested subqueries at about 450. 150 units leaves more than twice that
// margin for larger stack frames on other architectures and compilers, and
// is far above what hand-written statements use (a join or a CASE level costs
// about 8; commas, literals and qualified names cost nothing).
const maxParserDepth = 150

// bracketDepthWeight is the cost of one open bracket level: "(", "[" or
// CASE ... END. A nested subquery level costs about three times the stack
// of one operator level.
const bracketDepthWeight = 3

// maxGuardLevels bounds the bracket stack: deeper nesting is over budget.
const maxGuardLevels = maxParserDepth/bracketDepthWeight + 1

// depthLevel is one open bracket level of the estimate.
type depthLevel struct {
	closer  byte // ')' or ']', or 'e' for CASE ... END
	chain   int  // counted tokens since the last list separator at this level
	spine   int  // UNION, INTERSECT, EXCEPT and JOIN at this level (never reset)
	between bool // a BETWEEN at this level waits for its AND
}

// overParserBudget reports whether the syntax tree of sql may be too deep for
// the C parser to walk safely (see maxParserDepth). It is one linear pass of
// the lexer and allocates nothing.
//
// The estimate is an upper bound on the depth of the tree along any path:
// every tree level needs at least one counted token (an identifier or
// keyword, an operator byte, a cast) or an open bracket. Literals, parameters
// and qualified name parts are leaves and cost nothing. Within one bracket
// level the count restarts where the tree starts a sibling rather than a
// deeper node: at a comma, at a boolean AND or OR (the parser flattens their
// chains into one node), at WHEN, THEN and ELSE. Set operations and joins
// nest left-deep whatever separates them, so they are counted apart and never
// restart. A semicolon outside brackets ends a statement and restarts all.
func overParserBudget(sql string) bool {
	return parserDepth(sql) > maxParserDepth
}

// parserDepth returns the estimate of overParserBudget: the largest depth
// seen, or the first one over maxParserDepth.
func parserDepth(sql string) int {
	var levels [maxGuardLevels]depthLevel
	n := 1     // levels in use; levels[0] is the statement itself
	depth := 0 // the current estimate: the sum over open levels
	deepest := 0
	l := lexer{src: sql}
	prevDot := false
	for {
		t := l.next()
		if t.kind == tokEOF {
			return deepest
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
				depth -= top.chain
				top.chain = 0
				continue
			case ';':
				if n == 1 {
					depth = 0
					levels[0] = depthLevel{}
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
				depth += bracketDepthWeight
			case ')', ']':
				// Close the innermost bracket level, and any CASE left
				// open inside it (the parser will reject that text).
				for n > 1 {
					n--
					lv := levels[n]
					depth -= bracketDepthWeight + lv.chain + lv.spine
					if lv.closer == c {
						break
					}
				}
				continue
			default:
				top.chain++
				depth++
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
				depth += bracketDepthWeight
			case t.is(sql, "end") && n > 1 && top.closer == 'e':
				n--
				depth -= bracketDepthWeight + top.chain + top.spine
				continue
			case t.is(sql, "union"), t.is(sql, "intersect"), t.is(sql, "except"), t.is(sql, "join"):
				top.spine++
				depth++
			case t.is(sql, "between"):
				top.between = true
				top.chain++
				depth++
			case t.is(sql, "and") && top.between:
				// BETWEEN's AND: the expression goes on, one level up.
				top.between = false
				top.chain++
				depth++
			case t.is(sql, "and"), t.is(sql, "or"), t.is(sql, "when"), t.is(sql, "then"), t.is(sql, "else"):
				depth -= top.chain
				top.chain = 0
				continue
			default:
				top.chain++
				depth++
			}
		default: // quoted identifiers, casts
			if afterDot && t.kind != tokCast {
				continue
			}
			top.chain++
			depth++
		}
		deepest = max(deepest, depth)
		if depth > maxParserDepth {
			return depth
		}
	}
}
