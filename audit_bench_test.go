// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

package rdsproxy_test

import (
	"context"
	"testing"

	"github.com/rdsproxy/rdsproxy"
)

// BenchmarkSessionAuditCheckout measures what session_audit=on adds to one
// request: a checkout of a *sql.Conn, one statement, the release. With the
// audit on, every reuse of a connection that ran a statement runs the audit
// query first; off and on run in the same process against the same server.
func BenchmarkSessionAuditCheckout(b *testing.B) {
	for _, mode := range []string{"off", "on"} {
		b.Run("audit="+mode, func(b *testing.B) {
			db, err := rdsproxy.Open(benchDSN(b)+"&pool_max_conns=1&session_audit="+mode, rdsproxy.WithPinCheck(rdsproxy.PinCheckOff))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { db.Close() })
			ctx := context.Background()
			request := func() {
				conn, err := db.Conn(ctx)
				if err != nil {
					b.Fatal(err)
				}
				var n int
				if err := conn.QueryRowContext(ctx, "SELECT $1::int", 42).Scan(&n); err != nil {
					b.Fatal(err)
				}
				conn.Close()
			}
			request() // warm: dial (and baseline)
			b.ReportAllocs()
			cpu0 := processCPU()
			for b.Loop() {
				request()
			}
			b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "client-cpu-ns/op")
		})
	}
}
