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
		r.add(classifyStmt(raw.GetStmt()), stmtText(sql, raw))
	}
	return r, nil
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

// classifyStmt returns the reasons a top-level statement pins.
func classifyStmt(n *pg_query.Node) reasonSet {
	switch n.GetNode().(type) {
	case *pg_query.Node_CreateFunctionStmt, *pg_query.Node_RuleStmt:
		// Routine bodies and rule actions run later, elsewhere; the proxy
		// does not look inside them (corpus 132, 133).
		return 0
	}
	return topLevelStmt(n) | scanTree(n)
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
	return 0
}

// isTempRel reports whether a relation being created is temporary: TEMP,
// TEMPORARY, GLOBAL/LOCAL TEMP, or in the pg_temp schema (corpus 83).
func isTempRel(rv *pg_query.RangeVar) bool {
	return rv != nil && (rv.GetRelpersistence() == "t" || rv.GetSchemaname() == "pg_temp")
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

// scanTree walks the whole tree for calls of pinning functions and for
// SELECT ... INTO a temporary table, skipping routine and rule definitions.
func scanTree(n *pg_query.Node) reasonSet {
	var s reasonSet
	walk(n.ProtoReflect(), func(m proto.Message) bool {
		switch x := m.(type) {
		case *pg_query.CreateFunctionStmt, *pg_query.RuleStmt:
			return false
		case *pg_query.FuncCall:
			if names := x.GetFuncname(); len(names) > 0 {
				s |= callReasons[names[len(names)-1].GetString_().GetSval()]
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
