package main

import (
	"context"
	"database/sql"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rdsproxy/rdsproxy"
	"github.com/rdsproxy/rdsproxy/examples/sqlc/dbprepared"
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

// TestGeneratedQueries runs the generated package db: CRUD and a
// transaction, with no pinning event (the handler's events are delivered
// before Close returns).
func TestGeneratedQueries(t *testing.T) {
	dsn := testdb.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var ev events
	var out strings.Builder
	if err := run(ctx, dsn, &out, rdsproxy.WithPinHandler(ev.add)); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Co-author of The Go Programming Language", `authors named "Brian Kernighan": `} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if got := ev.get(); len(got) != 0 {
		t.Errorf("sqlc's default code should not pin; got %+v", got)
	}
}

// TestEmitPreparedQueriesPins: with emit_prepared_queries, Prepare creates
// named server-side statements, and rdsproxy reports each as pinning.
func TestEmitPreparedQueriesPins(t *testing.T) {
	dsn := testdb.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var ev events
	sqlDB, err := rdsproxy.Open(dsn, rdsproxy.WithPinHandler(ev.add))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sqlDB.ExecContext(ctx, schema); err != nil {
		t.Fatal(err)
	}
	q, err := dbprepared.Prepare(ctx, sqlDB)
	if err != nil {
		t.Fatal(err)
	}
	a, err := q.CreateAuthor(ctx, dbprepared.CreateAuthorParams{Name: "Rob Pike", Bio: sql.NullString{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := q.DeleteAuthor(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	q.Close()
	sqlDB.Close() // delivers the pending events
	prepares := 0
	for _, e := range ev.get() {
		if e.Kind == "prepare" && len(e.Reasons) == 1 && e.Reasons[0] == rdsproxy.PinPreparedStatement {
			prepares++
		}
	}
	if prepares != 5 {
		t.Errorf("want a prepared_statement event for each of the 5 prepared queries, got %d: %+v", prepares, ev.get())
	}
}
