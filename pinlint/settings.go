// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

package pinlint

import (
	"go/ast"
	"go/constant"
	"go/token"
	"go/types"
	"regexp"
	"strconv"

	"github.com/rdsproxy/rdsproxy"
)

// Settings that make a library prepare every statement as a named
// server-side statement: GORM's PrepareStmt and pgx's
// default_query_exec_mode=cache_statement.

const constantString = constant.String

var prepared = rdsproxy.PinPreparedStatement

func stringVal(tv types.TypeAndValue) string { return constant.StringVal(tv.Value) }

func itoa(n int) string { return strconv.Itoa(n) }

// gormPrepareField is the field of gorm.Config and gorm.Session that turns on
// prepared statements.
const gormPrepareField = "PrepareStmt"

// isGormConfig reports whether t is gorm.Config or gorm.Session (or a pointer
// to one).
func isGormConfig(t types.Type) bool {
	if t == nil || pkgOf(t) != pathGorm {
		return false
	}
	n := namedOf(t)
	return n == "Config" || n == "Session"
}

// gormConfigLit checks gorm.Config{PrepareStmt: ...} and gorm.Session{...}.
func (p *pass) gormConfigLit(lit *ast.CompositeLit) {
	if !isGormConfig(p.TypesInfo.TypeOf(lit)) {
		return
	}
	for _, el := range lit.Elts {
		kv, ok := el.(*ast.KeyValueExpr)
		if !ok {
			continue
		}
		if k, ok := kv.Key.(*ast.Ident); ok && k.Name == gormPrepareField {
			p.gormPrepare(kv.Key, kv.Value, namedOf(p.TypesInfo.TypeOf(lit)))
		}
	}
}

// gormConfigAssign checks cfg.PrepareStmt = ... on a gorm.Config.
func (p *pass) gormConfigAssign(as *ast.AssignStmt) {
	if len(as.Lhs) != len(as.Rhs) {
		return
	}
	for i, l := range as.Lhs {
		sel, ok := l.(*ast.SelectorExpr)
		if !ok || sel.Sel.Name != gormPrepareField {
			continue
		}
		if s := p.TypesInfo.Selections[sel]; s != nil && isGormConfig(s.Recv()) {
			p.gormPrepare(sel, as.Rhs[i], namedOf(s.Recv()))
		}
	}
}

// gormPrepare reports a PrepareStmt value that is, or may be passed as, true.
func (p *pass) gormPrepare(at ast.Node, val ast.Expr, typeName string) {
	source := "gorm " + typeName + "." + gormPrepareField
	vals, complete := p.resolve(val, 0)
	for _, o := range vals {
		if o.val.Value.Kind() == constant.Bool && constant.BoolVal(o.val.Value) {
			p.report(at.Pos(), o.pos, Finding{Reasons: mergeReasons(nil, prepared),
				Statement: gormPrepareField + ": true", Remedy: gormPrepareRemedy, Source: source})
			return
		}
	}
	if !complete {
		p.res.Unchecked = append(p.res.Unchecked, Unchecked{Pos: p.Fset.Position(val.Pos()), Source: source, Expr: types.ExprString(val)})
	}
}

// cacheStatementDSN matches pgx's default_query_exec_mode set to
// cache_statement as a URL query parameter (…&default_query_exec_mode=cache_statement)
// or a keyword/value pair (default_query_exec_mode = 'cache_statement'): the
// key starts the text or follows ?, & or a space, and the value ends it or is
// followed by & or a space, so prose that mentions the setting is no DSN.
var cacheStatementDSN = regexp.MustCompile(`(?i)(?:^|[?&\s])default_query_exec_mode\s*=\s*'?cache_statement'?(?:$|[&\s])`)

// dsnLiteral checks string literals for a DSN that makes pgx prepare every
// statement.
func (p *pass) dsnLiteral(lit *ast.BasicLit) {
	if lit.Kind != token.STRING {
		return
	}
	s, err := strconv.Unquote(lit.Value)
	if err != nil || !cacheStatementDSN.MatchString(s) {
		return
	}
	p.report(lit.Pos(), token.NoPos, Finding{Reasons: mergeReasons(nil, prepared),
		//rdsproxy:allow-pin the finding's own text, not a DSN
		Statement: "default_query_exec_mode=cache_statement", Remedy: dsnPrepareRemedy, Source: "DSN"})
}
