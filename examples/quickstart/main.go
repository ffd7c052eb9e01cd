// Command quickstart shows rdsproxy against a local PostgreSQL, with no AWS:
// it opens a pool with proxy-tuned defaults, runs a few statements (two of
// which would pin an RDS Proxy session, so rdsproxy warns about them), and
// prints the pool's statistics.
//
//	go run ./quickstart                          # uses $DATABASE_URL or local PostgreSQL
//	DATABASE_URL=postgres://... go run ./quickstart
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/rdsproxy/rdsproxy"
)

// defaultDatabaseURL works on a fresh machine of the project's kind: local
// PostgreSQL with trust authentication. Local servers usually have no
// certificate worth verifying, hence sslmode=disable; against RDS Proxy leave
// sslmode out (the default is verify-full).
const defaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

func main() {
	dsn := os.Getenv("DATABASE_URL")
	if dsn == "" {
		dsn = defaultDatabaseURL
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := run(ctx, dsn, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, dsn string, out io.Writer) error {
	logger := slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelWarn}))
	db, err := rdsproxy.Open(dsn, rdsproxy.WithLogger(logger))
	if err != nil {
		return err
	}
	defer db.Close()

	var version string
	if err := db.QueryRowContext(ctx, "SELECT current_setting('server_version')").Scan(&version); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	fmt.Fprintf(out, "connected to PostgreSQL %s\n", version)

	// Proxy-safe: parameterized queries create no named server-side statement.
	for i := 1; i <= 3; i++ {
		var sum int
		if err := db.QueryRowContext(ctx, "SELECT $1::int + $2::int", i, 10).Scan(&sum); err != nil {
			return err
		}
		fmt.Fprintf(out, "%d + 10 = %d\n", i, sum)
	}

	// These would pin an RDS Proxy session: rdsproxy logs one warning each
	// (once per distinct statement, however often it runs).
	for range 2 {
		if _, err := db.ExecContext(ctx, "SET search_path TO public"); err != nil {
			return err
		}
		if _, err := db.ExecContext(ctx, "SELECT pg_advisory_lock(42), pg_advisory_unlock(42)"); err != nil {
			return err
		}
	}

	report, err := rdsproxy.AnalyzePinning("SET search_path TO app")
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "AnalyzePinning(%q): pins=%v reasons=%v\n", "SET search_path TO app", report.Pins(), report.Reasons)

	s := db.Stats()
	fmt.Fprintf(out, "pool: max_open=%d open=%d in_use=%d idle=%d waits=%d\n",
		s.MaxOpenConnections, s.OpenConnections, s.InUse, s.Idle, s.WaitCount)
	return nil
}
