// Command pgxpool uses rdsproxy with pgx's native pool instead of
// database/sql. rdsproxy.NewPgxpoolConfig returns a *pgxpool.Config with the
// IAM token hook (iam=true), the pinning check and the proxy-tuned pool
// settings, which pgxpool enforces itself.
//
//	DATABASE_URL=postgres://... go run ./pgxpool
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rdsproxy/rdsproxy"
)

const defaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

func main() {
	dsn := os.Getenv("DATABASE_URL")
	if dsn == "" {
		dsn = defaultDatabaseURL
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := run(ctx, dsn, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "pgxpool:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, dsn string, out io.Writer, opts ...rdsproxy.Option) error {
	cfg, err := rdsproxy.NewPgxpoolConfig(dsn, opts...)
	if err != nil {
		return err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()

	var sum int
	if err := pool.QueryRow(ctx, "SELECT $1::int + $2::int", 40, 2).Scan(&sum); err != nil {
		return err
	}
	fmt.Fprintf(out, "40 + 2 = %d\n", sum)

	// A batch is one round trip; each statement in it is checked for pinning.
	batch := &pgx.Batch{}
	batch.Queue("SELECT 'batched'")
	batch.Queue("SELECT $1::text", "parameterized")
	if err := pool.SendBatch(ctx, batch).Close(); err != nil {
		return err
	}

	// A transaction with pgx.BeginFunc: committed when the function returns nil.
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(42)") // transaction-scoped: does not pin
		return err
	})
	if err != nil {
		return err
	}

	s := pool.Stat()
	fmt.Fprintf(out, "pool: max=%d total=%d idle=%d lifetime=%v+%v idle_time=%v\n",
		s.MaxConns(), s.TotalConns(), s.IdleConns(), cfg.MaxConnLifetime, cfg.MaxConnLifetimeJitter, cfg.MaxConnIdleTime)
	return nil
}
