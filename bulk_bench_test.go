package rdsproxy_test

import (
	"database/sql"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rdsproxy/rdsproxy"
	"github.com/rdsproxy/rdsproxy/internal/testdb"
)

// resetPeakRSS restarts the kernel's count of this process's peak resident
// set (VmHWM), so that peakRSS measures one sub-benchmark alone. It reports
// false where that is not possible (not Linux, or /proc not writable).
func resetPeakRSS() bool {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
}

// peakRSS returns this process's peak resident set size in bytes (VmHWM),
// which includes the C heap a parser would use, or 0 where there is none.
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// quietLogger keeps the pinning warning (statement_size, once per distinct
// statement) out of the benchmark's output; it is still formatted and handed
// to a handler, as by default.
var quietLogger = rdsproxy.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))

// bulkInsert returns a multi-row INSERT of about size bytes whose every row
// carries iter, so that no two iterations send the same text (or the same
// first 16 KB) and the pinning check's verdict cache cannot help.
func bulkInsert(table string, size, iter int) string {
	var b strings.Builder
	b.Grow(size + 64)
	b.WriteString("INSERT INTO " + table + " (id, v) VALUES ")
	it := strconv.Itoa(iter)
	for row := 0; b.Len() < size; row++ {
		if row > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(" + strconv.Itoa(row) + ", 'row " + it + " of a bulk load')")
	}
	return b.String()
}

// BenchmarkBulkInsert sends 1 MB and 4 MB multi-row INSERTs, fresh text every
// iteration, through raw pgx and rdsproxy with pin_check=warn (the default)
// and off, in the same run. Statements over 16 KB pin for their size, which
// the check decides from the length: it must cost next to nothing here.
// Reported: wall time, Go heap bytes per INSERT (B/op, the building of the
// text excluded) and the process's peak resident set during the
// sub-benchmark (peak-rss-MB, VmHWM), which includes the C heap a parser
// would use.
func BenchmarkBulkInsert(b *testing.B) {
	dsn := benchDSN(b)
	table, setup := bulkTable(b, dsn, testdb.Prefix()+"_bulk")

	dbs := map[string]func(b *testing.B) *sql.DB{
		"pgx": func(b *testing.B) *sql.DB { return openRawPgx(b, dsn) },
	}
	for _, mode := range []string{"warn", "off"} {
		dbs["rdsproxy/pin_check="+mode] = func(b *testing.B) *sql.DB {
			db, err := rdsproxy.Open(testdb.WithParams(dsn, "pin_check", mode), quietLogger)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { db.Close() })
			return db
		}
	}
	iter := 0
	for _, size := range []int{1 << 20, 4 << 20} {
		for _, name := range []string{"pgx", "rdsproxy/pin_check=off", "rdsproxy/pin_check=warn"} {
			b.Run(strconv.Itoa(size>>20)+"MB/"+name, func(b *testing.B) {
				db := dbs[name](b)
				if _, err := setup.Exec("TRUNCATE " + table); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				runtime.GC()
				debug.FreeOSMemory() // the previous sub-benchmark's garbage is not this one's peak
				if !resetPeakRSS() {
					b.Log("cannot reset the peak RSS: peak-rss-MB is the process's peak so far")
				}
				for b.Loop() {
					b.StopTimer()
					iter++
					stmt := bulkInsert(table, size, iter)
					b.StartTimer()
					if _, err := db.Exec(stmt); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(peakRSS())/(1<<20), "peak-rss-MB")
			})
		}
	}
}

// BenchmarkBulkInsertPaired answers "what does the default pinning check cost
// a bulk load" on a noisy machine: every iteration sends one fresh INSERT
// through pin_check=warn and one through pin_check=off, back to back in
// alternating order, and reports each side's median time and the median of
// the per-iteration ratios (see BenchmarkQueryPaired).
func BenchmarkBulkInsertPaired(b *testing.B) {
	dsn := benchDSN(b)
	table, setup := bulkTable(b, dsn, testdb.Prefix()+"_bulk_paired")
	open := func(mode string) *sql.DB {
		db, err := rdsproxy.Open(testdb.WithParams(dsn, "pin_check", mode), quietLogger)
		if err != nil {
			b.Fatal(err)
		}
		return db
	}
	warn, off := open("warn"), open("off")
	defer warn.Close()
	defer off.Close()
	iter := 0
	for _, size := range []int{1 << 20, 4 << 20} {
		b.Run(strconv.Itoa(size>>20)+"MB", func(b *testing.B) {
			if _, err := setup.Exec("TRUNCATE " + table); err != nil {
				b.Fatal(err)
			}
			insert := func(db *sql.DB) time.Duration {
				b.StopTimer()
				iter++
				stmt := bulkInsert(table, size, iter)
				b.StartTimer()
				t0 := time.Now()
				if _, err := db.Exec(stmt); err != nil {
					b.Fatal(err)
				}
				return time.Since(t0)
			}
			offT, warnT, ratio := pairedLoop(b, func() time.Duration { return insert(off) }, func() time.Duration { return insert(warn) })
			b.ReportMetric(median(offT)/1e6, "off-ms/insert")
			b.ReportMetric(median(warnT)/1e6, "warn-ms/insert")
			b.ReportMetric(median(ratio), "warn/off")
		})
	}
}

// bulkTable creates an unlogged table for bulk INSERTs, dropped when b ends,
// and returns it with the raw pgx connection that made it.
func bulkTable(b *testing.B, dsn, table string) (string, *sql.DB) {
	b.Helper()
	setup, err := sql.Open("pgx", dsn)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := setup.Exec("CREATE UNLOGGED TABLE IF NOT EXISTS " + table + " (id int, v text)"); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		setup.Exec("DROP TABLE IF EXISTS " + table)
		setup.Close()
	})
	return table, setup
}
