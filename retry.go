// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

package rdsproxy

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// RetryPolicy bounds [RetryRead]. The zero value uses the defaults.
type RetryPolicy struct {
	// MaxAttempts is the number of calls to fn, the first included.
	// Default 3.
	MaxAttempts int
	// BaseDelay is the backoff before the second attempt; it doubles for
	// each further attempt up to MaxDelay. Each wait is drawn at random from
	// [d/2, d] (equal jitter), so a fleet that failed together does not retry
	// together. Default 50ms.
	BaseDelay time.Duration
	// MaxDelay caps one wait. Default 1s.
	MaxDelay time.Duration
	// Retryable decides which errors are retried. Default: transient errors
	// only: RDS Proxy's borrow timeout, a connection that broke or could not
	// be opened (driver.ErrBadConn, network errors, EOF, SQLSTATE class 08,
	// 57P01-57P03 shutdowns), too_many_connections (53300), serialization
	// failures (40001) and deadlocks (40P01). Never the caller's context
	// ending, SQL errors, authentication or configuration errors.
	Retryable func(error) bool

	sleep func(ctx context.Context, d time.Duration) error // tests inject these
	randN func(n int64) int64
}

const (
	defaultRetryAttempts  = 3
	defaultRetryBaseDelay = 50 * time.Millisecond
	defaultRetryMaxDelay  = time.Second
)

// RetryRead calls fn until it succeeds, returns an error the policy does not
// retry, has been called MaxAttempts times, or ctx ends, waiting with bounded
// exponential backoff and jitter between attempts.
//
// The caller asserts that fn is idempotent: a read, or anything that is safe
// to run twice. Do not wrap writes or transactions that commit in it: a
// failure in the middle of a COMMIT may have committed (see
// [IsAmbiguousCommit]), and a retry would write again. fn should do all of
// its work under the ctx it is given (open and close its rows inside fn).
//
// The error returned is fn's last error; a borrow timeout matches
// [ErrBorrowTimeout] with errors.Is. When attempts were retried or ctx ended
// during a wait, the error says so and still wraps fn's error.
func RetryRead(ctx context.Context, policy RetryPolicy, fn func(ctx context.Context) error) error {
	p := policy.withDefaults()
	for attempt := 1; ; attempt++ {
		err := fn(ctx)
		if err == nil {
			return nil
		}
		err = classifyError(err)
		if ctx.Err() != nil || !p.Retryable(err) {
			return err
		}
		if attempt >= p.MaxAttempts {
			return fmt.Errorf("rdsproxy: read failed %d times: %w", attempt, err)
		}
		if serr := p.sleep(ctx, p.delay(attempt)); serr != nil {
			return fmt.Errorf("rdsproxy: read retry stopped after %d attempts (%w): %w", attempt, serr, err)
		}
	}
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = defaultRetryAttempts
	}
	if p.BaseDelay <= 0 {
		p.BaseDelay = defaultRetryBaseDelay
	}
	if p.MaxDelay <= 0 {
		p.MaxDelay = defaultRetryMaxDelay
	}
	if p.MaxDelay < p.BaseDelay {
		p.MaxDelay = p.BaseDelay
	}
	if p.Retryable == nil {
		p.Retryable = isTransient
	}
	if p.sleep == nil {
		p.sleep = sleepCtx
	}
	if p.randN == nil {
		p.randN = rand.Int64N
	}
	return p
}

// delay is the wait after the given (1-based) failed attempt: d =
// min(MaxDelay, BaseDelay * 2^(attempt-1)), drawn from [d/2, d].
func (p RetryPolicy) delay(attempt int) time.Duration {
	d := p.MaxDelay
	if shift := attempt - 1; shift < 32 && p.BaseDelay<<shift > 0 && p.BaseDelay<<shift < p.MaxDelay {
		d = p.BaseDelay << shift
	}
	half := d / 2
	return half + time.Duration(p.randN(int64(d-half)+1))
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// isTransient is RetryPolicy's default Retryable.
func isTransient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, ErrClosed) || errors.Is(err, ErrConfig) || errors.Is(err, sql.ErrNoRows) {
		return false
	}
	if IsBorrowTimeout(err) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch code := pgErr.Code; {
		case strings.HasPrefix(code, "08"), // connection_exception
			code == "57P01", code == "57P02", code == "57P03", // shutdowns, cannot_connect_now
			code == "53300",                  // too_many_connections
			code == "40001", code == "40P01": // serialization_failure, deadlock_detected
			return true
		}
		return false
	}
	if errors.Is(err, driver.ErrBadConn) || pgconn.SafeToRetry(err) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		return true
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return true
	}
	var connectErr *pgconn.ConnectError
	return errors.As(err, &connectErr)
}
