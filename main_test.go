package rdsproxy_test

import (
	"context"
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
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		// Server-side cleanup of closed connections is asynchronous: give the
		// backends a moment to exit before calling them leaked.
		var leaked []string
		var err error
		for range 50 {
			leaked, err = testdb.LeakedConns(ctx)
			if err != nil || len(leaked) == 0 {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		cancel()
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
