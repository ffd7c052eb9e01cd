package rdsproxy_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/rdsproxy/rdsproxy"
	"github.com/rdsproxy/rdsproxy/internal/pinning"
	"github.com/rdsproxy/rdsproxy/internal/pinning/pinningtest"
	"github.com/rdsproxy/rdsproxy/internal/testdb"
)

// pinGuardChildEnv makes the test binary the child of
// TestPinCheckSurvivesAdversarialSQL.
const pinGuardChildEnv = "RDSPROXY_PIN_GUARD_CHILD"

type adversarialSQL struct {
	name string
	sql  string
}

// adversarialStatements are the statements that killed the process through
// pg_query before the size rule and the parser guard (over 16 KB: 30,000
// additions, 50,000 UNION ALL branches, 30,000 concatenations), and every
// nesting shape at 2 KB (too deep for a 128 KiB thread stack) and at the
// 16 KB limit.
func adversarialStatements() []adversarialSQL {
	in := []adversarialSQL{
		{"plus/30000-terms", "SELECT 1" + strings.Repeat("+1", 30_000)},
		{"union/50000-branches", "SELECT 1" + strings.Repeat(" UNION ALL SELECT 1", 50_000)},
		{"concat/30000-terms", "SELECT 'a'" + strings.Repeat("||'a'", 30_000)},
	}
	for _, s := range pinningtest.Shapes {
		for _, size := range []int{2 << 10, pinning.MaxStatementBytes} {
			in = append(in, adversarialSQL{fmt.Sprintf("%s/%d", s.Name, size), pinningtest.Sized(s, size)})
		}
	}
	return in
}

// TestPinCheckSurvivesAdversarialSQL runs AnalyzePinning and the runtime
// check (pin_check=warn, through a real connection to PostgreSQL) on every
// adversarial statement in a child process, once with the default thread
// stack and once with musl's 128 KiB, and checks that the child lives and
// every verdict is right. PostgreSQL may reject a statement (stack depth
// limit exceeded, unknown relation): the child must not die either way.
func TestPinCheckSurvivesAdversarialSQL(t *testing.T) {
	if os.Getenv(pinGuardChildEnv) != "" {
		runPinGuardChild(t)
		return
	}
	testdb.Require(t)
	if testing.Short() {
		t.Skip("runs the checks in two child processes")
	}
	inputs := adversarialStatements()
	for _, stackKB := range []int{0, 128} {
		t.Run("stack="+strconv.Itoa(stackKB)+"KB", func(t *testing.T) {
			exe, err := os.Executable()
			require.NoError(t, err)
			args := []string{"-test.run=^TestPinCheckSurvivesAdversarialSQL$", "-test.count=1"}
			cmd := exec.Command(exe, args...)
			if stackKB > 0 {
				cmd = exec.Command("sh", append([]string{"-c", `ulimit -s "$0" && exec "$@"`, strconv.Itoa(stackKB), exe}, args...)...)
			}
			cmd.Env = append(os.Environ(), pinGuardChildEnv+"=1")
			outBytes, err := cmd.CombinedOutput()
			out := string(outBytes)
			require.NoError(t, err, "the child process failed: output ends %q", out[max(0, len(out)-400):])
			lines := map[string][]string{}
			for _, l := range strings.Split(out, "\n") {
				if f := strings.Fields(l); len(f) >= 4 && (f[0] == "analyze" || f[0] == "runtime") {
					lines[f[0]+" "+f[1]] = f[2:]
				}
			}
			for i, in := range inputs {
				want := "sequence"
				switch {
				case len(in.sql) > pinning.MaxStatementBytes:
					want = "statement_size"
				case strings.HasPrefix(in.sql, "SET"):
					want = "session_setting"
				}
				a, ok := lines[fmt.Sprintf("analyze %d", i)]
				require.True(t, ok, "no AnalyzePinning verdict for %s", in.name)
				require.Equal(t, want, a[0], "AnalyzePinning, %s", in.name)
				if want == "statement_size" {
					require.Equal(t, "none", a[1], "AnalyzePinning of text over the limit returns no error, %s", in.name)
				}
				r, ok := lines[fmt.Sprintf("runtime %d", i)]
				require.True(t, ok, "no runtime verdict for %s", in.name)
				require.Equal(t, want, r[0], "runtime check, %s", in.name)
			}
		})
	}
}

// runPinGuardChild is the child: one line per statement and check.
func runPinGuardChild(t *testing.T) {
	dsn := testdb.WithParams(testdb.Require(t), "application_name", testdb.AppName(t))
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	for i, in := range adversarialStatements() {
		rep, err := rdsproxy.AnalyzePinning(in.sql)
		errKind := "none"
		if err != nil {
			require.ErrorIs(t, err, rdsproxy.ErrUnparsable)
			errKind = "unparsable"
		}
		fmt.Fprintf(w, "analyze %d %s %s\n", i, joinPinReasons(rep.Reasons), errKind)
		w.Flush() // a crash must not hide the lines before it

		reasons, serverErr := runtimeVerdict(t, dsn, in.sql)
		fmt.Fprintf(w, "runtime %d %s %s\n", i, reasons, serverErr)
		w.Flush()
	}
}

// runtimeVerdict runs sql through a fresh pool with pin_check=warn and
// returns the reasons of the pinning events it caused, and the server's
// SQLSTATE (or "ok").
func runtimeVerdict(t *testing.T, dsn, sql string) (reasons, serverErr string) {
	var mu sync.Mutex
	var got []rdsproxy.PinReason
	db, err := rdsproxy.Open(testdb.WithParams(dsn, "pin_check", "warn"),
		rdsproxy.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
		rdsproxy.WithPinHandler(func(ev rdsproxy.PinEvent) {
			mu.Lock()
			defer mu.Unlock()
			for _, r := range ev.Reasons {
				if !slices.Contains(got, r) {
					got = append(got, r)
				}
			}
		}))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err = db.ExecContext(ctx, sql)
	serverErr = "ok"
	if err != nil {
		var pgErr *pgconn.PgError
		require.True(t, errors.As(err, &pgErr), "not a server error: %v", err)
		serverErr = pgErr.Code
	}
	require.NoError(t, db.Close()) // delivers the queued events
	mu.Lock()
	defer mu.Unlock()
	return joinPinReasons(got), serverErr
}

func joinPinReasons(rs []rdsproxy.PinReason) string {
	if len(rs) == 0 {
		return "-"
	}
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = string(r)
	}
	return strings.Join(s, ",")
}
