// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

package rdsproxy_test

import (
	"fmt"

	"github.com/rdsproxy/rdsproxy"
)

func ExampleAnalyzePinning() {
	for _, q := range []string{
		"SELECT id FROM users WHERE id = $1",
		"SET search_path TO app; SELECT nextval('order_seq')",
	} {
		r, err := rdsproxy.AnalyzePinning(q)
		if err != nil {
			fmt.Println("lexical verdict:", err)
		}
		fmt.Println(r.Pins(), r.Reasons)
		for _, f := range r.Findings {
			fmt.Printf("  %s: %s\n", f.Reason, f.Statement)
		}
	}
	// Output:
	// false []
	// true [session_setting sequence]
	//   session_setting: SET search_path TO app
	//   sequence: SELECT nextval('order_seq')
}
