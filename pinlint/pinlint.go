// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

// Package pinlint finds, before any traffic runs, the SQL and settings in a
// code base that would pin RDS Proxy sessions: SET statements, temporary
// tables, session advisory locks, cursors, LISTEN, named server-side prepared
// statements and the rest of rdsproxy's pin reasons.
//
// [Analyzer] is a go/analysis analyzer for go vet -vettool, gopls and
// analysis drivers; [CheckSQLFile] and [CheckSQLCConfig] check .sql files and
// sqlc configuration. The verdict on each statement is
// rdsproxy.AnalyzePinning's: the same reasons and remedies as the runtime
// check. The command rdsproxy-lint runs all of them.
//
// The analyzer reports constant SQL (literals, named constants and constant
// expressions, also through a parameter of a function of the same package
// whose callers pass constants) given to database/sql, pgx v5, sqlx and GORM,
// to an application's own interface with the same methods (such as sqlc's
// DBTX), and to functions named with -func. Calls are matched by the
// declaring package and receiver type. It also reports every database/sql,
// pgx and sqlx Prepare call, GORM's PrepareStmt set to true, and DSN literals
// with default_query_exec_mode=cache_statement, all of which create named
// server-side prepared statements. SQL that is not a constant is counted as
// unchecked, never reported: the runtime check sees it.
//
// A finding is accepted with a comment on its line or the line before:
//
//	//rdsproxy:allow-pin migration runs on a direct connection
//
// The reason is required; a comment without one does not suppress.
package pinlint

import (
	"errors"
	"flag"
	"go/ast"
	"go/token"
	"go/types"
	"reflect"
	"strings"

	"golang.org/x/tools/go/analysis"
	"golang.org/x/tools/go/analysis/passes/inspect"
	"golang.org/x/tools/go/ast/inspector"
)

// Analyzer reports SQL and settings that pin RDS Proxy sessions. Its result
// (*Result) holds every finding, suppressed ones included, and the unchecked
// SQL; drivers that only read diagnostics get the unsuppressed findings.
var Analyzer = &analysis.Analyzer{
	Name:       "pinlint",
	Doc:        "report SQL and settings that pin RDS Proxy sessions (rdsproxy.AnalyzePinning's rules)",
	URL:        "https://pkg.go.dev/github.com/rdsproxy/rdsproxy/pinlint",
	Requires:   []*analysis.Analyzer{inspect.Analyzer},
	Run:        run,
	ResultType: reflect.TypeFor[*Result](),
	Flags:      flags(),
}

// Result is the analyzer's result for one package.
type Result struct {
	Findings  []Finding
	Unchecked []Unchecked
	// AllowPins are the allow-pin comments of the package's files.
	AllowPins []AllowPin
}

// config is set from the analyzer's flags before any run.
type config struct {
	extra map[string]sqlMethod // -func: name -> SQL argument
}

var cfg = config{extra: map[string]sqlMethod{}}

// funcFlag is the repeatable -func flag.
type funcFlag struct{}

func (funcFlag) String() string { return "" }

func (funcFlag) Set(v string) error {
	for _, item := range strings.Split(v, ",") {
		name, m, err := parseExtraFunc(strings.TrimSpace(item))
		if err != nil {
			return err
		}
		cfg.extra[name] = m
	}
	return nil
}

func errFuncSyntax(v string) error {
	return errors.New("-func " + v + ": want importpath.Func:N or importpath.Type.Method:N (N: index of the SQL argument)")
}

func flags() flag.FlagSet {
	fs := flag.NewFlagSet("pinlint", flag.ContinueOnError)
	fs.Var(funcFlag{}, "func", "also check `importpath.Func:N` or importpath.Type.Method:N, whose argument N is SQL (repeatable, comma-separated)")
	return *fs
}

// SetFuncs adds functions whose argument carries SQL, in -func syntax. It is
// for drivers that do not parse the analyzer's flags; call it before running.
func SetFuncs(specs ...string) error {
	for _, s := range specs {
		if err := (funcFlag{}).Set(s); err != nil {
			return err
		}
	}
	return nil
}

// maxParamDepth bounds how many function boundaries a constant is followed
// through (helper(db, "SET ...") -> db.Exec(q)): enough for the usual wrapper
// or two, cheap on any package.
const maxParamDepth = 3

type pass struct {
	*analysis.Pass
	res       *Result
	allow     map[string]allowances // file name -> allow-pin comments
	params    map[*types.Var]paramOf
	calls     map[*types.Func][]*ast.CallExpr
	uses      map[*types.Func]int // references, calls included
	reassigns map[*types.Var]bool
	seen      map[string]bool // dedup of findings by position and message
}

// paramOf locates a parameter: its function and index.
type paramOf struct {
	fn    *types.Func
	index int
}

