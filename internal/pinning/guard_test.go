package pinning

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rdsproxy/rdsproxy/internal/pinning/pinningtest"
)

// guardChildEnv makes the test binary the child of TestParserGuard.
const guardChildEnv = "RDSPROXY_PINNING_GUARD_CHILD"

// smallThreadStackKB is musl's (Alpine's) default thread stack, the smallest
// maxParserDepth is chosen for.
const smallThreadStackKB = 128

type guardInput struct {
	name string
	sql  string
}

// guardInputs are the adversarial statements: every shape as deep as 1, 4
// and 16 KB allow, as deep as the guard lets through to the parser, over the
// size limit, and random nestings of every size up to the limit.
func guardInputs() []guardInput {
	var in []guardInput
	for _, s := range pinningtest.Shapes {
		for _, size := range []int{1 << 10, 4 << 10, MaxStatementBytes} {
			in = append(in, guardInput{fmt.Sprintf("%s/%d", s.Name, size), pinningtest.Sized(s, size)})
		}
		if n := deepestAllowed(s); n > 0 {
			in = append(in, guardInput{s.Name + "/deepest-parsed", s.Build(n)})
		}
		in = append(in, guardInput{s.Name + "/64K", pinningtest.Sized(s, 64<<10)})
	}
	in = append(in,
		guardInput{"plus/30000-terms", "SELECT 1" + strings.Repeat("+1", 30_000)},
		guardInput{"union/50000-branches", "SELECT 1" + strings.Repeat(" UNION ALL SELECT 1", 50_000)},
		guardInput{"concat/30000-terms", "SELECT 'a'" + strings.Repeat("||'a'", 30_000)},
		guardInput{"insert/10MB", "INSERT INTO t VALUES " + strings.Repeat("(nextval('s'), 'abcdefgh'),", 10<<20/27) + "(1, '')"},
	)
	// Half of them small enough that many pass the guard and reach the
	// parser near the budget, half up to the size limit.
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 300 {
		size := 1 + r.IntN(MaxStatementBytes)
		if i%2 == 0 {
			size = 1 + r.IntN(3<<10)
		}
		in = append(in, guardInput{fmt.Sprintf("random/%d", i), pinningtest.Random(r, size)})
	}
	return in
}

// deepestAllowed is the largest n for which the guard sends s.Build(n) to
// the parser (0 if none, or if every size up to the limit passes).
func deepestAllowed(s pinningtest.Shape) int {
	n := 0
	for step := 1 << 12; step > 0; step /= 2 {
		if m := n + step; len(s.Build(m)) <= MaxStatementBytes && !overParserBudget(s.Build(m)) {
			n = m
		}
	}
	if !overParserBudget(pinningtest.Sized(s, MaxStatementBytes)) {
		return 0 // flat: the 16 KB input already covers it
	}
	return n
}

// TestParserGuard runs every adversarial input through Analyze in a child
// process, once with the default thread stack and once with musl's 128 KiB,
// and checks that the child lives and every verdict is right: a deep tree
// reaching pg_query would kill the child with SIGSEGV.
func TestParserGuard(t *testing.T) {
	inputs := guardInputs()
	if os.Getenv(guardChildEnv) != "" {
		w := bufio.NewWriter(os.Stdout)
		for i, in := range inputs {
			rep, err := Analyze(in.sql)
			kind := "none"
			switch {
			case err != nil && strings.Contains(err.Error(), errTooDeep.Error()):
				kind = "too_deep"
			case err != nil:
				kind = "unparsable"
			}
			fmt.Fprintf(w, "verdict %d %s %s\n", i, joinReasons(rep.Reasons()), kind)
			w.Flush() // a crash must not hide the verdicts before it
		}
		fmt.Fprintln(w, "done")
		w.Flush()
		return
	}
	if testing.Short() {
		t.Skip("runs the analyzer in two child processes")
	}
	for _, stackKB := range []int{0, smallThreadStackKB} {
		t.Run("stack="+strconv.Itoa(stackKB)+"KB", func(t *testing.T) {
			out := runGuardChild(t, stackKB)
			parsedDeep := 0
			for i, in := range inputs {
				line := fmt.Sprintf("verdict %d ", i)
				j := strings.Index(out, line)
				require.GreaterOrEqual(t, j, 0, "the child died before %s (%d bytes): output ends %q", in.name, len(in.sql), tail(out))
				fields := strings.Fields(out[j : strings.IndexByte(out[j:], '\n')+j])
				reasons, kind := fields[2], fields[3]
				if len(in.sql) > MaxStatementBytes {
					require.Equal(t, "statement_size", reasons, in.name)
					require.Equal(t, "none", kind, in.name)
					continue
				}
				want := "sequence"
				if strings.HasPrefix(in.sql, "SET") {
					want = "session_setting"
				}
				require.Equal(t, want, reasons, in.name)
				switch {
				case !parserAvailable:
					require.Equal(t, "none", kind, in.name)
				case overParserBudget(in.sql):
					require.Equal(t, "too_deep", kind, in.name)
				default:
					require.NotEqual(t, "too_deep", kind, in.name)
					if kind == "none" && parserDepth(in.sql) > maxParserDepth/2 {
						parsedDeep++
					}
				}
			}
			require.Contains(t, out, "\ndone\n")
			if parserAvailable {
				// The test means something only if deep text did reach
				// the parser.
				require.Greater(t, parsedDeep, 20)
			}
		})
	}
}

