// Package pgconn is a stub with the types of pgx v5's pgconn that the
// analyzer looks at.
package pgconn

type CommandTag struct{}

type StatementDescription struct{}
