package rdsproxy_test

import (
	"database/sql"
	"testing"

	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/rdsproxy/rdsproxy"
	"github.com/rdsproxy/rdsproxy/internal/testdb"
)

// BenchmarkQueryTelemetry measures the per-query cost of the OpenTelemetry
// instrumentation: raw pgx stdlib; rdsproxy with OpenTelemetry's global
// providers left unset (the default: the global delegate, no SDK); with
// explicit no-op providers ("off"); with the SDK (sdk/metric with a
// ManualReader that is never read, sdk/trace with no exporter); and with the
// SDK plus query spans. Same query, exec mode and pool size as BenchmarkQuery.
func BenchmarkQueryTelemetry(b *testing.B) {
	dsn := testdb.WithParams(testdb.Require(b), "application_name", testdb.Prefix()+"_bench",
		"default_query_exec_mode", "cache_describe")
	run := func(b *testing.B, db *sql.DB) {
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
		b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "client-cpu-ns/op")
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
	sdk := func(b *testing.B) []rdsproxy.Option {
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
		tp := sdktrace.NewTracerProvider()
		b.Cleanup(func() { _ = mp.Shutdown(b.Context()); _ = tp.Shutdown(b.Context()) })
		return []rdsproxy.Option{rdsproxy.WithMeterProvider(mp), rdsproxy.WithTracerProvider(tp)}
	}
	for _, c := range []struct {
		name string
		opts func(b *testing.B) []rdsproxy.Option
	}{
		{"rdsproxy/global-unset", func(*testing.B) []rdsproxy.Option { return nil }},
		{"rdsproxy/noop", func(*testing.B) []rdsproxy.Option {
			return []rdsproxy.Option{rdsproxy.WithMeterProvider(metricnoop.NewMeterProvider()),
				rdsproxy.WithTracerProvider(tracenoop.NewTracerProvider())}
		}},
		{"rdsproxy/sdk", sdk},
		{"rdsproxy/sdk+query-spans", func(b *testing.B) []rdsproxy.Option {
			return append(sdk(b), rdsproxy.WithQuerySpans(true))
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			db, err := rdsproxy.Open(dsn, c.opts(b)...)
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			run(b, db)
		})
	}
}
