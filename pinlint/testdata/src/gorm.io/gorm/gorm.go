// Package gorm is a stub with the signatures of GORM's raw SQL API.
package gorm

type Config struct {
	PrepareStmt            bool
	SkipDefaultTransaction bool
}

type Session struct{ PrepareStmt bool }

type Dialector interface{}

type DB struct{ Error error }

func Open(d Dialector, opts ...*Config) (*DB, error) { return nil, nil }
func (db *DB) Raw(sql string, values ...any) *DB     { return db }
func (db *DB) Exec(sql string, values ...any) *DB    { return db }
func (db *DB) Where(query any, args ...any) *DB      { return db }
func (db *DB) Session(s *Session) *DB                { return db }
