package pinning

import (
	"strconv"
	"strings"
	"testing"
)

// BenchmarkAnalyzeOversize: a statement over the limit costs the same
// whatever its size (statement_size from the length alone).
func BenchmarkAnalyzeOversize(b *testing.B) {
	for _, mb := range []int{1, 10} {
		sql := "INSERT INTO t VALUES " + strings.Repeat("(nextval('s'), 'abcdefgh'), ", mb<<20/28) + "(1, '')"
		b.Run(strconv.Itoa(mb)+"MB", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Analyze(sql); err != nil {
					b.Fatal(err)
				}
				Fingerprint(sql)
			}
		})
	}
}
