// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

package rdsproxy

import (
	"log/slog"
	"testing"
)

// benchCleanSQL is a typical statement: clean, and long enough that hashing
// the key is not free.
const benchCleanSQL = "SELECT o.id, o.note, u.email FROM orders o JOIN users u ON u.id = o.user_id WHERE o.created_at > now() - interval '1 day' AND u.status = $1 ORDER BY o.id DESC LIMIT 50"

// BenchmarkPinCheckCached is the cost every statement pays with
// pin_check=warn once its text is cached. Target: <= 100 ns, 0 allocs.
// (End-to-end overhead, warn vs off, is BenchmarkQuery in bench_test.go.)
func BenchmarkPinCheckCached(b *testing.B) {
	for _, s := range []struct{ name, sql string }{
		{"clean-short", "SELECT $1::int"},
		{"clean-long", benchCleanSQL},
		{"pinning", "SET search_path TO app"},
	} {
		b.Run(s.name, func(b *testing.B) {
			p := newPinChecker(slog.New(slog.DiscardHandler), nil)
			p.check(s.sql, PinKindQuery, nil)
			b.ReportAllocs()
			for b.Loop() {
				p.check(s.sql, PinKindQuery, nil)
			}
		})
	}
	b.Run("clean-long-parallel", func(b *testing.B) {
		p := newPinChecker(slog.New(slog.DiscardHandler), nil)
		p.check(benchCleanSQL, PinKindQuery, nil)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				p.check(benchCleanSQL, PinKindQuery, nil)
			}
		})
	})
}

// BenchmarkPinCheckUncachedClean is what the first run of a new clean text
// costs (prefilter plus a cache store); the parser is not involved.
func BenchmarkPinCheckUncachedClean(b *testing.B) {
	p := newPinChecker(slog.New(slog.DiscardHandler), nil)
	b.ReportAllocs()
	for b.Loop() {
		p.verdicts.Clear()
		p.check(benchCleanSQL, PinKindQuery, nil)
	}
}

// BenchmarkAnalyzePinning is the public analyzer on a clean statement (the
// prefilter alone) and a pinning one (parser with cgo).
func BenchmarkAnalyzePinning(b *testing.B) {
	for _, s := range []struct{ name, sql string }{
		{"clean", benchCleanSQL},
		{"pinning", "SELECT nextval('order_seq')"},
	} {
		b.Run(s.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				AnalyzePinning(s.sql)
			}
		})
	}
}