func run(ap *analysis.Pass) (any, error) {
	p := &pass{Pass: ap, res: &Result{}, allow: map[string]allowances{},
		params: map[*types.Var]paramOf{}, calls: map[*types.Func][]*ast.CallExpr{}, uses: map[*types.Func]int{},
		reassigns: map[*types.Var]bool{}, seen: map[string]bool{}}
	for _, f := range ap.Files {
		p.collectAllowances(f)
	}
	ins := ap.ResultOf[inspect.Analyzer].(*inspector.Inspector)
	p.index(ins)
	ins.Preorder([]ast.Node{(*ast.CallExpr)(nil), (*ast.CompositeLit)(nil), (*ast.AssignStmt)(nil), (*ast.BasicLit)(nil)}, func(n ast.Node) {
		switch n := n.(type) {
		case *ast.CallExpr:
			p.call(n)
		case *ast.CompositeLit:
			p.gormConfigLit(n)
		case *ast.AssignStmt:
			p.gormConfigAssign(n)
		case *ast.BasicLit:
			p.dsnLiteral(n)
		}
	})
	for _, a := range p.allow {
		p.res.AllowPins = append(p.res.AllowPins, a.list()...)
	}
	return p.res, nil
}

// collectAllowances records the allow-pin comments of f by line.
func (p *pass) collectAllowances(f *ast.File) {
	for _, g := range f.Comments {
		for _, c := range g.List {
			text := strings.TrimPrefix(c.Text, "//")
			text = strings.TrimSuffix(strings.TrimPrefix(text, "/*"), "*/")
			why, ok := parseAllowPin(text)
			if !ok {
				continue
			}
			pos := p.Fset.Position(c.Slash)
			a := p.allow[pos.Filename]
			if a == nil {
				a = allowances{}
				p.allow[pos.Filename] = a
			}
			a[pos.Line] = &AllowPin{Pos: pos, Why: why}
		}
	}
}

// index records function parameters, reassigned variables and the static
// call sites of the package's functions, for following constants through
// parameters.
func (p *pass) index(ins *inspector.Inspector) {
	for _, obj := range p.TypesInfo.Uses {
		if fn, ok := obj.(*types.Func); ok && fn.Pkg() == p.Pkg {
			p.uses[fn.Origin()]++
		}
	}
	ins.Preorder([]ast.Node{(*ast.FuncDecl)(nil), (*ast.CallExpr)(nil), (*ast.AssignStmt)(nil), (*ast.UnaryExpr)(nil)}, func(n ast.Node) {
		switch n := n.(type) {
		case *ast.FuncDecl:
			fn, _ := p.TypesInfo.Defs[n.Name].(*types.Func)
			if fn == nil || n.Body == nil {
				return
			}
			sig := fn.Type().(*types.Signature)
			for i := range sig.Params().Len() {
				if sig.Variadic() && i == sig.Params().Len()-1 {
					break
				}
				p.params[sig.Params().At(i)] = paramOf{fn: fn, index: i}
			}
		case *ast.CallExpr:
			if fn := staticCallee(p.TypesInfo, n); fn != nil && fn.Pkg() == p.Pkg {
				p.calls[fn.Origin()] = append(p.calls[fn.Origin()], n)
			}
		case *ast.AssignStmt:
			for _, l := range n.Lhs {
				if id, ok := ast.Unparen(l).(*ast.Ident); ok {
					if v, ok := p.TypesInfo.Uses[id].(*types.Var); ok {
						p.reassigns[v] = true
					}
				}
			}
		case *ast.UnaryExpr: // &param lets anything change it
			if id, ok := ast.Unparen(n.X).(*ast.Ident); ok && n.Op == token.AND {
				if v, ok := p.TypesInfo.Uses[id].(*types.Var); ok {
					p.reassigns[v] = true
				}
			}
		}
	})
}

// staticCallee returns the function or method (an interface's included) a
// call names, or nil (calls of function values, conversions, builtins).
func staticCallee(info *types.Info, call *ast.CallExpr) *types.Func {
	var id *ast.Ident
	switch fun := ast.Unparen(call.Fun).(type) {
	case *ast.Ident:
		id = fun
	case *ast.SelectorExpr:
		if sel := info.Selections[fun]; sel != nil && sel.Kind() == types.MethodExpr {
			return nil // T.M(recv, args...): the arguments are shifted; rare enough to leave unchecked
		}
		id = fun.Sel
	case *ast.IndexExpr: // generic instantiation f[T]
		return staticCallee(info, &ast.CallExpr{Fun: fun.X})
	case *ast.IndexListExpr:
		return staticCallee(info, &ast.CallExpr{Fun: fun.X})
	default:
		return nil
	}
	fn, _ := info.Uses[id].(*types.Func)
	return fn
}

// origin is a constant value and where it is written, if that is in a
// caller (NoPos: at the use).
type origin struct {
	val types.TypeAndValue
	pos token.Pos
}

