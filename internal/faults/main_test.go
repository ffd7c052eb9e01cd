package faults

import (
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/rdsproxy/rdsproxy/internal/testdb"
)

// TestMain fails the run if the tests leave connections in pg_stat_activity
// for this process's application names, goroutines running, or a secret in
// anything they captured (logs of every connector, every error they saw,
// every metric attribute and span the suite's connectors exported).
func TestMain(m *testing.M) {
	tel := installTelemetryEvidence()
	code := m.Run()
	if code == 0 {
		points, spans, err := tel.collectInto(evidence)
		switch {
		case err != nil:
			fmt.Fprintf(os.Stderr, "collecting the suite's metrics: %v\n", err)
			code = 1
		case points == 0 || spans == 0:
			fmt.Fprintf(os.Stderr, "the secrets check saw %d metric points and %d spans: telemetry was not recorded\n", points, spans)
			code = 1
		case testing.Verbose():
			fmt.Fprintf(os.Stderr, "secrets check covers %d metric data points and %d spans\n", points, spans)
		}
	}
	if code == 0 {
		leaked, err := testdb.WaitForLeakedConns(10 * time.Second) // closed backends exit asynchronously
		if err == nil && len(leaked) > 0 {
			fmt.Fprintf(os.Stderr, "leaked server connections after the fault suite: %v\n", leaked)
			code = 1
		}
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "leaked goroutines after the fault suite: %v\n", err)
			code = 1
		}
		if leak := evidence.findSecret(); leak != "" {
			fmt.Fprintf(os.Stderr, "a secret leaked into the logs or errors the fault suite captured: %s\n", leak)
			code = 1
		} else if os.Getenv("RDSPROXY_FAULTS_VERBOSE") != "" || testing.Verbose() {
			fmt.Fprintf(os.Stderr, "secrets check: %d log records and %d errors searched, no secret found\n",
				evidence.records(), evidence.errors())
		}
	}
	os.Exit(code)
}
