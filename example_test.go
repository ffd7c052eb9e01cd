// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

package rdsproxy_test

import (
	"context"
	"database/sql"
	"log"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/rdsproxy/rdsproxy"
)

// Open a *sql.DB with proxy-tuned limits and IAM authentication. Nothing is
// dialed until the first query. (Compile-only: it needs an RDS Proxy.)
func ExampleOpen() {
	db, err := rdsproxy.Open("postgres://app@my-proxy.proxy-abc.us-east-1.rds.amazonaws.com:5432/appdb?iam=true")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var n int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM orders WHERE customer_id = $1", 42).Scan(&n); err != nil {
		log.Fatal(err)
	}
	log.Printf("%d orders; pool cap %d", n, db.Stats().MaxOpenConnections)
}

// A connector for sql.OpenDB, with options that win over the DSN: a shared
// token source and a handler that sees every distinct pinning statement.
// Under sql.OpenDB, set database/sql's limits to the connector's cap
// yourself (rdsproxy.Open does it for you). (Compile-only.)
func ExampleNewConnector() {
	tokens := rdsproxy.NewTokenSource(rdsproxy.TokenSourceOptions{})
	c, err := rdsproxy.NewConnector("postgres://app@my-proxy.proxy-abc.us-east-1.rds.amazonaws.com:5432/appdb?iam=true",
		rdsproxy.WithTokenSource(tokens),
		rdsproxy.WithMaxConns(4),
		rdsproxy.WithPinHandler(func(e rdsproxy.PinEvent) {
			log.Printf("pins the proxy session (%v): %s", e.Reasons, e.Fingerprint)
		}))
	if err != nil {
		log.Fatal(err)
	}
	db := sql.OpenDB(c)
	defer db.Close()
	db.SetMaxOpenConns(int(c.Config().MaxConns))
	db.SetMaxIdleConns(int(c.Config().MaxConns))

	if err := db.PingContext(context.Background()); err != nil {
		log.Fatal(err)
	}
}

// A native pgxpool with the same IAM token hook, pinning check and
// proxy-tuned pool settings. (Compile-only.)
func ExampleNewPgxpoolConfig() {
	ctx := context.Background()
	cfg, err := rdsproxy.NewPgxpoolConfig("postgres://app@my-proxy.proxy-abc.us-east-1.rds.amazonaws.com:5432/appdb?iam=true")
	if err != nil {
		log.Fatal(err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	var now time.Time
	if err := pool.QueryRow(ctx, "SELECT now()").Scan(&now); err != nil {
		log.Fatal(err)
	}
	log.Printf("max conns %d, lifetime %v + up to %v", cfg.MaxConns, cfg.MaxConnLifetime, cfg.MaxConnLifetimeJitter)
}

// Connectors on the default credential chain already share one token cache,
// [rdsproxy.DefaultTokenSource]. A source of your own (with credentials or a
// margin of its own) is shared like this, so that a cold start signs once per
// endpoint and user, not once per connector. (Compile-only.)
func ExampleNewTokenSource() {
	tokens := rdsproxy.NewTokenSource(rdsproxy.TokenSourceOptions{})
	orders, err := rdsproxy.Open("postgres://orders@my-proxy.proxy-abc.us-east-1.rds.amazonaws.com:5432/orders?iam=true",
		rdsproxy.WithTokenSource(tokens))
	if err != nil {
		log.Fatal(err)
	}
	defer orders.Close()
	billing, err := rdsproxy.Open("postgres://billing@my-proxy.proxy-abc.us-east-1.rds.amazonaws.com:5432/billing?iam=true",
		rdsproxy.WithTokenSource(tokens))
	if err != nil {
		log.Fatal(err)
	}
	defer billing.Close()
}

// Metrics through an OpenTelemetry SDK MeterProvider, with a pool name that
// tells this pool's instruments apart from another pool's to the same
// database. (Compile-only.)
func ExampleWithMeterProvider() {
	reader := sdkmetric.NewManualReader() // in production, a Prometheus or OTLP exporter
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())

	db, err := rdsproxy.Open("postgres://app@my-proxy.proxy-abc.us-east-1.rds.amazonaws.com:5432/appdb?iam=true",
		rdsproxy.WithMeterProvider(mp), rdsproxy.WithPoolName("orders"))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
}

// An idempotent read retried through a borrow timeout or a connection lost
// to failover, with bounded exponential backoff. Never wrap a write in it:
// see IsAmbiguousCommit. (Compile-only.)
func ExampleRetryRead() {
	db, err := rdsproxy.Open("postgres://app@my-proxy.proxy-abc.us-east-1.rds.amazonaws.com:5432/appdb?iam=true")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var name string
	err = rdsproxy.RetryRead(ctx, rdsproxy.RetryPolicy{MaxAttempts: 3}, func(ctx context.Context) error {
		return db.QueryRowContext(ctx, "SELECT name FROM customers WHERE id = $1", 42).Scan(&name)
	})
	if err != nil {
		log.Fatal(err)
	}
	log.Println(name)
}