// resolve returns the constant values e can have: e's own if it is constant,
// or, for a parameter of one of the package's functions that is never
// reassigned, the constants its callers pass. complete is false when some
// value could not be determined.
func (p *pass) resolve(e ast.Expr, depth int) (vals []origin, complete bool) {
	if tv, ok := p.TypesInfo.Types[e]; ok && tv.Value != nil {
		if depth == 0 {
			return []origin{{tv, token.NoPos}}, true // written where it is used
		}
		return []origin{{tv, e.Pos()}}, true
	}
	id, ok := ast.Unparen(e).(*ast.Ident)
	if !ok || depth >= maxParamDepth {
		return nil, false
	}
	v, ok := p.TypesInfo.Uses[id].(*types.Var)
	if !ok || p.reassigns[v] {
		return nil, false
	}
	po, ok := p.params[v]
	if !ok {
		return nil, false
	}
	calls := p.calls[po.fn]
	if len(calls) == 0 || po.fn.Exported() {
		return nil, false // callers elsewhere may pass anything
	}
	// A function also used as a value is called with arguments not seen
	// here: the constants found still reach it, but the list is incomplete.
	complete = p.uses[po.fn] == len(calls)
	for _, c := range calls {
		if po.index >= len(c.Args) { // variadic parameters are not indexed
			complete = false
			continue
		}
		vs, ok := p.resolve(c.Args[po.index], depth+1)
		vals = append(vals, vs...)
		complete = complete && ok
	}
	return vals, complete
}

// call checks a call to a known database API.
func (p *pass) call(call *ast.CallExpr) {
	fn := staticCallee(p.TypesInfo, call)
	if fn == nil {
		return
	}
	m, ok := cfg.lookup(fn)
	if !ok || m.arg >= len(call.Args) {
		return
	}
	arg := call.Args[m.arg]
	vals, complete := p.resolve(arg, 0)
	var sqls []origin
	for _, v := range vals {
		if v.val.Value != nil && v.val.Value.Kind() == constantString {
			sqls = append(sqls, v)
		}
	}
	if !complete || len(sqls) == 0 {
		p.res.Unchecked = append(p.res.Unchecked, Unchecked{Pos: p.Fset.Position(arg.Pos()), Source: m.source, Expr: types.ExprString(arg)})
	}
	if m.prepares && len(sqls) == 0 {
		p.report(arg.Pos(), token.NoPos, Finding{Reasons: mergeReasons(nil, prepared), Statement: "(SQL not a constant)",
			Remedy: prepareRemedy, Source: m.source})
	}
	for _, o := range sqls {
		sql := stringVal(o.val)
		stmts := analyzeSQL(sql)
		if m.prepares {
			// One named statement holds all of the SQL; report it once.
			f := Finding{Reasons: mergeReasons(nil, prepared), Statement: fingerprint(sql), Remedy: prepareRemedy, Source: m.source}
			for _, s := range stmts {
				f.Reasons = mergeReasons(f.Reasons, s.reasons...)
				f.Remedy += "; " + s.remedy
			}
			p.report(arg.Pos(), o.pos, f)
			continue
		}
		for _, s := range stmts {
			p.report(arg.Pos(), o.pos, Finding{Reasons: s.reasons, Statement: fingerprint(s.text), Remedy: s.remedy, Source: m.source})
		}
	}
}

// report records f at pos. from is where a constant passed through a
// parameter is written (NoPos when it is at pos); an allow-pin comment at
// either place suppresses.
func (p *pass) report(pos, from token.Pos, f Finding) {
	f.Pos = p.Fset.Position(pos)
	lines := []int{f.Pos.Line}
	a := p.allow[f.Pos.Filename]
	if from.IsValid() && from != pos {
		fp := p.Fset.Position(from)
		f.Note = joinNote(f.Note, "value from "+shortPos(fp))
		if fp.Filename == f.Pos.Filename {
			lines = append(lines, fp.Line)
		} else {
			p.allow[fp.Filename].apply(&f, fp.Line)
		}
	}
	if !f.Suppressed {
		a.apply(&f, lines...)
	}
	key := f.Pos.String() + "\x00" + f.Message()
	if p.seen[key] {
		return
	}
	p.seen[key] = true
	p.res.Findings = append(p.res.Findings, f)
	if !f.Suppressed {
		p.Report(analysis.Diagnostic{Pos: pos, Category: categoryOf(f), Message: f.Message() + " [" + f.Source + "]"})
	}
}

func categoryOf(f Finding) string {
	rs := make([]string, len(f.Reasons))
	for i, r := range f.Reasons {
		rs[i] = string(r)
	}
	return strings.Join(rs, ",")
}

// shortPos is file:line with the file's base name, for notes.
func shortPos(p token.Position) string {
	i := strings.LastIndexAny(p.Filename, `/\`)
	return p.Filename[i+1:] + ":" + itoa(p.Line)
}
