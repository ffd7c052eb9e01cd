// Command sqlc runs sqlc-generated code (package db, sql_package:
// database/sql) on rdsproxy. The generated code is committed; regenerate it
// with
//
//	cd examples/sqlc && go run github.com/sqlc-dev/sqlc/cmd/sqlc@v1.31.1 generate
//
// Package db is sqlc's default output: every query is db.QueryContext or
// db.ExecContext with arguments, which rdsproxy runs as pgx's unnamed
// statement, leaving nothing on the server. Package dbprepared is the same
// queries with emit_prepared_queries: true: its Prepare calls db.Prepare for
// every query, which creates named server-side prepared statements, session
// state that pins the RDS Proxy session; rdsproxy's pinning check reports
// each one. Behind RDS Proxy leave emit_prepared_queries off.
package main

import (
	"context"
	"database/sql"
	_ "embed"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/rdsproxy/rdsproxy"
	"github.com/rdsproxy/rdsproxy/examples/sqlc/db"
)

//go:embed schema.sql
var schema string

const defaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

func main() {
	dsn := os.Getenv("DATABASE_URL")
	if dsn == "" {
		dsn = defaultDatabaseURL
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := run(ctx, dsn, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "sqlc:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, dsn string, out io.Writer, opts ...rdsproxy.Option) error {
	sqlDB, err := rdsproxy.Open(dsn, opts...)
	if err != nil {
		return err
	}
	defer sqlDB.Close()
	if _, err := sqlDB.ExecContext(ctx, schema); err != nil {
		return fmt.Errorf("schema: %w", err)
	}

	queries := db.New(sqlDB)
	author, err := queries.CreateAuthor(ctx, db.CreateAuthorParams{
		Name: "Brian Kernighan",
		Bio:  sql.NullString{String: "Co-author of The C Programming Language", Valid: true},
	})
	if err != nil {
		return err
	}
	defer queries.DeleteAuthor(context.WithoutCancel(ctx), author.ID)

	// A transaction: the generated queries bound to tx with WithTx.
	tx, err := sqlDB.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	qtx := queries.WithTx(tx)
	if err := qtx.UpdateAuthorBio(ctx, db.UpdateAuthorBioParams{ID: author.ID, Bio: sql.NullString{String: "Co-author of The Go Programming Language", Valid: true}}); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}

	got, err := queries.GetAuthor(ctx, author.ID)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "author %d: %s, %s\n", got.ID, got.Name, got.Bio.String)
	list, err := queries.ListAuthorsByName(ctx, "Brian Kernighan")
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "authors named %q: %d\n", "Brian Kernighan", len(list))
	return nil
}
