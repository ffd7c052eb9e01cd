package rdsproxy_test

import (
	"context"
	"testing"

	"github.com/rdsproxy/rdsproxy"
	"github.com/rdsproxy/rdsproxy/internal/testdb"
	"github.com/rdsproxy/rdsproxy/internal/testiam"
)

// BenchmarkDial measures one new physical connection: through the RDS Proxy
// emulator with IAM (token from the cache, and signed every time), against a
// password (trust) dial straight to PostgreSQL with and without TLS. Each
// iteration builds a connector, checks out one connection and closes both,
// so every iteration dials.
func BenchmarkDial(b *testing.B) {
	pg := testdb.Require(b)
	dial := func(b *testing.B, dsn string, opts ...func() []rdsproxy.Option) {
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			var o []rdsproxy.Option
			for _, f := range opts {
				o = append(o, f()...)
			}
			c, err := rdsproxy.NewConnector(dsn, o...)
			if err != nil {
				b.Fatal(err)
			}
			conn, err := c.Connect(ctx)
			if err != nil {
				b.Fatal(err)
			}
			conn.Close()
			c.Close()
		}
	}
	b.Run("password/plaintext", func(b *testing.B) { dial(b, testdb.WithParams(pg, "sslmode", "disable")) })
	b.Run("password/tls", func(b *testing.B) { dial(b, testdb.WithParams(pg, "sslmode", "require")) })

	_, dsn := testiam.Start(b)
	shared := rdsproxy.NewTokenSource(rdsproxy.TokenSourceOptions{Credentials: testiam.Credentials})
	b.Run("iam/cached_token", func(b *testing.B) {
		dial(b, dsn, func() []rdsproxy.Option { return []rdsproxy.Option{rdsproxy.WithTokenSource(shared)} })
	})
	b.Run("iam/signed_each_dial", func(b *testing.B) {
		dial(b, dsn, func() []rdsproxy.Option {
			return []rdsproxy.Option{rdsproxy.WithTokenSource(rdsproxy.NewTokenSource(rdsproxy.TokenSourceOptions{Credentials: testiam.Credentials}))}
		})
	})
}
