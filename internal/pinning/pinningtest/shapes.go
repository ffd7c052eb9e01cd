// Package pinningtest generates adversarial SQL for the pinning analyzer's
// crash tests: statements whose syntax trees are as deep as their size
// allows, in every shape the PostgreSQL grammar nests. Only tests import it.
package pinningtest

import (
	"math/rand/v2"
	"strings"
)

// Leaf is the innermost expression of every shape: a nextval call, so that
// each statement pins (sequence) and passes the analyzer's prefilter, which
// sends it to the parser.
const Leaf = "nextval('s')"

// Shape builds a statement whose tree nests n levels deep (or n long).
type Shape struct {
	Name  string
	Build func(n int) string
}

func wrap(head, open string, n int, leaf, close, tail string) string {
	return head + strings.Repeat(open, n) + leaf + strings.Repeat(close, n) + tail
}

func chain(head string, n int, link string) string {
	return head + strings.Repeat(link, n)
}

// Shapes are the nesting shapes: bracket and keyword nesting (subqueries,
// CASE, ARRAY, function calls, ...) and left-deep chains without brackets
// (operators, casts, UNION, JOIN, ...), plus long flat lists, which must not
// count as deep.
var Shapes = []Shape{
	{"plus", func(n int) string { return chain("SELECT "+Leaf, n, "+1") }},
	{"concat", func(n int) string { return chain("SELECT "+Leaf, n, "||'a'") }},
	{"multiply", func(n int) string { return chain("SELECT "+Leaf, n, "*$1") }},
	{"json", func(n int) string { return chain("SELECT "+Leaf, n, "->'a'") }},
	{"cast", func(n int) string { return chain("SELECT "+Leaf, n, "::int") }},
	{"collate", func(n int) string { return chain("SELECT "+Leaf, n, ` COLLATE "C"`) }},
	{"at_time_zone", func(n int) string { return chain("SELECT "+Leaf, n, " AT TIME ZONE 'UTC'") }},
	{"plus_minus", func(n int) string { return chain("SELECT "+Leaf, n, " + - 1") }},
	{"not", func(n int) string { return wrap("SELECT ", "NOT ", n, Leaf, "", "") }},
	{"prefix_op", func(n int) string { return wrap("SELECT ", "~ ", n, Leaf, "", "") }},
	{"minus", func(n int) string { return wrap("SELECT ", "- ", n, Leaf, "", "") }},
	{"union_all", func(n int) string { return chain("SELECT "+Leaf, n, " UNION ALL SELECT 1") }},
	{"union_commas", func(n int) string { return chain("SELECT "+Leaf+", 1", n, " UNION SELECT 1, 2") }},
	{"intersect_paren", func(n int) string { return wrap("", "(SELECT 1 INTERSECT ", n, "SELECT "+Leaf, ")", "") }},
	{"union_deep_first", func(n int) string {
		return chain("SELECT "+Leaf+strings.Repeat("+1", n), n, " UNION ALL SELECT 1")
	}},
	{"join_deep_first", func(n int) string {
		return chain("SELECT 1 FROM a JOIN b ON "+Leaf+strings.Repeat("+1", n)+" > 0", n, " JOIN a ON true")
	}},
	{"join", func(n int) string { return chain("SELECT "+Leaf+" FROM a", n, " JOIN a ON true") }},
	{"lateral", func(n int) string { return chain("SELECT "+Leaf+" FROM a", n, " CROSS JOIN LATERAL (SELECT 1) x") }},
	{"between", func(n int) string { return chain("SELECT "+Leaf, n, " BETWEEN 1 AND 2 = true") }},
	{"and_or", func(n int) string { return chain("SELECT "+Leaf+" > 0", n, " AND true OR false") }},
	{"parens", func(n int) string { return wrap("SELECT ", "(", n, Leaf, ")", "") }},
	{"subquery", func(n int) string { return wrap("SELECT ", "(SELECT ", n, Leaf, ")", "") }},
	{"exists", func(n int) string { return wrap("SELECT ", "EXISTS (SELECT ", n, Leaf, ")", "") }},
	{"in_subquery", func(n int) string { return wrap("SELECT ", "1 IN (SELECT ", n, Leaf, ")", "") }},
	{"from_subquery", func(n int) string { return wrap("SELECT * FROM ", "(SELECT * FROM ", n, "t, "+Leaf, ") s", "") }},
	{"with", func(n int) string {
		return wrap("WITH ", "a AS (WITH ", n, "b AS (SELECT 1) SELECT "+Leaf, ") SELECT 1", " SELECT 1")
	}},
	{"case", func(n int) string { return wrap("SELECT ", "CASE WHEN true THEN ", n, Leaf, " END", "") }},
	{"case_operand", func(n int) string { return wrap("SELECT ", "CASE x WHEN 1 THEN 2 ELSE ", n, Leaf, " END", "") }},
	{"array", func(n int) string { return wrap("SELECT ", "ARRAY[", n, Leaf, "]", "") }},
	{"function", func(n int) string { return wrap("SELECT ", "abs(", n, Leaf, ")", "") }},
	{"coalesce", func(n int) string { return wrap("SELECT ", "coalesce(1, ", n, Leaf, ")", "") }},
	{"row", func(n int) string { return wrap("SELECT ", "ROW(", n, Leaf, ")", "") }},
	{"is_null", func(n int) string { return wrap("SELECT ", "(", n, Leaf, " IS NULL)", "") }},
	{"in_list", func(n int) string { return "SELECT " + Leaf + " IN (" + strings.Repeat("1, ", n) + "1)" }},
	{"values", func(n int) string { return "INSERT INTO t VALUES (" + Leaf + ")" + strings.Repeat(", (1)", n) }},
	{"indirection", func(n int) string { return chain("SELECT ("+Leaf+")", n, "[1]") }},
	{"set", func(n int) string { return chain("SET x.y = 1", n, "+1") }},
}

