package rdsproxy_test

import (
	"database/sql"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // registers "pgx" for the comparison

	"github.com/rdsproxy/rdsproxy"
	"github.com/rdsproxy/rdsproxy/internal/testdb"
)

// BenchmarkQuery compares raw pgx stdlib with rdsproxy on a one-parameter
// SELECT over loopback, in the same exec mode and the same run. Both pools
// are warm and sized alike, so the difference is rdsproxy's per-query cost:
// the tracer, the checkout policy and the socket probe.
func BenchmarkQuery(b *testing.B) {
	dsn := testdb.WithParams(testdb.Require(b), "application_name", testdb.Prefix()+"_bench",
		"default_query_exec_mode", "cache_describe")
	run := func(b *testing.B, db *sql.DB) {
		var n int
		if err := db.QueryRow("SELECT $1::int", 1).Scan(&n); err != nil { // warm
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if err := db.QueryRow("SELECT $1::int", 42).Scan(&n); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("pgx", func(b *testing.B) {
		db, err := sql.Open("pgx", dsn)
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		db.SetMaxOpenConns(rdsproxy.DefaultMaxConns)
		db.SetMaxIdleConns(rdsproxy.DefaultMaxConns)
		run(b, db)
	})
	for _, mode := range []string{"warn", "off"} {
		b.Run("rdsproxy/pin_check="+mode, func(b *testing.B) {
			db, err := rdsproxy.Open(testdb.WithParams(dsn, "pin_check", mode))
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			run(b, db)
		})
	}
}