// runGuardChild re-runs this test binary as the child, with its stack limit
// (and so the default thread stack) set to stackKB, or unchanged for 0.
func runGuardChild(t *testing.T, stackKB int) string {
	exe, err := os.Executable()
	require.NoError(t, err)
	args := []string{"-test.run=^TestParserGuard$", "-test.count=1"}
	cmd := exec.Command(exe, args...)
	if stackKB > 0 {
		sh, err := exec.LookPath("sh")
		require.NoError(t, err, "sh sets the child's stack limit")
		cmd = exec.Command(sh, append([]string{"-c", `ulimit -s "$0" && exec "$@"`, strconv.Itoa(stackKB), exe}, args...)...)
	}
	cmd.Env = append(os.Environ(), guardChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "the child process failed (stack %d KB): output ends %q", stackKB, tail(string(out)))
	return string(out)
}

func tail(s string) string { return s[max(0, len(s)-300):] }

func joinReasons(rs []Reason) string {
	if len(rs) == 0 {
		return "-"
	}
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = string(r)
	}
	return strings.Join(s, ",")
}

// TestParserGuardPassesOrdinaryStatements checks that the guard leaves
// hand-written statements, however long, to the parser: only nesting counts,
// not length.
func TestParserGuardPassesOrdinaryStatements(t *testing.T) {
	for _, row := range loadCorpus(t) {
		require.False(t, overParserBudget(row.sql), "corpus %s: depth %d", row.id, parserDepth(row.sql))
	}
	var joins, conds, cols, whens strings.Builder
	for i := range 15 {
		fmt.Fprintf(&joins, " JOIN t%d ON t%d.id = t%d.parent_id AND t%d.deleted_at IS NULL", i+1, i, i+1, i+1)
	}
	for i := range 60 {
		fmt.Fprintf(&conds, " AND c%d = $%d", i, i+1)
	}
	for i := range 200 {
		fmt.Fprintf(&cols, ", col_%d", i)
	}
	for i := range 60 {
		fmt.Fprintf(&whens, " WHEN %d THEN 'v%d'", i, i)
	}
	ordinary := []string{
		"SELECT nextval('s'), t0.a, t1.b FROM t0" + joins.String() + " WHERE t0.x = $1" + conds.String(),
		"INSERT INTO wide (id" + cols.String() + ") VALUES (nextval('s')" + strings.Repeat(", $1", 200) + ")",
		"INSERT INTO t (id, a) VALUES " + strings.Repeat("(nextval('s'), 'x'), ", 400) + "(nextval('s'), 'y')",
		"SELECT set_config('app.x', CASE $1" + whens.String() + " ELSE 'other' END, true)",
		"CREATE TEMP TABLE x AS SELECT a FROM t WHERE a IN (SELECT b FROM u WHERE c = ANY(ARRAY[1, 2, 3])) " +
			"UNION ALL SELECT a FROM v WHERE d BETWEEN 1 AND 10 AND (e OR f) ORDER BY 1",
		"SELECT pg_advisory_lock(hashtext(coalesce(lower(trim(both ' ' from $1::text)), 'default')))",
	}
	for _, sql := range ordinary {
		require.LessOrEqual(t, len(sql), MaxStatementBytes)
		require.False(t, overParserBudget(sql), "depth %d: %.80s", parserDepth(sql), sql)
		t.Logf("depth %3d of %d: %.60s", parserDepth(sql), maxParserDepth, sql)
		_, err := Analyze(sql)
		require.NoError(t, err, "%.80s", sql)
	}
}

// TestParserDepthAllocatesNothing checks that the guard's pass costs no more
// than the lexer's on the worst inputs: it never allocates.
func TestParserDepthAllocatesNothing(t *testing.T) {
	for _, s := range pinningtest.Shapes {
		sql := pinningtest.Sized(s, MaxStatementBytes)
		require.Zero(t, testing.AllocsPerRun(10, func() { overParserBudget(sql) }), s.Name)
	}
}
