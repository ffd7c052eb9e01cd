package pgxuse

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

func positives(ctx context.Context, conn *pgx.Conn, tx pgx.Tx, pool *pgxpool.Pool, pc *pgxpool.Conn, ptx *pgxpool.Tx) {
	conn.Exec(ctx, "SET application_name = 'x'")         // want `session_setting: SET application_name = \?`
	tx.Query(ctx, "DECLARE c CURSOR FOR SELECT 1")       // want `cursor: DECLARE c CURSOR FOR SELECT \?`
	pool.QueryRow(ctx, "SELECT pg_try_advisory_lock(1)") // want `advisory_lock`
	pc.Query(ctx, "LOAD 'auto_explain'")                 // want `load: LOAD \?`
	ptx.Exec(ctx, "CREATE TEMPORARY SEQUENCE s")         // want `temp_object`
	conn.Prepare(ctx, "q1", "SELECT 1")                  // want `prepared_statement: SELECT \?`
	ptx.Prepare(ctx, "q2", "SELECT 1")                   // want `prepared_statement: SELECT \?`
	b := &pgx.Batch{}
	b.Queue("SELECT 1")
	b.Queue("SET TIME ZONE 'UTC'") // want `session_setting: SET TIME ZONE \?`
	pool.SendBatch(ctx, b)
}

func negatives(ctx context.Context, conn *pgx.Conn, pool *pgxpool.Pool, name string) {
	conn.Exec(ctx, "SELECT $1", 1)
	pool.Exec(ctx, "INSERT INTO t VALUES ($1) RETURNING id", 1)
	conn.Exec(ctx, "SET search_path TO "+name) // unchecked
	// The SQL argument is the third one: the name is not SQL.
	conn.Prepare(ctx, "SET", name) // want `prepared_statement: \(SQL not a constant\)`
}

// DBTX is sqlc's pgx interface.
type DBTX interface {
	Exec(context.Context, string, ...interface{}) (pgconn.CommandTag, error)
	Query(context.Context, string, ...interface{}) (pgx.Rows, error)
}

func viaInterface(ctx context.Context, db DBTX) {
	db.Exec(ctx, "UNLISTEN *") // want `listen: UNLISTEN \*`
	db.Query(ctx, "SELECT 1")
}
