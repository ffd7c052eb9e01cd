package pinning

import (
	"testing"

	"github.com/rdsproxy/rdsproxy/internal/pinning/pinningtest"
)

// BenchmarkParserGuard is the guard's pass on its own: a typical statement
// that goes to the parser, and the worst 16 KB inputs.
func BenchmarkParserGuard(b *testing.B) {
	cases := []struct{ name, sql string }{
		{"set", "SET search_path TO app, public"},
		{"nextval-insert", "INSERT INTO orders (id, customer_id, total, created_at) VALUES (nextval('orders_id_seq'), $1, $2, now()) RETURNING id"},
		{"values-16KB", pinningtest.Sized(pinningtest.Named("values"), MaxStatementBytes)},
		{"plus-16KB", pinningtest.Sized(pinningtest.Named("plus"), MaxStatementBytes)},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				overParserBudget(c.sql)
			}
		})
	}
}
