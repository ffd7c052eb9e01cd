package pinning

import (
	"runtime"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// allocatedBy returns the bytes f allocates on the Go heap.
func allocatedBy(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestOversizeIsDecidedBySize: text over the limit gets statement_size alone,
// whatever else it says, without being parsed or lexed past its start, so
// that its cost does not grow with its size.
func TestOversizeIsDecidedBySize(t *testing.T) {
	rows := strings.Repeat("(nextval('s'), 'abcdefgh'), ", 10<<20/28)
	for _, sql := range []string{
		"INSERT INTO t VALUES " + rows + "(1, '')",           // 10 MB
		"SET x = 1; SELECT 1" + strings.Repeat("+1", 30_000), // deep, and pins otherwise
		"  \n\t" + statementOfBytes(MaxStatementBytes+1),
	} {
		var rep Report
		var err error
		alloc := allocatedBy(func() { rep, err = Analyze(sql) })
		require.NoError(t, err)
		require.Equal(t, []Reason{ReasonStatementSize}, rep.Reasons())
		require.Len(t, rep.Findings, 1)
		st := rep.Findings[0].Statement
		require.True(t, strings.HasSuffix(st, "..."), st)
		require.LessOrEqual(t, len(st), maxFindingStatementBytes+len("..."))
		require.Equal(t, strings.TrimSpace(sql)[:20], st[:20])
		require.Less(t, alloc, uint64(64<<10), "Analyze of %d bytes allocated %d", len(sql), alloc)

		var fp string
		alloc = allocatedBy(func() { fp, _ = Fingerprint(sql) })
		require.Less(t, alloc, uint64(64<<10), "Fingerprint of %d bytes allocated %d", len(sql), alloc)
		require.True(t, strings.HasSuffix(fp, "..."), fp)
	}
}

// TestFingerprintReadsOnlyTheLimit: statements that agree on their first
// MaxStatementBytes bytes share the fingerprint and hash; the cut never splits
// a UTF-8 sequence.
func TestFingerprintReadsOnlyTheLimit(t *testing.T) {
	head := "SELECT '" + strings.Repeat("a", MaxStatementBytes-14) + "' AS x" // the limit exactly
	fa, ha := Fingerprint(head + strings.Repeat(", a", 1000))
	fb, hb := Fingerprint(head + strings.Repeat(", b", 5000))
	require.Equal(t, fa, fb)
	require.Equal(t, ha, hb)
	_, hc := Fingerprint(head[:len(head)-1] + "y, a")
	require.NotEqual(t, ha, hc, "the bytes before the limit count")

	// An identifier of multi-byte letters across the limit.
	sql := "SELECT '" + strings.Repeat("a", MaxStatementBytes-20) + "' " + strings.Repeat("é", 100)
	fp, _ := Fingerprint(sql)
	require.True(t, utf8.ValidString(fp), "%q", fp[len(fp)-20:])
	for n := MaxStatementBytes - 3; n <= MaxStatementBytes+3; n++ {
		s := "SELECT ?" + strings.Repeat(" ", n-len("SELECT ?")-2) + "éé"
		fp, _ := Fingerprint(s)
		require.True(t, utf8.ValidString(fp), "length %d: %q", n, fp)
	}
}
