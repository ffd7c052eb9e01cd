package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rdsproxy/rdsproxy/internal/testdb"
)

func TestService(t *testing.T) {
	dsn := testdb.Require(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, Config{Addr: "127.0.0.1:0", DSN: dsn, RequestTimeout: 500 * time.Millisecond}, ready)
	}()
	var base string
	select {
	case addr := <-ready:
		base = "http://" + addr
	case err := <-done:
		t.Fatalf("service did not start: %v", err)
	}

	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	for range 3 {
		if code, body := get("/sum?a=2&b=3"); code != 200 || !strings.Contains(body, `"sum":5`) {
			t.Fatalf("/sum: %d %s", code, body)
		}
	}
	// The per-request timeout cancels a query that runs too long.
	if code, body := get("/sleep?seconds=5"); code != http.StatusGatewayTimeout {
		t.Errorf("/sleep past the timeout: %d %s, want 504", code, body)
	}
	if code, _ := get("/sum?a=1&b=1"); code != 200 {
		t.Errorf("/sum after a timeout: %d", code)
	}

	code, metrics := get("/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	if !strings.Contains(metrics, "service_requests_total") {
		t.Errorf("/metrics lacks the service's own counter:\n%s", metrics)
	}
	// rdsproxy's pool metrics (OpenTelemetry's db.client.connection.*).
	for _, family := range []string{"db_client_connection_count", "db_client_connection_max"} {
		if !strings.Contains(metrics, "# TYPE "+family+" ") {
			t.Errorf("/metrics lacks rdsproxy's %s metric family:\n%s", family, metrics)
		}
	}

	// Graceful shutdown: run returns nil once the server and the pool closed.
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("shutdown: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("service did not shut down")
	}
}
