// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

package pinlint

import (
	"go/types"
	"strconv"
	"strings"
)

// Import paths of the database APIs the analyzer knows.
const (
	pathDatabaseSQL = "database/sql"
	pathPgx         = "github.com/jackc/pgx/v5"
	pathPgxpool     = "github.com/jackc/pgx/v5/pgxpool"
	pathPgconn      = "github.com/jackc/pgx/v5/pgconn"
	pathSqlx        = "github.com/jmoiron/sqlx"
	pathGorm        = "gorm.io/gorm"
)

// sqlMethod describes where one method or function takes its SQL text.
type sqlMethod struct {
	arg int // index of the SQL argument
	// prepares: the call creates a named server-side prepared statement,
	// which pins whatever the SQL is.
	prepares bool
}

// databaseSQLMethods are the query methods of database/sql's DB, Conn and Tx.
var databaseSQLMethods = map[string]sqlMethod{
	"Query": {arg: 0}, "QueryContext": {arg: 1},
	"QueryRow": {arg: 0}, "QueryRowContext": {arg: 1},
	"Exec": {arg: 0}, "ExecContext": {arg: 1},
	"Prepare": {arg: 0, prepares: true}, "PrepareContext": {arg: 1, prepares: true},
}

// pgxMethods are the query methods of pgx's Conn and Tx and of pgxpool's
// Pool, Conn and Tx. SendBatch is not listed: the SQL of a batch is in its
// Queue calls, which are checked where they are written.
var pgxMethods = map[string]sqlMethod{
	"Exec": {arg: 1}, "Query": {arg: 1}, "QueryRow": {arg: 1},
	// pgx names every prepared statement (with name, or a digest of the SQL).
	"Prepare": {arg: 2, prepares: true},
}

// sqlxMethods are the query methods sqlx adds to DB, Conn and Tx (the
// embedded database/sql methods match as database/sql's).
var sqlxMethods = map[string]sqlMethod{
	"Get": {arg: 1}, "GetContext": {arg: 2},
	"Select": {arg: 1}, "SelectContext": {arg: 2},
	"Queryx": {arg: 0}, "QueryxContext": {arg: 1},
	"QueryRowx": {arg: 0}, "QueryRowxContext": {arg: 1},
	"MustExec": {arg: 0}, "MustExecContext": {arg: 1},
	"NamedExec": {arg: 0}, "NamedExecContext": {arg: 1},
	"NamedQuery": {arg: 0}, "NamedQueryContext": {arg: 1},
	"Preparex": {arg: 0, prepares: true}, "PreparexContext": {arg: 1, prepares: true},
	"PrepareNamed": {arg: 0, prepares: true}, "PrepareNamedContext": {arg: 1, prepares: true},
}

// sqlxFuncs are sqlx's package-level helpers: the same operations with the
// database handle as first argument.
var sqlxFuncs = map[string]sqlMethod{
	"Get": {arg: 2}, "GetContext": {arg: 3},
	"Select": {arg: 2}, "SelectContext": {arg: 3},
	"MustExec": {arg: 1}, "MustExecContext": {arg: 2},
	"NamedExec": {arg: 1}, "NamedExecContext": {arg: 2},
	"NamedQuery": {arg: 1}, "NamedQueryContext": {arg: 2},
	"Preparex": {arg: 1, prepares: true}, "PreparexContext": {arg: 2, prepares: true},
}

var gormMethods = map[string]sqlMethod{"Raw": {arg: 0}, "Exec": {arg: 0}}

// apiFamily is one library: the named types whose methods carry SQL.
type apiFamily struct {
	name    string
	types   map[string][]string // import path -> type names
	methods map[string]sqlMethod
	// results are the packages whose types an interface method must return
	// to count as this family's (see matchInterface).
	results []string
}

var families = []apiFamily{
	{
		name:    "database/sql",
		types:   map[string][]string{pathDatabaseSQL: {"DB", "Conn", "Tx"}},
		methods: databaseSQLMethods,
		results: []string{pathDatabaseSQL},
	},
	{
		name:    "pgx",
		types:   map[string][]string{pathPgx: {"Conn", "Tx"}, pathPgxpool: {"Pool", "Conn", "Tx"}},
		methods: pgxMethods,
		results: []string{pathPgx, pathPgconn},
	},
	{
		name: "sqlx",
		types: map[string][]string{pathSqlx: {"DB", "Tx", "Conn",
			"Queryer", "QueryerContext", "Execer", "ExecerContext", "Ext", "ExtContext", "Preparer", "PreparerContext"}},
		methods: sqlxMethods,
		results: []string{pathSqlx},
	},
	{
		name:    "gorm",
		types:   map[string][]string{pathGorm: {"DB"}},
		methods: gormMethods,
	},
}

