// Package db is an application's own database layer, checked with -func.
package db

func Run(name string, sql string) {}

func Other(sql string) {}

type Store struct{}

func (Store) Exec(sql string) {}

func (*Store) Query(sql string) {}
