package rdsproxy_test

import (
	"database/sql"
	"slices"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers "pgx" for the comparison

	"github.com/rdsproxy/rdsproxy"
	"github.com/rdsproxy/rdsproxy/internal/testdb"
)

// processCPU returns this process's user+system CPU time in nanoseconds.
func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// benchDSN is the test database in pgx's cache_describe mode (rdsproxy's
// default), so raw pgx and rdsproxy run the same protocol.
func benchDSN(b *testing.B) string {
	return testdb.WithParams(testdb.Require(b), "application_name", testdb.Prefix()+"_bench",
		"default_query_exec_mode", "cache_describe")
}

// openRawPgx opens raw pgx stdlib with the same pool size as rdsproxy's
// default, closed when the benchmark ends.
func openRawPgx(b *testing.B, dsn string) *sql.DB {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	db.SetMaxOpenConns(rdsproxy.DefaultMaxConns)
	db.SetMaxIdleConns(rdsproxy.DefaultMaxConns)
	return db
}

// runQueryBench runs the one-parameter SELECT on a warm pool and reports
// allocations and the client's CPU per query.
func runQueryBench(b *testing.B, db *sql.DB) {
	var n int
	if err := db.QueryRow("SELECT $1::int", 1).Scan(&n); err != nil { // warm
		b.Fatal(err)
	}
	b.ReportAllocs()
	cpu0 := processCPU()
	for b.Loop() {
		if err := db.QueryRow("SELECT $1::int", 42).Scan(&n); err != nil {
			b.Fatal(err)
		}
	}
	// Wall time per query is dominated by the loopback round trip and the
	// server, and swings with whatever else runs on the machine. The client
	// process's CPU time per query is the driver's own cost.
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "client-cpu-ns/op")
}

// BenchmarkQuery compares raw pgx stdlib with rdsproxy on a one-parameter
// SELECT over loopback, in the same exec mode and the same run. Both pools
// are warm and sized alike, so the difference is rdsproxy's per-query cost:
// the tracer, the checkout policy and the socket probe.
func BenchmarkQuery(b *testing.B) {
	dsn := benchDSN(b)
	b.Run("pgx", func(b *testing.B) { runQueryBench(b, openRawPgx(b, dsn)) })
	for _, mode := range []string{"warn", "off", "retire", "error"} {
		b.Run("rdsproxy/pin_check="+mode, func(b *testing.B) {
			db, err := rdsproxy.Open(testdb.WithParams(dsn, "pin_check", mode))
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			runQueryBench(b, db)
		})
	}
}

// BenchmarkQueryPaired answers "how much slower is rdsproxy than raw pgx"
// on a noisy machine: every iteration runs one query through each, back to
// back and in alternating order, and the benchmark reports the median
// latency of each and the median of the per-iteration ratios. Drift and
// neighbours' bursts hit both sides of a pair alike, which sequential
// sub-benchmarks cannot promise.
func BenchmarkQueryPaired(b *testing.B) {
	dsn := benchDSN(b)
	raw := openRawPgx(b, dsn)
	rds, err := rdsproxy.Open(dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer rds.Close()
	runPairedQueries(b, raw, rds)
}

// runPairedQueries runs one query through each of raw and rds per
// iteration, back to back in alternating order, and reports each side's
// median latency and the median of the per-iteration ratios.
func runPairedQueries(b *testing.B, raw, rds *sql.DB) {
	var n int
	query := func(db *sql.DB) time.Duration {
		t0 := time.Now()
		if err := db.QueryRow("SELECT $1::int", 42).Scan(&n); err != nil {
			b.Fatal(err)
		}
		return time.Since(t0)
	}
	query(raw)
	query(rds)
	pgxT, rdsT, ratio := pairedLoop(b, func() time.Duration { return query(raw) }, func() time.Duration { return query(rds) })
	b.ReportMetric(median(pgxT), "pgx-ns/query")
	b.ReportMetric(median(rdsT), "rdsproxy-ns/query")
	b.ReportMetric(median(ratio), "rdsproxy/pgx")
}

// pairedLoop runs base and subject once each per iteration, back to back in
// alternating order, and returns their times and the per-iteration ratios
// subject/base: drift and a neighbour's burst hit both sides of a pair alike.
func pairedLoop(b *testing.B, base, subject func() time.Duration) (baseT, subjectT, ratio []float64) {
	i := 0
	for b.Loop() {
		var x, y time.Duration
		if i%2 == 0 {
			x, y = base(), subject()
		} else {
			y, x = subject(), base()
		}
		i++
		baseT = append(baseT, float64(x))
		subjectT = append(subjectT, float64(y))
		ratio = append(ratio, float64(y)/float64(x))
	}
	return baseT, subjectT, ratio
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
