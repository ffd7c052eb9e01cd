package sqldb

import (
	"context"
	"database/sql"
	"fmt"
)

func positives(ctx context.Context, db *sql.DB, conn *sql.Conn, tx *sql.Tx) {
	db.Exec("SET statement_timeout = 0")                   // want `session_setting: SET statement_timeout = \? \(send application_name`
	db.ExecContext(ctx, setPath)                           // want `session_setting: SET search_path TO \?`
	db.QueryRowContext(ctx, lockPrefix+"42)")              // want `advisory_lock: SELECT pg_advisory_lock\(\?\)`
	conn.QueryContext(ctx, "CREATE TEMP TABLE t (id int)") // want `temp_object: CREATE TEMP TABLE t \(id int\)`
	tx.Query("LISTEN jobs")                                // want `listen: LISTEN jobs`
	tx.QueryRow("SELECT nextval('s')")                     // want `sequence: SELECT nextval\(\?\)`
	// Two statements in one string: one finding each.
	db.Exec("SET a.b = 1; DECLARE c CURSOR WITH HOLD FOR SELECT 1") // want `session_setting: SET a.b = \?` `cursor: DECLARE c CURSOR`
	(db).Exec(("DISCARD ALL"))                                      // want `discard: DISCARD ALL`
}

func prepares(ctx context.Context, db *sql.DB, q string) {
	db.Prepare(selectOne)                    // want `prepared_statement: SELECT \? \(Prepare creates a named server-side statement`
	db.PrepareContext(ctx, q)                // want `prepared_statement: \(SQL not a constant\)`
	db.PrepareContext(ctx, "SET work_mem=1") // want `session_setting,prepared_statement: SET work_mem=\?`
}

func negatives(ctx context.Context, db *sql.DB, tenant string) {
	db.Exec(selectOne)
	db.QueryContext(ctx, "SELECT $1::int", 1)
	db.Exec("SELECT pg_advisory_xact_lock(1)")
	// Dynamic SQL is unchecked, never a finding.
	db.Exec(fmt.Sprintf("SET search_path TO %s", tenant))
	db.Exec("SET search_path TO " + tenant)
	// A local variable shadows the package's pinning constant.
	setPath := "SELECT 2"
	db.Exec(setPath)
	{
		const setPath = "SELECT 3"
		db.Exec(setPath)
	}
}

// Finder has a Query method but is no database handle.
type Finder struct{}

func (Finder) Query(q string) []string                        { return nil }
func (Finder) Exec(q string) error                            { return nil }
func (Finder) QueryContext(_ context.Context, q string) error { return nil }

func unrelated(ctx context.Context, f Finder) {
	f.Query("SET search_path TO x")
	f.Exec("LISTEN x")
	f.QueryContext(ctx, "DISCARD ALL")
}

// Searcher is an unrelated interface with the same method names.
type Searcher interface {
	Query(q string) ([]string, error)
	ExecContext(ctx context.Context, q string) error
}

func unrelatedInterface(ctx context.Context, s Searcher) {
	s.Query("SET search_path TO x")
	s.ExecContext(ctx, "LISTEN x")
}

// DBTX is sqlc's interface over *sql.DB and *sql.Tx.
type DBTX interface {
	ExecContext(context.Context, string, ...interface{}) (sql.Result, error)
	PrepareContext(context.Context, string) (*sql.Stmt, error)
}

func viaInterface(ctx context.Context, db DBTX) {
	db.ExecContext(ctx, "SET ROLE app")       // want `session_setting: SET ROLE app`
	db.PrepareContext(ctx, "SELECT * FROM t") // want `prepared_statement: SELECT \* FROM t`
	db.ExecContext(ctx, "SELECT 1")
}

func suppressed(db *sql.DB) {
	db.Exec("SET lock_timeout = 0") //rdsproxy:allow-pin runs on the migration connection, not through the proxy
	//rdsproxy:allow-pin the lock is released by the same session before it returns to the pool
	db.Exec("SELECT pg_advisory_lock(7)")
	// rdsproxy:allow-pin: a space after // and a colon are accepted
	db.Exec("LISTEN ok")
	//rdsproxy:allow-pin
	db.Exec("LISTEN nope") // want `listen: LISTEN nope \(.*\) \[allow-pin without a reason does not suppress`
}

// run passes a constant through a parameter to Exec: reported at the Exec,
// once per pinning constant, with where the value comes from.
func run(db *sql.DB, q string) {
	db.Exec(q) // want `session_setting: SET timezone TO \? \(.*\) \[value from sqldb.go:\d+\]` `discard: DISCARD PLANS`
}

func callers(db *sql.DB) {
	run(db, "SET timezone TO 'UTC'")
	run(db, "SELECT 1")
	//rdsproxy:allow-pin a suppression at the caller's constant works too
	run(db, "DISCARD TEMP")
	run(db, "DISCARD PLANS")
}

// Exported functions can be called from anywhere: their parameters are
// unchecked.
func Exported(db *sql.DB, q string) { db.Exec(q) }

func callExported(db *sql.DB) { Exported(db, "SET x.y = 1") }

// A reassigned parameter is not followed.
func reassigned(db *sql.DB, q string) {
	q = q + ";"
	db.Exec(q)
}

func callReassigned(db *sql.DB) { reassigned(db, "SET x.y = 1") }

const dsn = "postgres://app@proxy:5432/app?default_query_exec_mode=cache_statement" // want `prepared_statement: default_query_exec_mode=cache_statement`

const safeDSN = "postgres://app@proxy:5432/app?default_query_exec_mode=cache_describe"

var kvDSN = "host=proxy default_query_exec_mode = cache_statement" // want `prepared_statement: default_query_exec_mode=cache_statement`

// Prose about the setting is no DSN.
const doc = "drop default_query_exec_mode=cache_statement: it prepares every statement"

var urlDSN = "postgres://h/db?sslmode=require&default_query_exec_mode=cache_statement&x=1" // want `prepared_statement: default_query_exec_mode=cache_statement`

// A method expression shifts the arguments by one: not matched.
func methodExpr(db *sql.DB) { (*sql.DB).Exec(db, "SELECT 1") }

// Generic helpers are followed like others.
func genericRun[T any](db *sql.DB, q string, _ T) {
	db.Exec(q) // want `load: LOAD \?`
}

func callGeneric(db *sql.DB) { genericRun[int](db, "LOAD 'x'", 1) }

func stale(db *sql.DB) {
	//rdsproxy:allow-pin stale: nothing here pins any more
	db.Exec("SELECT 1")
}

// escapes is also called through a function value: its constants are
// reported, and its parameter is unchecked too.
func escapes(db *sql.DB, q string) {
	db.Exec(q) // want `listen: UNLISTEN \*`
}

var escaped = escapes

func callEscapes(db *sql.DB) { escapes(db, "UNLISTEN *") }
