// Package sqlx is a stub with the signatures of sqlx's query API.
package sqlx

import (
	"context"
	"database/sql"
)

type DB struct{ *sql.DB }

func (db *DB) Get(dest any, query string, args ...any) error { return nil }
func (db *DB) GetContext(ctx context.Context, dest any, query string, args ...any) error {
	return nil
}
func (db *DB) Select(dest any, query string, args ...any) error    { return nil }
func (db *DB) MustExec(query string, args ...any) sql.Result       { return nil }
func (db *DB) NamedExec(query string, arg any) (sql.Result, error) { return nil, nil }
func (db *DB) Queryx(query string, args ...any) (*Rows, error)     { return nil, nil }
func (db *DB) Preparex(query string) (*Stmt, error)                { return nil, nil }
func (db *DB) PrepareNamed(query string) (*NamedStmt, error)       { return nil, nil }

type Tx struct{ *sql.Tx }

func (tx *Tx) QueryRowx(query string, args ...any) *Row { return nil }

type Rows struct{}
type Row struct{}
type NamedStmt struct{}

// Stmt has Get and Select without a query argument: the statement is
// already prepared.
type Stmt struct{}

func (s *Stmt) Get(dest any, args ...any) error    { return nil }
func (s *Stmt) Select(dest any, args ...any) error { return nil }

type Execer interface {
	Exec(query string, args ...any) (sql.Result, error)
}

func MustExec(e Execer, query string, args ...any) sql.Result { return nil }
func Get(q any, dest any, query string, args ...any) error    { return nil }
