package rdsproxy

import (
	"log/slog"
	"strconv"
	"strings"
	"testing"
)

// BenchmarkPinCheckBulkStatement is the runtime check alone on a fresh
// multi-row INSERT over the size limit, every iteration a text it has not
// seen (a new first row): the cost BenchmarkBulkInsertPaired measures through
// a connection, without the network and server noise.
func BenchmarkPinCheckBulkStatement(b *testing.B) {
	for _, size := range []int{1 << 20, 4 << 20} {
		rows := strings.Repeat(", (1, 'row of a bulk load')", size/26)
		b.Run(strconv.Itoa(size>>20)+"MB", func(b *testing.B) {
			p := newPinChecker(slog.New(slog.DiscardHandler), nil)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				b.StopTimer()
				i++
				sql := "INSERT INTO t (id, v) VALUES (" + strconv.Itoa(i) + ", 'first')" + rows
				b.StartTimer()
				p.check(sql, PinKindQuery, nil)
			}
		})
	}
}
