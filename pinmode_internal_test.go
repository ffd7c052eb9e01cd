// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

package rdsproxy

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestPinCheckModesParse(t *testing.T) {
	for _, m := range []string{"off", "warn", "retire", "error"} {
		cfg, err := ParseConfig("postgres://u@h/db?pin_check=" + m)
		require.NoError(t, err, m)
		require.Equal(t, PinCheckMode(m), cfg.PinCheck)
		require.Contains(t, cfg.String(), "pin_check="+m)
	}
	_, err := ParseConfig("postgres://u@h/db?pin_check=refuse")
	require.ErrorIs(t, err, ErrConfig)
	require.Contains(t, err.Error(), "error, off, retire or warn")
	require.ErrorIs(t, WithPinCheck("loud")(&Config{}), ErrConfig)

	cfg, err := ParseConfig("postgres://u@h/db")
	require.NoError(t, err)
	require.False(t, cfg.SessionAudit, "session_audit defaults to off")
	require.Equal(t, PinCheckWarn, cfg.PinCheck, "pin_check defaults to warn")
	cfg, err = ParseConfig("postgres://u@h/db?session_audit=on")
	require.NoError(t, err)
	require.True(t, cfg.SessionAudit)
	require.Contains(t, cfg.String(), "session_audit=on")
	_, err = ParseConfig("postgres://u@h/db?session_audit=yes")
	require.ErrorIs(t, err, ErrConfig)
	require.Contains(t, err.Error(), "session_audit")
	require.Contains(t, err.Error(), "on or off")
	_, ok := cfg.ConnConfig.RuntimeParams["session_audit"]
	require.False(t, ok, "session_audit must not reach the server as a startup parameter")
}

// TestPinningErrorText: the refusal names reason, remedy and fingerprint,
// never a literal.
func TestPinningErrorText(t *testing.T) {
	p := newPinChecker(slog.New(slog.DiscardHandler), nil)
	v := p.check("SELECT pg_advisory_lock(31337)", PinKindQuery, nil)
	require.NotNil(t, v)
	err := fmt.Errorf("wrapped: %w", &pinningError{event: &v.event})
	require.ErrorIs(t, err, ErrPinning)
	require.NotContains(t, err.Error(), "31337")
	require.Contains(t, err.Error(), "advisory_lock")
	require.Contains(t, err.Error(), "SELECT pg_advisory_lock(?)")
	require.Nil(t, p.check("SELECT 1", PinKindQuery, nil))

	ctx := refuse(t.Context(), v)
	<-ctx.Done()
	require.ErrorIs(t, ctx.Err(), ErrPinning)
	require.False(t, errors.Is(ctx.Err(), errRetire), "a refusal must not read as a bad connection")
}

func TestChurnGuardStreak(t *testing.T) {
	var logs bytes.Buffer
	g := newChurnGuard(slog.New(slog.NewTextHandler(&logs, nil)))
	p := newPinChecker(slog.New(slog.DiscardHandler), nil)
	every := p.check("SET search_path TO tenant_1", PinKindQuery, nil)
	some := p.check("SELECT set_config('x.y', '1', false)", PinKindQuery, nil)
	for i := 0; i < pinChurnStreak-1; i++ {
		require.True(t, g.allow(every, true))
		require.True(t, g.allow(some, false), "a statement run later in a connection's life is no churn")
	}
	require.False(t, g.allow(every, true), "the streak's end keeps the connection")
	require.False(t, g.allow(every, false), "and every later one of that statement")
	require.True(t, g.allow(some, true), "other statements are still retired")
	require.Equal(t, 1, strings.Count(logs.String(), "runs on every connection"))
	require.Contains(t, logs.String(), "SET search_path TO ?")
}

func TestChurnGuardCeiling(t *testing.T) {
	var logs bytes.Buffer
	g := newChurnGuard(slog.New(slog.NewTextHandler(&logs, nil)))
	now := time.Unix(1_000_000, 0)
	g.now = func() time.Time { return now }
	p := newPinChecker(slog.New(slog.DiscardHandler), nil)
	v := p.check("LISTEN jobs", PinKindQuery, nil)
	for i := 0; i < pinRetireCeiling; i++ {
		require.True(t, g.allow(v, false), "retirement %d", i)
	}
	require.False(t, g.allow(v, false), "past the ceiling")
	require.False(t, g.allow(v, false))
	require.Equal(t, 1, strings.Count(logs.String(), "ceiling"), "warned once")
	now = now.Add(pinRetireWindow)
	require.True(t, g.allow(v, false), "a new window")
}

func TestDiffState(t *testing.T) {
	set := func(ls ...leftover) map[leftover]struct{} {
		m := make(map[leftover]struct{})
		for _, l := range ls {
			m[l] = struct{}{}
		}
		return m
	}
	base := set(leftover{"setting", "statement_timeout"})
	now := set(leftover{"setting", "statement_timeout"}, leftover{"setting", "work_mem"}, leftover{"advisory_lock", ""}, leftover{"listen", "a"})
	got := diffState(base, now)
	require.Equal(t, []leftover{{"advisory_lock", ""}, {"listen", "a"}, {"setting", "work_mem"}}, got)
	require.Equal(t, "advisory_lock", got[0].String())
	require.Equal(t, "setting work_mem", got[2].String())
	require.Empty(t, diffState(base, base), "the baseline is not a finding")
	for _, l := range got {
		_, ok := auditReasons[l.kind]
		require.True(t, ok, l.kind)
	}
}

func TestAuditSuspectsBounded(t *testing.T) {
	a := &auditConn{}
	a.ran(auditQuery)
	require.False(t, a.dirty, "the audit's own query is no statement of the application")
	for i := 0; i < 3*maxAuditSuspects; i++ {
		a.ran(fmt.Sprintf("SELECT %d", i))
		a.ran(fmt.Sprintf("SELECT %d", i))
	}
	require.Len(t, a.suspects, maxAuditSuspects)
	require.Equal(t, fmt.Sprintf("SELECT %d", 3*maxAuditSuspects-1), a.suspects[maxAuditSuspects-1])
	long := strings.Repeat("x", 10*maxSuspectBytes)
	a.ran(long)
	require.Len(t, a.suspects[maxAuditSuspects-1], maxSuspectBytes)
}
