package pinning

import (
	"strings"
	"testing"

	"github.com/rdsproxy/rdsproxy/internal/pinning/pinningtest"
)

// FuzzParserGuard grows the adversarial shapes: Analyze must return on every
// input, and text the guard lets through must reach the parser. Its use is
// under a small stack, where a guard that lets too deep a tree through kills
// the fuzzing worker:
//
//	go test -c -o pinning.test ./internal/pinning
//	sh -c 'ulimit -s 128 && ./pinning.test -test.run=^$ -test.fuzz=FuzzParserGuard -test.fuzztime=5m -test.parallel=1'
func FuzzParserGuard(f *testing.F) {
	for _, s := range pinningtest.Shapes {
		f.Add(pinningtest.Sized(s, 1<<10))
		if n := deepestAllowed(s); n > 0 {
			f.Add(s.Build(n))
		}
	}
	f.Fuzz(func(t *testing.T, sql string) {
		_, err := Analyze(sql)
		tooDeep := err != nil && strings.Contains(err.Error(), errTooDeep.Error())
		passes := len(sql) <= MaxStatementBytes && strings.IndexByte(sql, 0) < 0 && mayPin(sql) &&
			!overParserBudget(sql)
		if parserAvailable && passes && tooDeep {
			t.Fatalf("guard estimate %d within budget, but Analyze reports too deep", parserDepth(sql))
		}
	})
}
