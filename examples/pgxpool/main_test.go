package main

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rdsproxy/rdsproxy"
	"github.com/rdsproxy/rdsproxy/internal/testdb"
	"github.com/rdsproxy/rdsproxy/internal/testiam"
)

type events struct {
	mu sync.Mutex
	ev []rdsproxy.PinEvent
}

func (e *events) add(ev rdsproxy.PinEvent) { e.mu.Lock(); e.ev = append(e.ev, ev); e.mu.Unlock() }
func (e *events) get() []rdsproxy.PinEvent {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]rdsproxy.PinEvent(nil), e.ev...)
}

func TestPgxpool(t *testing.T) {
	dsn := testdb.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var ev events
	var out strings.Builder
	if err := run(ctx, dsn, &out, rdsproxy.WithPinHandler(ev.add)); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"40 + 2 = 42", "pool: max=5 total=1 idle=1 lifetime=30m0s+5m0s idle_time=5m0s"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	time.Sleep(50 * time.Millisecond) // events are delivered in the background; none is expected
	if got := ev.get(); len(got) != 0 {
		t.Errorf("nothing in the example pins; got %+v", got)
	}
}

// TestPgxpoolIAM runs the example through the RDS Proxy emulator with
// iam=true: one connection, one authentication, one token signing.
func TestPgxpoolIAM(t *testing.T) {
	proxy, dsn := testiam.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tokens := rdsproxy.NewTokenSource(rdsproxy.TokenSourceOptions{Credentials: testiam.Credentials})
	var out strings.Builder
	if err := run(ctx, dsn, &out, rdsproxy.WithTokenSource(tokens)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "40 + 2 = 42") {
		t.Errorf("output:\n%s", out.String())
	}
	if a, s := proxy.Authentications(), tokens.Signings(); a != 1 || s != 1 {
		t.Errorf("authentications=%d signings=%d, want 1 and 1", a, s)
	}
}
