package rdsproxy_test

import (
	"testing"

	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/rdsproxy/rdsproxy"
)

// BenchmarkQueryTelemetry measures the per-query cost of the OpenTelemetry
// instrumentation: raw pgx stdlib; rdsproxy with OpenTelemetry's global
// providers left unset (the default: the global delegate, no SDK); with
// explicit no-op providers ("off"); with the SDK (sdk/metric with a
// ManualReader that is never read, sdk/trace with no exporter); and with the
// SDK plus query spans. Same query, exec mode and pool size as BenchmarkQuery.
func BenchmarkQueryTelemetry(b *testing.B) {
	dsn := benchDSN(b)
	b.Run("pgx", func(b *testing.B) { runQueryBench(b, openRawPgx(b, dsn)) })
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
			runQueryBench(b, db)
		})
	}
}

// BenchmarkQueryPairedSDK is BenchmarkQueryPaired with the OpenTelemetry SDK
// installed on rdsproxy (as in BenchmarkQueryTelemetry's sdk row): the cost
// of recording the metrics, paired against raw pgx so that the machine's
// noise cancels.
func BenchmarkQueryPairedSDK(b *testing.B) {
	dsn := benchDSN(b)
	raw := openRawPgx(b, dsn)
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	tp := sdktrace.NewTracerProvider()
	b.Cleanup(func() { _ = mp.Shutdown(b.Context()); _ = tp.Shutdown(b.Context()) })
	rds, err := rdsproxy.Open(dsn, rdsproxy.WithMeterProvider(mp), rdsproxy.WithTracerProvider(tp))
	if err != nil {
		b.Fatal(err)
	}
	defer rds.Close()
	runPairedQueries(b, raw, rds)
}