// match is a call that carries SQL.
type match struct {
	sqlMethod
	source string // the API, e.g. "database/sql DB.ExecContext"
}

// lookup finds the SQL argument of a call to fn, matching by the declaring
// package and receiver type, never by name alone.
func (c *config) lookup(fn *types.Func) (match, bool) {
	if fn.Pkg() == nil {
		return match{}, false
	}
	fn = fn.Origin()
	sig, _ := fn.Type().(*types.Signature)
	if sig == nil {
		return match{}, false
	}
	pkg, name := fn.Pkg().Path(), fn.Name()
	recv := sig.Recv()
	if recv == nil {
		if m, ok := c.extra[pkg+"."+name]; ok {
			return match{m, "function " + pkg + "." + name}, true
		}
		if m, ok := sqlxFuncs[name]; ok && pkg == pathSqlx {
			return match{m, "sqlx." + name}, true
		}
		return match{}, false
	}
	typeName := namedOf(recv.Type())
	if typeName == "" {
		return match{}, false
	}
	// The receiver's own package: for an interface method declared in a
	// named interface, the receiver is that interface type.
	if m, ok := c.extra[pkg+"."+typeName+"."+name]; ok {
		return match{m, "method " + pkg + "." + typeName + "." + name}, true
	}
	if pkg == pathPgx && typeName == "Batch" && name == "Queue" {
		return match{sqlMethod{arg: 0}, "pgx Batch.Queue"}, true
	}
	for _, f := range families {
		for _, t := range f.types[pkg] {
			if t != typeName {
				continue
			}
			if m, ok := f.methods[name]; ok {
				return match{m, f.name + " " + typeName + "." + name}, true
			}
		}
	}
	if _, isIface := recv.Type().Underlying().(*types.Interface); isIface {
		return matchInterface(sig, typeName, name)
	}
	return match{}, false
}

// matchInterface matches a method of an application's own interface (such as
// sqlc's DBTX) that stands for a database handle: the name is one of a
// family's query methods, the SQL parameter is a string, and a result is of
// the family's types (*sql.Rows, sql.Result, pgconn.CommandTag, pgx.Rows...).
// A Query method of an unrelated type returns none of these.
func matchInterface(sig *types.Signature, typeName, name string) (match, bool) {
	for _, f := range families {
		m, ok := f.methods[name]
		if !ok || len(f.results) == 0 || m.arg >= sig.Params().Len() {
			continue
		}
		if b, ok := sig.Params().At(m.arg).Type().(*types.Basic); !ok || b.Kind() != types.String {
			continue
		}
		for r := range sig.Results().Variables() {
			if p := pkgOf(r.Type()); p != "" && contains(f.results, p) {
				return match{m, f.name + "-style interface " + typeName + "." + name}, true
			}
		}
	}
	return match{}, false
}

// namedOf returns the name of t's named type, through one pointer.
func namedOf(t types.Type) string {
	if p, ok := types.Unalias(t).(*types.Pointer); ok {
		t = p.Elem()
	}
	if n, ok := types.Unalias(t).(*types.Named); ok {
		return n.Obj().Name()
	}
	return ""
}

// pkgOf returns the import path of t's named type, through pointers.
func pkgOf(t types.Type) string {
	for {
		p, ok := types.Unalias(t).(*types.Pointer)
		if !ok {
			break
		}
		t = p.Elem()
	}
	if n, ok := types.Unalias(t).(*types.Named); ok && n.Obj().Pkg() != nil {
		return n.Obj().Pkg().Path()
	}
	return ""
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// parseExtraFunc parses one -func value: importpath.Func:N or
// importpath.Type.Method:N, N being the index of the SQL argument. The name is
// matched as written against the called function's package path, receiver type
// and name, so import paths with dots need no escaping.
func parseExtraFunc(v string) (string, sqlMethod, error) {
	i := strings.LastIndexByte(v, ':')
	if i < 0 {
		return "", sqlMethod{}, errFuncSyntax(v)
	}
	name, idx := v[:i], v[i+1:]
	n, err := strconv.Atoi(idx)
	if err != nil || n < 0 || !strings.Contains(name[strings.LastIndexByte(name, '/')+1:], ".") {
		return "", sqlMethod{}, errFuncSyntax(v)
	}
	return name, sqlMethod{arg: n}, nil
}
