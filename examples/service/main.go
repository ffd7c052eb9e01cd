// Command service is a net/http service on rdsproxy: one *sql.DB for the
// process, a context timeout on every request, graceful shutdown on SIGTERM
// or SIGINT, and OpenTelemetry metrics (rdsproxy's pool metrics among them)
// exported in Prometheus format on /metrics.
//
//	DATABASE_URL=postgres://... go run ./service -addr 127.0.0.1:8080
//	curl '127.0.0.1:8080/sum?a=1&b=2'; curl 127.0.0.1:8080/metrics
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/rdsproxy/rdsproxy"
)

const defaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	flag.Parse()
	dsn := os.Getenv("DATABASE_URL")
	if dsn == "" {
		dsn = defaultDatabaseURL
	}
	// SIGTERM (what ECS, Kubernetes and systemd send) starts the graceful shutdown.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	cfg := Config{Addr: *addr, DSN: dsn, RequestTimeout: 2 * time.Second}
	if err := run(ctx, cfg, nil); err != nil {
		fmt.Fprintln(os.Stderr, "service:", err)
		os.Exit(1)
	}
}

// Config configures the service.
type Config struct {
	Addr           string
	DSN            string
	RequestTimeout time.Duration // per request, database work included
}

// run serves until ctx is done, then shuts down gracefully. If ready is not
// nil it receives the listening address.
func run(ctx context.Context, cfg Config, ready chan<- string) error {
	// Metrics: the OpenTelemetry SDK with the Prometheus exporter, installed
	// as the global MeterProvider before rdsproxy.Open, which takes its meter
	// from it.
	reg := prometheus.NewRegistry()
	exporter, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return err
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
	defer mp.Shutdown(context.Background())
	otel.SetMeterProvider(mp)

	db, err := rdsproxy.Open(cfg.DSN)
	if err != nil {
		return err
	}
	defer db.Close()

	requests, err := otel.Meter("github.com/rdsproxy/rdsproxy/examples/service").
		Int64Counter("service.requests", metric.WithDescription("HTTP requests served"))
	if err != nil {
		return err
	}
	s := &server{db: db, timeout: cfg.RequestTimeout, requests: requests}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /sum", s.sum)
	mux.HandleFunc("GET /sleep", s.sleep)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	if ready != nil {
		ready <- ln.Addr().String()
	}
	slog.Info("serving", "addr", ln.Addr().String())

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	// Graceful shutdown: stop accepting, let requests in flight finish (each
	// is bounded by its own timeout), then close the pool.
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

type server struct {
	db       *sql.DB
	timeout  time.Duration
	requests metric.Int64Counter
}

// sum answers GET /sum?a=1&b=2 from the database.
func (s *server) sum(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.timeout)
	defer cancel()
	s.requests.Add(ctx, 1)
	a, _ := strconv.Atoi(r.URL.Query().Get("a"))
	b, _ := strconv.Atoi(r.URL.Query().Get("b"))
	var sum int
	if err := s.db.QueryRowContext(ctx, "SELECT $1::int + $2::int", a, b).Scan(&sum); err != nil {
		s.fail(w, ctx, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]int{"sum": sum})
}

// sleep runs pg_sleep for ?seconds=, to show the request timeout cancelling
// a query.
func (s *server) sleep(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.timeout)
	defer cancel()
	s.requests.Add(ctx, 1)
	secs, _ := strconv.ParseFloat(r.URL.Query().Get("seconds"), 64)
	if _, err := s.db.ExecContext(ctx, "SELECT pg_sleep($1)", secs); err != nil {
		s.fail(w, ctx, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) fail(w http.ResponseWriter, ctx context.Context, err error) {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		http.Error(w, "timed out", http.StatusGatewayTimeout)
		return
	}
	slog.Error("query", "err", err)
	http.Error(w, "database error", http.StatusInternalServerError)
}
