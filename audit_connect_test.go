package rdsproxy

import (
	"context"
	"database/sql"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// auditFailer is a caller's tracer that makes the session audit's query fail
// (its context already done) while on.
type auditFailer struct{ on atomic.Bool }

func (a *auditFailer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	if a.on.Load() && d.SQL == auditQuery {
		c, cancel := context.WithCancel(ctx)
		cancel()
		return c
	}
	return ctx
}
func (a *auditFailer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// TestFailedOverflowConnectLeavesNothing: an overflow connection whose
// setup fails (the audit's baseline) is closed, and its slot is given back
// once.
func TestFailedOverflowConnectLeavesNothing(t *testing.T) {
	f := &auditFailer{}
	db, c, _ := openPlain(t, 2*time.Second, []Option{WithTracer(f)}, "pool_max_conns", "1", "session_audit", "on")
	ctx := context.Background()
	held, err := db.Conn(ctx)
	require.NoError(t, err)
	defer held.Close()
	f.on.Store(true)
	_, err = db.Conn(ctx)
	require.Error(t, err)
	require.EqualValues(t, 0, c.policy.registry.overflowOpen.Load(), "overflow slots after one failed overflow connect")
	f.on.Store(false)
	var n int
	require.NoError(t, held.QueryRowContext(ctx, "SELECT count(*) FROM pg_stat_activity WHERE application_name = current_setting('application_name')").Scan(&n))
	require.Equal(t, 1, n, "backends open: the held one only (the failed overflow connection must be closed)")
}

// TestFailedConnectLeavesNoRegistryEntry: a pooled connection whose setup
// fails is not left in the registry that counts connections at work.
func TestFailedConnectLeavesNoRegistryEntry(t *testing.T) {
	f := &auditFailer{}
	db, c, _ := openPlain(t, 2*time.Second, []Option{WithTracer(f)}, "pool_max_conns", "2", "session_audit", "on")
	f.on.Store(true)
	for range 3 {
		require.Error(t, db.Ping())
	}
	require.Equal(t, 0, c.policy.tracked(), "registry entries for connections that never opened")
}

// TestSlowDialIsNotAWaitAtTheCap: under plain sql.Open, a dial that hangs
// (a server that accepts and never answers) below the cap ends with the
// caller's context, not ErrPoolWaitTimeout: only time at the cap counts
// towards that bound.
func TestSlowDialIsNotAWaitAtTheCap(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	c, err := NewConnector("postgres://postgres@" + ln.Addr().String() + "/postgres?sslmode=disable&pool_max_conns=5")
	require.NoError(t, err)
	c.maxWait = 300 * time.Millisecond
	db := sql.OpenDB(c)
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err = db.PingContext(ctx)
	require.Error(t, err)
	require.NotErrorIs(t, err, ErrPoolWaitTimeout, "0 of 5 connections in use: a hung dial, not a wait at the cap")
	require.ErrorIs(t, err, context.DeadlineExceeded)
}
