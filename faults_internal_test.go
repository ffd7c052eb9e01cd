package rdsproxy

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"
)

var errBorrowPg = &pgconn.PgError{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: "53300",
	Message: "Timed-out waiting to acquire database connection."}

// fakeSleeps records the waits RetryRead asks for instead of sleeping.
type fakeSleeps struct{ waits []time.Duration }

func (f *fakeSleeps) sleep(ctx context.Context, d time.Duration) error {
	f.waits = append(f.waits, d)
	return ctx.Err()
}

func TestRetryReadBackoffIsBoundedExponentialWithJitter(t *testing.T) {
	for _, tc := range []struct {
		name  string
		randN func(int64) int64
		want  []time.Duration
	}{
		// Lowest draw: half of each step. Steps: 10, 20, 40, 80 (capped at 50), 50 ms.
		{"low", func(int64) int64 { return 0 }, []time.Duration{5, 10, 20, 25, 25}},
		// Highest draw: the full step.
		{"high", func(n int64) int64 { return n - 1 }, []time.Duration{10, 20, 40, 50, 50}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := &fakeSleeps{}
			calls := 0
			p := RetryPolicy{MaxAttempts: 6, BaseDelay: 10 * time.Millisecond, MaxDelay: 50 * time.Millisecond,
				sleep: fs.sleep, randN: tc.randN}
			err := RetryRead(context.Background(), p, func(context.Context) error { calls++; return errBorrowPg })
			require.ErrorIs(t, err, ErrBorrowTimeout)
			require.True(t, IsBorrowTimeout(err))
			require.Contains(t, err.Error(), "6 times")
			require.Equal(t, 6, calls)
			want := make([]time.Duration, len(tc.want))
			for i, w := range tc.want {
				want[i] = w * time.Millisecond
			}
			require.Equal(t, want, fs.waits)
		})
	}
}

func TestRetryReadStopsEarly(t *testing.T) {
	ctx := context.Background()
	// Success on the third attempt.
	fs := &fakeSleeps{}
	calls := 0
	err := RetryRead(ctx, RetryPolicy{sleep: fs.sleep, randN: func(int64) int64 { return 0 }}, func(context.Context) error {
		calls++
		if calls < 3 {
			return io.ErrUnexpectedEOF
		}
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, 3, calls)
	require.Len(t, fs.waits, 2)

	// Not transient: one call, the error as is.
	fs = &fakeSleeps{}
	calls = 0
	syntax := &pgconn.PgError{Severity: "ERROR", Code: "42601", Message: "syntax error"}
	err = RetryRead(ctx, RetryPolicy{MaxAttempts: 5, sleep: fs.sleep}, func(context.Context) error { calls++; return syntax })
	require.Same(t, syntax, err)
	require.Equal(t, 1, calls)
	require.Empty(t, fs.waits)

	// The caller's context ends during a wait.
	cctx, cancel := context.WithCancel(ctx)
	calls = 0
	err = RetryRead(cctx, RetryPolicy{MaxAttempts: 5, sleep: func(ctx context.Context, _ time.Duration) error { cancel(); return ctx.Err() }},
		func(context.Context) error { calls++; return driver.ErrBadConn })
	require.ErrorIs(t, err, context.Canceled)
	require.ErrorIs(t, err, driver.ErrBadConn)
	require.Equal(t, 1, calls)

	// A custom Retryable wins.
	calls = 0
	err = RetryRead(ctx, RetryPolicy{MaxAttempts: 4, sleep: (&fakeSleeps{}).sleep, Retryable: func(error) bool { return true }},
		func(context.Context) error { calls++; return sql.ErrNoRows })
	require.ErrorIs(t, err, sql.ErrNoRows)
	require.Equal(t, 4, calls)
}

func TestRetryPolicyDefaults(t *testing.T) {
	p := RetryPolicy{}.withDefaults()
	require.Equal(t, defaultRetryAttempts, p.MaxAttempts)
	require.Equal(t, defaultRetryBaseDelay, p.BaseDelay)
	require.Equal(t, defaultRetryMaxDelay, p.MaxDelay)
	// The delay never exceeds MaxDelay, even for absurd attempt numbers.
	p.randN = func(n int64) int64 { return n - 1 }
	for _, a := range []int{1, 10, 40, 100, 1 << 20} {
		require.LessOrEqual(t, p.delay(a), p.MaxDelay)
		require.Positive(t, p.delay(a))
	}
}

func TestIsAmbiguousCommit(t *testing.T) {
	fatal := &pgconn.PgError{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "57P01",
		Message: "terminating connection due to administrator command"}
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{driver.ErrBadConn, false},
		{fmt.Errorf("wrapped: %w", driver.ErrBadConn), false},
		{pgx.ErrTxCommitRollback, false},
		{sql.ErrTxDone, false},
		{ErrClosed, false},
		{errBorrowPg, false},
		{&pgconn.PgError{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: "40001"}, false},
		{&pgconn.PgError{Severity: "ERROR", Code: "23505"}, false},
		{fatal, true},
		{fmt.Errorf("x: %w", fatal), true},
		{&pgconn.PgError{Severity: "PANIC", Code: "XX000"}, true},
		{io.ErrUnexpectedEOF, true},
		{syscall.ECONNRESET, true},
		{context.Canceled, true}, // a context that ended after the COMMIT was sent
	} {
		require.Equal(t, tc.want, IsAmbiguousCommit(tc.err), "%v", tc.err)
	}
}

func TestClassifyBorrowTimeout(t *testing.T) {
	require.NoError(t, classifyError(nil))
	other := errors.New("other")
	require.Same(t, other, classifyError(other))
	connectErr := fmt.Errorf("failed to connect to `host=127.0.0.1`: server error (%w)", &pgconn.PgError{Severity: "FATAL",
		Code: "53300", Message: "Timed-out waiting to acquire database connection."})
	err := classifyError(connectErr)
	require.ErrorIs(t, err, ErrBorrowTimeout)
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr, "the server's error stays reachable")
	require.Contains(t, err.Error(), "MaxConnectionsPercent")
	require.Contains(t, err.Error(), "Timed-out waiting")
	require.Same(t, err, classifyError(err), "mapped once")
	require.False(t, IsBorrowTimeout(&pgconn.PgError{Code: "53300", Message: "sorry, too many clients already"}))
}

func TestIsTransient(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{errBorrowPg, true},
		{driver.ErrBadConn, true},
		{io.EOF, true},
		{syscall.ECONNREFUSED, true}, // syscall.Errno is a net.Error
		{&pgconn.PgError{Code: "57P01"}, true},
		{&pgconn.PgError{Code: "08006"}, true},
		{&pgconn.PgError{Code: "40001"}, true},
		{&pgconn.PgError{Code: "28P01"}, false},
		{&pgconn.PgError{Code: "42601"}, false},
		{context.DeadlineExceeded, false},
		{sql.ErrNoRows, false},
		{&ConfigError{Key: "k"}, false},
		{ErrClosed, false},
	} {
		require.Equal(t, tc.want, isTransient(tc.err), "%v", tc.err)
	}
}
