package rdsproxy_test

import (
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/rdsproxy/rdsproxy/internal/testdb"
)

var (
	bouncerOnce sync.Once
	bouncer     *testdb.PgBouncer
)

// pgbouncerURL starts one PgBouncer (transaction pooling, 2 server
// connections) for the whole package and returns its URL.
func pgbouncerURL(t *testing.T) string {
	t.Helper()
	testdb.Require(t)
	bouncerOnce.Do(func() { bouncer = testdb.StartPgBouncer(t, 2) })
	if bouncer == nil {
		t.Fatal("pgbouncer failed to start in an earlier test")
	}
	return bouncer.URL()
}

// TestMain fails the run if tests leave connections open on the server or
// goroutines running, in the manner of lib/pq's leak check.
func TestMain(m *testing.M) {
	code := m.Run()
	if bouncer != nil {
		bouncer.Stop() // its server connections are not ours to count
	}
	if code == 0 {
		leaked, err := testdb.WaitForLeakedConns(10 * time.Second) // closed backends exit asynchronously
		if err == nil && len(leaked) > 0 {
			fmt.Fprintf(os.Stderr, "leaked server connections after the tests: %v\n", leaked)
			code = 1
		}
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "leaked goroutines after the tests: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
