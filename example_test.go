// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

package rdsproxy_test

import (
	"context"
	"database/sql"
	"log"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

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
