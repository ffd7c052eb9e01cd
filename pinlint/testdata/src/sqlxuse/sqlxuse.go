package sqlxuse

import (
	"context"

	"github.com/jmoiron/sqlx"
)

func positives(ctx context.Context, db *sqlx.DB, tx *sqlx.Tx, e sqlx.Execer) {
	var n int
	db.Get(&n, "SELECT setval('s', 1)")            // want `sequence: SELECT setval\(\?, \?\)`
	db.GetContext(ctx, &n, "SET search_path TO a") // want `session_setting`
	db.Select(&n, "SELECT 1")
	db.MustExec("RESET ALL")                       // want `session_setting: RESET ALL`
	db.NamedExec("SET x.y = :v", map[string]any{}) // want `session_setting`
	db.Queryx("DECLARE c CURSOR FOR SELECT 1")     // want `cursor`
	tx.QueryRowx("SELECT pg_advisory_lock(1)")     // want `advisory_lock`
	db.Preparex("SELECT 1")                        // want `prepared_statement: SELECT \?`
	db.PrepareNamed("SELECT :id")                  // want `prepared_statement`
	db.Exec("DISCARD SEQUENCES")                   // want `discard: DISCARD SEQUENCES .*\[database/sql DB.Exec\]`
	e.Exec("LISTEN x")                             // want `listen`
	sqlx.MustExec(e, "SET ROLE r")                 // want `session_setting`
	sqlx.Get(db, &n, "SELECT pg_advisory_lock(2)") // want `advisory_lock`
}

func negatives(s *sqlx.Stmt) {
	var n int
	// Stmt.Get's second argument is a bind value, not SQL.
	s.Get(&n, "SET search_path TO a")
	s.Select(&n, "LISTEN x")
}
