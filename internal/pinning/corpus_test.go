package pinning

import (
	"bufio"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

type corpusRow struct {
	id       string
	verdict  string // pins | no_pin | unconfirmed_pins | unconfirmed_no_pin
	reasons  []Reason
	category string
	sql      string
}

func (r corpusRow) wantPins() bool { return strings.HasSuffix(r.verdict, "pins") }

// corpusErrata overrides the reason list of corpus rows that contradict other
// rows. Row 151 runs "unlisten *", which row 100 (UNLISTEN *) says pins with
// reason listen, yet row 151 lists only advisory_lock and session_setting. The
// single-statement row is the specific policy; the multi-statement row must be
// the union of its statements' reasons, so listen is added here.
var corpusErrata = map[string][]Reason{
	"151": {ReasonSessionSetting, ReasonListen, ReasonAdvisoryLock},
}

// unescapeCorpus undoes the corpus's \n, \t and \\ escapes.
func unescapeCorpus(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			switch s[i+1] {
			case 'n':
				b.WriteByte('\n')
				i++
				continue
			case 't':
				b.WriteByte('\t')
				i++
				continue
			case '\\':
				b.WriteByte('\\')
				i++
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func loadCorpus(tb testing.TB) []corpusRow {
	tb.Helper()
	f, err := os.Open("testdata/pinning-corpus.tsv")
	require.NoError(tb, err)
	defer f.Close()
	var rows []corpusRow
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "id\t") {
			continue
		}
		fields := strings.SplitN(line, "\t", 5)
		require.Len(tb, fields, 5, "corpus line %q", line)
		r := corpusRow{id: fields[0], verdict: fields[1], category: fields[3], sql: unescapeCorpus(fields[4])}
		switch r.verdict {
		case "pins", "no_pin", "unconfirmed_pins", "unconfirmed_no_pin":
		default:
			tb.Fatalf("corpus row %s: unknown verdict %q", r.id, r.verdict)
		}
		if fields[2] != "" {
			for _, s := range strings.Split(fields[2], ",") {
				r.reasons = append(r.reasons, Reason(s))
			}
		}
		if e, ok := corpusErrata[r.id]; ok {
			r.reasons = e
		}
		rows = append(rows, r)
	}
	require.NoError(tb, sc.Err())
	require.NotEmpty(tb, rows)
	return rows
}

func sortedReasons(rs []Reason) []Reason {
	out := slices.Clone(rs)
	slices.Sort(out)
	return out
}

func checkRow(t *testing.T, row corpusRow, rep Report) {
	t.Helper()
	require.Equal(t, row.wantPins(), rep.Pins(), "row %s %q: findings %+v", row.id, row.sql, rep.Findings)
	require.Equal(t, sortedReasons(row.reasons), sortedReasons(rep.Reasons()), "row %s %q", row.id, row.sql)
	for _, f := range rep.Findings {
		require.NotEmpty(t, f.Remedy)
		require.NotEmpty(t, f.Statement)
		require.LessOrEqual(t, len(f.Statement), maxFindingStatementBytes+len("..."))
	}
}

// TestCorpus runs Analyze (the parser back-end with cgo, the lexical one
// without) over every corpus row.
func TestCorpus(t *testing.T) {
	t.Logf("parser back-end compiled in: %v", parserAvailable)
	for _, row := range loadCorpus(t) {
		t.Run(row.id, func(t *testing.T) {
			rep, err := Analyze(row.sql)
			require.NoError(t, err)
			checkRow(t, row, rep)
		})
	}
}

// TestCorpusLexical checks the lexical classifier directly, so the fallback is
// verified in the normal (cgo) run too.
func TestCorpusLexical(t *testing.T) {
	for _, row := range loadCorpus(t) {
		t.Run(row.id, func(t *testing.T) {
			checkRow(t, row, analyzeLexical(row.sql))
		})
	}
}

// TestCorpusPrefilter: the prefilter must never say "cannot pin" for a
// statement that pins; and it should say so for most plain ones.
func TestCorpusPrefilter(t *testing.T) {
	for _, row := range loadCorpus(t) {
		if row.wantPins() {
			require.True(t, mayPin(row.sql), "row %s %q", row.id, row.sql)
		}
	}
	for _, sql := range []string{
		"SELECT 1",
		"SELECT * FROM users WHERE id = $1",
		"UPDATE accounts SET balance = balance - 10 WHERE id = 1",
		"SELECT 'SET search_path TO evil'",
		"/* DISCARD ALL */ SELECT 1",
		"SELECT $$LISTEN foo$$",
		`SELECT "nextvalue" FROM t`,
		"SELECT setvalue, settings FROM t -- set",
	} {
		if strings.HasPrefix(sql, "UPDATE") {
			require.True(t, mayPin(sql), sql) // contains SET: the parser decides
			continue
		}
		require.False(t, mayPin(sql), sql)
	}
}
