// Command cluster-sqlc runs sqlc-generated code (package db of the sqlc
// example) on both endpoints of an RDS Proxy: one Queries per role, built on
// the two pools of one rdsproxy.Cluster.
//
// sqlc's generated New takes any DBTX, so the writer's Queries wraps
// Cluster.Writer and the reader's Cluster.Reader; WithTx binds the writer's
// to a transaction. Which Queries a call goes through is the application's
// choice, made where the call is written: a read that must see the
// application's own latest write uses the writer's.
//
// Run it with DATABASE_URL (a DSN with read_host) or against a local
// PostgreSQL (both pools on it).
package main

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/rdsproxy/rdsproxy"
	"github.com/rdsproxy/rdsproxy/examples/sqlc/db"
)

// schema is the sqlc example's schema.sql.
const schema = `CREATE TABLE IF NOT EXISTS sqlc_authors (
  id   bigserial PRIMARY KEY,
  name text      NOT NULL,
  bio  text
)`

// defaultDatabaseURL is a local PostgreSQL; its read_host is the same server.
const defaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable&read_host=127.0.0.1"

func main() {
	dsn := os.Getenv("DATABASE_URL")
	if dsn == "" {
		dsn = defaultDatabaseURL
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := run(ctx, dsn, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "cluster-sqlc:", err)
		os.Exit(1)
	}
}

// store holds one Queries per role.
type store struct {
	write *db.Queries // the proxy's default endpoint
	read  *db.Queries // its read-only endpoint
}

func newStore(cluster *rdsproxy.Cluster) store {
	return store{write: db.New(cluster.Writer()), read: db.New(cluster.Reader())}
}

func run(ctx context.Context, dsn string, out io.Writer, opts ...rdsproxy.Option) error {
	cluster, err := rdsproxy.OpenCluster(dsn, opts...)
	if err != nil {
		return err
	}
	defer cluster.Close()
	if _, err := cluster.Writer().ExecContext(ctx, schema); err != nil {
		return fmt.Errorf("schema: %w", err)
	}
	s := newStore(cluster)

	author, err := s.write.CreateAuthor(ctx, db.CreateAuthorParams{
		Name: "Ken Thompson",
		Bio:  sql.NullString{String: "Co-creator of Unix", Valid: true},
	})
	if err != nil {
		return err
	}
	defer s.write.DeleteAuthor(context.WithoutCancel(ctx), author.ID)

	// A transaction: on the writer, with the writer's Queries bound to it.
	tx, err := cluster.Writer().BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := s.write.WithTx(tx).UpdateAuthorBio(ctx, db.UpdateAuthorBioParams{ID: author.ID,
		Bio: sql.NullString{String: "Co-creator of Unix and Go", Valid: true}}); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}

	// Just written: read it on the writer (no read-your-writes on the reader).
	got, err := s.write.GetAuthor(ctx, author.ID)
	if err != nil {
		return err
	}
	// Any read that can be a little behind: on the reader.
	list, err := s.read.ListAuthorsByName(ctx, "Ken Thompson")
	if err != nil {
		return err
	}
	// A write on the reader's Queries is refused (SQLSTATE 25006) and not
	// executed; IsReadOnlyViolation tells it from other errors.
	err = s.read.UpdateAuthorBio(ctx, db.UpdateAuthorBioParams{ID: author.ID})
	fmt.Fprintf(out, "author %d: %s; listed on the reader: %d; write on the reader refused: %t\n",
		got.ID, got.Bio.String, len(list), rdsproxy.IsReadOnlyViolation(err))
	return nil
}
