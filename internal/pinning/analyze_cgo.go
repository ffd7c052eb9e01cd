//go:build cgo

package pinning

import (
	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// parserAvailable tells tests which back-end is compiled in.
const parserAvailable = true

// analyze parses sql with the PostgreSQL parser and classifies each statement
// from its syntax tree. Only called after the prefilter said sql may pin.
func analyze(sql string) (Report, error) {
	res, err := pg_query.Parse(sql)
	if err != nil {
		return analyzeLexical(sql), unparsable(err.Error())
	}
	var r Report
	if len(sql) > MaxStatementBytes {
		r.add(setStatementSize, sql)
	}
	for _, raw := range res.GetStmts() {
		r.add(classifyStmt(raw.GetStmt(), 0), stmtText(sql, raw))
	}
	return r, nil
}

// parsedQueryText returns the reasons SQL handed to a query-text function
// would pin, at nesting depth depth. Text the parser rejects gets the lexical
// verdict, as a top-level string does (PostgreSQL would fail the call).
func parsedQueryText(sql string, depth int) reasonSet {
	res, err := pg_query.Parse(sql)
	if err != nil {
		return lexicalQueryText(sql, depth)
	}
	var s reasonSet
	for _, raw := range res.GetStmts() {
		s |= classifyStmt(raw.GetStmt(), depth)
	}
	return s
}

// stmtText returns the source text of one statement; a zero length means
// "to the end of the input".
func stmtText(sql string, raw *pg_query.RawStmt) string {
	start := int(raw.GetStmtLocation())
	if start < 0 || start > len(sql) {
		start = 0
	}
	end := len(sql)
	if n := int(raw.GetStmtLen()); n > 0 && start+n <= len(sql) {
		end = start + n
	}
	return sql[start:end]
}

// classifyStmt returns the reasons a statement pins; depth counts the
// query-text functions it is nested in (0 at the top).
func classifyStmt(n *pg_query.Node, depth int) reasonSet {
	switch x := n.GetNode().(type) {
	case *pg_query.Node_CreateFunctionStmt:
		// Routine bodies run later, elsewhere; the proxy does not look
		// inside them (corpus 132, 133). A routine created in pg_temp is
		// itself a temporary object.
		if inTempSchema(x.CreateFunctionStmt.GetFuncname()) {
			return setTempObject
		}
		return 0
	case *pg_query.Node_RuleStmt:
		// Rule actions run later, on the rule's table.
		return 0
	}
	return topLevelStmt(n) | scanTree(n, depth)
}

// inTempSchema reports whether a qualified object name ([db.]schema.name, or
// schema.operator) has the session's temporary schema as its schema.
func inTempSchema(names []*pg_query.Node) bool {
	return len(names) >= 2 && isTempSchema(names[len(names)-2].GetString_().GetSval())
}

// topLevelStmt applies the rules that depend on the statement's kind.
func topLevelStmt(n *pg_query.Node) reasonSet {
	switch x := n.GetNode().(type) {
	case *pg_query.Node_VariableSetStmt, *pg_query.Node_ConstraintsSetStmt:
		// SET/RESET in every form, including SET LOCAL, SET TRANSACTION
		// and SET CONSTRAINTS (corpus 35, 36, 49, 50, 52: policy, pins).
		// VariableSetStmt nodes nested in ALTER ROLE/DATABASE/FUNCTION ...
		// SET are persistent defaults and are not looked at.
		return setSessionSetting
	case *pg_query.Node_PrepareStmt, *pg_query.Node_ExecuteStmt, *pg_query.Node_DeallocateStmt:
		return setPreparedStatement
	case *pg_query.Node_DiscardStmt:
		return setDiscard
	case *pg_query.Node_DeclareCursorStmt:
		// WITH HOLD or not (corpus 92).
		return setCursor
	case *pg_query.Node_ListenStmt, *pg_query.Node_UnlistenStmt:
		// Policy (corpus 99, 100): UNLISTEN pins like LISTEN.
		return setListen
	case *pg_query.Node_LoadStmt:
		return setLoad
	case *pg_query.Node_CreateStmt:
		if isTempRel(x.CreateStmt.GetRelation()) {
			return setTempObject
		}
	case *pg_query.Node_CreateSeqStmt:
		if isTempRel(x.CreateSeqStmt.GetSequence()) {
			return setTempObject
		}
	case *pg_query.Node_ViewStmt:
		// Policy (corpus 85): every CREATE VIEW may be temporary; see
		// createRules in classify.go.
		return setTempObject
	case *pg_query.Node_CreateTableAsStmt:
		var s reasonSet
		c := x.CreateTableAsStmt
		if c.GetObjtype() == pg_query.ObjectType_OBJECT_TABLE && isTempRel(c.GetInto().GetRel()) {
			s |= setTempObject
		}
		if c.GetQuery().GetExecuteStmt() != nil {
			s |= setPreparedStatement
		}
		return s
	case *pg_query.Node_ExplainStmt:
		// The explained statement decides, executed or not (corpus 68, 114).
		return topLevelStmt(x.ExplainStmt.GetQuery())
	}
	if createsInTempSchema(n) {
		// Any other object a session may create in pg_temp (createRules in
		// classify.go lists them) lives until the session ends.
		return setTempObject
	}
	return 0
}

// createsInTempSchema reports whether n creates a type, domain, aggregate,
// operator, collation, conversion, statistics object, text search object or
// foreign table (also by IMPORT FOREIGN SCHEMA) in the session's temporary
// schema.
func createsInTempSchema(n *pg_query.Node) bool {
	switch x := n.GetNode().(type) {
	case *pg_query.Node_DefineStmt: // aggregate, operator, type, collation, text search
		return inTempSchema(x.DefineStmt.GetDefnames())
	case *pg_query.Node_CompositeTypeStmt:
		return isTempSchema(x.CompositeTypeStmt.GetTypevar().GetSchemaname())
	case *pg_query.Node_CreateEnumStmt:
		return inTempSchema(x.CreateEnumStmt.GetTypeName())
	case *pg_query.Node_CreateRangeStmt:
		return inTempSchema(x.CreateRangeStmt.GetTypeName())
	case *pg_query.Node_CreateDomainStmt:
		return inTempSchema(x.CreateDomainStmt.GetDomainname())
	case *pg_query.Node_CreateConversionStmt:
		return inTempSchema(x.CreateConversionStmt.GetConversionName())
	case *pg_query.Node_CreateStatsStmt:
		return inTempSchema(x.CreateStatsStmt.GetDefnames())
	case *pg_query.Node_CreateOpClassStmt:
		return inTempSchema(x.CreateOpClassStmt.GetOpclassname())
	case *pg_query.Node_CreateOpFamilyStmt:
		return inTempSchema(x.CreateOpFamilyStmt.GetOpfamilyname())
	case *pg_query.Node_CreateForeignTableStmt:
		return isTempRel(x.CreateForeignTableStmt.GetBaseStmt().GetRelation())
	case *pg_query.Node_ImportForeignSchemaStmt:
		return isTempSchema(x.ImportForeignSchemaStmt.GetLocalSchema())
	}
	return false
}

// isTempRel reports whether a relation being created is temporary: TEMP,
// TEMPORARY, GLOBAL/LOCAL TEMP, or in the session's temporary schema
// (pg_temp, corpus 83, or its real name pg_temp_N).
func isTempRel(rv *pg_query.RangeVar) bool {
	return rv != nil && (rv.GetRelpersistence() == "t" || isTempSchema(rv.GetSchemaname()))
}

// callReasons maps function names as the parser reports them (unquoted names
// folded to lower case) to the reason a call pins; see callFuncs.
var callReasons = func() map[string]reasonSet {
	m := make(map[string]reasonSet, len(callFuncs))
	for _, f := range callFuncs {
		m[f.name] = f.set
	}
	return m
}()

// queryTextArgs maps the query-text functions to their query argument; see
// queryTextFuncs.
var queryTextArgs = func() map[string]struct{ arg, maxArgs int } {
	m := make(map[string]struct{ arg, maxArgs int }, len(queryTextFuncs))
	for _, f := range queryTextFuncs {
		m[f.name] = struct{ arg, maxArgs int }{f.arg, f.maxArgs}
	}
	return m
}()

// scanTree walks the whole tree for calls of pinning functions, query text
// handed to query-text functions, UPDATE pg_settings and SELECT ... INTO a
// temporary table, skipping routine and rule definitions.
func scanTree(n *pg_query.Node, depth int) reasonSet {
	var s reasonSet
	walk(n.ProtoReflect(), func(m proto.Message) bool {
		switch x := m.(type) {
		case *pg_query.CreateFunctionStmt, *pg_query.RuleStmt:
			return false
		case *pg_query.FuncCall:
			names := x.GetFuncname()
			if len(names) == 0 {
				break
			}
			name := names[len(names)-1].GetString_().GetSval()
			s |= callReasons[name]
			if q, ok := queryTextArgs[name]; ok && depth < maxQueryTextDepth {
				if text, ok := literalArg(x.GetArgs(), q.arg, q.maxArgs); ok {
					s |= parsedQueryText(text, depth+1)
				}
			}
		case *pg_query.UpdateStmt:
			// The pg_settings update rule calls set_config(..., false).
			if x.GetRelation().GetRelname() == "pg_settings" {
				s |= setSessionSetting
			}
		case *pg_query.SelectStmt:
			if isTempRel(x.GetIntoClause().GetRel()) {
				s |= setTempObject
			}
		}
		return true
	})
	return s
}

// literalArg returns argument n of a call with at most maxArgs arguments (0:
// any) when it is a string constant, optionally with :: casts: the forms
// queryTextArg in classify.go reads. A cast written CAST(x AS t) or t 'x'
// places the TypeCast before the constant and is not read, like any other
// expression or a named argument.
func literalArg(args []*pg_query.Node, n, maxArgs int) (string, bool) {
	if n >= len(args) || maxArgs > 0 && len(args) > maxArgs {
		return "", false
	}
	a := args[n]
	var casts []*pg_query.TypeCast
	for a.GetTypeCast() != nil {
		casts = append(casts, a.GetTypeCast())
		a = a.GetTypeCast().GetArg()
	}
	c := a.GetAConst()
	if c == nil || c.GetSval() == nil {
		return "", false
	}
	for _, tc := range casts {
		if tc.GetLocation() <= c.GetLocation() {
			return "", false
		}
	}
	return c.GetSval().GetSval(), true
}

// walk visits every message of the tree depth-first; visit returns false to
// skip a subtree.
func walk(m protoreflect.Message, visit func(proto.Message) bool) {
	if !m.IsValid() || !visit(m.Interface()) {
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Message() == nil || fd.IsMap() {
			return true
		}
		if fd.IsList() {
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				walk(l.Get(i).Message(), visit)
			}
			return true
		}
		walk(v.Message(), visit)
		return true
	})
}
