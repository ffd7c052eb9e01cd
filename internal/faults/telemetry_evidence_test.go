package faults

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// telemetryEvidence installs real OpenTelemetry SDK providers as the global
// ones for the whole suite (every connector uses the globals by default), so
// the secrets check also covers every metric attribute and every span name,
// attribute, event and status the suite's faults produce.
type telemetryEvidence struct {
	reader *sdkmetric.ManualReader
	spans  *tracetest.SpanRecorder
}

func installTelemetryEvidence() *telemetryEvidence {
	t := &telemetryEvidence{reader: sdkmetric.NewManualReader(), spans: tracetest.NewSpanRecorder()}
	otel.SetMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(t.reader)))
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(t.spans)))
	return t
}

// collectInto writes every exported attribute value, span name, event and
// status description into c, for c.findSecret. It returns how many data
// points and spans it saw, so the check cannot pass vacuously.
func (t *telemetryEvidence) collectInto(c *capture) (points, spans int, err error) {
	var rm metricdata.ResourceMetrics
	if err := t.reader.Collect(context.Background(), &rm); err != nil {
		return 0, 0, err
	}
	writeSet := func(set attribute.Set) {
		for _, kv := range set.ToSlice() {
			fmt.Fprintf(c, "%s=%s\n", kv.Key, kv.Value.String())
		}
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			fmt.Fprintf(c, "metric %s %s %s\n", m.Name, m.Unit, m.Description)
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					writeSet(p.Attributes)
					points++
				}
			case metricdata.Sum[float64]:
				for _, p := range d.DataPoints {
					writeSet(p.Attributes)
					points++
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					writeSet(p.Attributes)
					points++
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					writeSet(p.Attributes)
					points++
				}
			case metricdata.Histogram[int64]:
				for _, p := range d.DataPoints {
					writeSet(p.Attributes)
					points++
				}
			}
		}
	}
	for _, s := range t.spans.Ended() {
		spans++
		fmt.Fprintf(c, "span %s %s\n", s.Name(), s.Status().Description)
		for _, kv := range s.Attributes() {
			fmt.Fprintf(c, "%s=%s\n", kv.Key, kv.Value.String())
		}
		for _, e := range s.Events() {
			fmt.Fprintf(c, "event %s\n", e.Name)
			for _, kv := range e.Attributes {
				fmt.Fprintf(c, "%s=%s\n", kv.Key, kv.Value.String())
			}
		}
	}
	return points, spans, nil
}
