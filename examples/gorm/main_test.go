package main

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rdsproxy/rdsproxy"
	"github.com/rdsproxy/rdsproxy/internal/testdb"
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

func (e *events) count(r rdsproxy.PinReason) int {
	n := 0
	for _, ev := range e.get() {
		for _, got := range ev.Reasons {
			if got == r {
				n++
			}
		}
	}
	return n
}

// TestGORM runs the migrations, CRUD and transactions twice: without
// PrepareStmt nothing pins; with it, every statement GORM prepares is
// reported as a named prepared statement. run closes the *sql.DB, which
// delivers the pending events.
// quiet drops the pinning warnings; the test looks at the handler's events.
var quiet = rdsproxy.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))

func TestGORM(t *testing.T) {
	dsn := testdb.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var plain events
	var out strings.Builder
	if err := run(ctx, dsn, &out, false, rdsproxy.WithPinHandler(plain.add), quiet); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "price 250") {
		t.Errorf("want the committed update (250) and not the rolled back one:\n%s", out.String())
	}
	if got := plain.get(); len(got) != 0 {
		t.Errorf("GORM without PrepareStmt should not pin; got %+v", got)
	}

	var prepared events
	out.Reset()
	//rdsproxy:allow-pin deliberate: PrepareStmt on, to show that it pins
	if err := run(ctx, dsn, &out, true, rdsproxy.WithPinHandler(prepared.add), quiet); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "price 250") {
		t.Errorf("PrepareStmt run:\n%s", out.String())
	}
	if n := prepared.count(rdsproxy.PinPreparedStatement); n == 0 {
		t.Errorf("GORM PrepareStmt: want prepared_statement events, got %+v", prepared.get())
	} else {
		t.Logf("PrepareStmt: %d distinct named prepared statements reported", n)
	}
	for _, ev := range prepared.get() {
		if ev.Kind != "prepare" {
			t.Errorf("unexpected non-prepare pinning event with PrepareStmt: %+v", ev)
		}
	}
}