// Named returns the shape called name; it panics for an unknown name.
func Named(name string) Shape {
	for _, s := range Shapes {
		if s.Name == name {
			return s
		}
	}
	panic("pinningtest: no shape " + name)
}

// Sized returns s built with the largest n whose text fits in maxBytes.
func Sized(s Shape, maxBytes int) string {
	lo, hi := 0, 1
	for len(s.Build(hi)) <= maxBytes {
		lo, hi = hi, hi*2
	}
	for hi-lo > 1 {
		if m := (lo + hi) / 2; len(s.Build(m)) <= maxBytes {
			lo = m
		} else {
			hi = m
		}
	}
	return s.Build(lo)
}

// wrappers nest an expression one level in a random construct.
var wrappers = []func(string) string{
	func(e string) string { return "(SELECT " + e + ")" },
	func(e string) string { return e + " + 1" },
	func(e string) string { return "NOT " + e },
	func(e string) string { return "CASE WHEN " + e + " THEN 1 END" },
	func(e string) string { return "CASE WHEN true THEN " + e + " ELSE 2 END" },
	func(e string) string { return "ARRAY[" + e + ", 2]" },
	func(e string) string { return "abs(" + e + ")" },
	func(e string) string { return e + "::int" },
	func(e string) string { return e + " || 'a'" },
	func(e string) string { return "EXISTS (SELECT " + e + " FROM t WHERE a = b AND c)" },
	func(e string) string { return "(" + e + ")" },
	func(e string) string { return "ROW(1, " + e + ")" },
	func(e string) string { return e + " AT TIME ZONE 'UTC'" },
	func(e string) string { return e + " IN (1, 2, 3)" },
	func(e string) string { return e + " BETWEEN 1 AND 2" },
	func(e string) string { return "(SELECT 1 UNION SELECT " + e + ")" },
	func(e string) string { return "(SELECT " + e + " FROM a JOIN b ON true)" },
	func(e string) string { return "coalesce(" + e + ", 1)" },
	func(e string) string { return "- " + e },
	func(e string) string { return e + " AND x OR y" },
	func(e string) string { return "f(1, 2, " + e + ")" },
}

// Random returns a statement of at most maxBytes that nests random
// constructs around Leaf, as deep as the size allows.
func Random(r *rand.Rand, maxBytes int) string {
	e := Leaf
	for {
		next := wrappers[r.IntN(len(wrappers))](e)
		if len("SELECT ")+len(next) > maxBytes {
			return "SELECT " + e
		}
		e = next
	}
}
