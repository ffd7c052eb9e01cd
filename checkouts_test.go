package rdsproxy

import (
	"context"
	"database/sql"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/rdsproxy/rdsproxy/internal/testdb"
)

// warnings is a slog.Handler that keeps WARN records.
type warnings struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (w *warnings) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (w *warnings) WithAttrs([]slog.Attr) slog.Handler           { return w }
func (w *warnings) WithGroup(string) slog.Handler                { return w }
func (w *warnings) Handle(_ context.Context, r slog.Record) error {
	w.mu.Lock()
	w.recs = append(w.recs, r.Clone())
	w.mu.Unlock()
	return nil
}

func (w *warnings) all() []slog.Record {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]slog.Record(nil), w.recs...)
}

// openForClose opens a *sql.DB through Open with the given close grace
// period, logging into w, with a password in the DSN that must never be logged.
func openForClose(t *testing.T, app string, grace time.Duration, w *warnings) (db *sql.DB, c *Connector, password string) {
	t.Helper()
	u, err := url.Parse(testdb.WithParams(testdb.Require(t), "application_name", app, "pool_max_conns", "5"))
	require.NoError(t, err)
	password, ok := u.User.Password()
	if !ok { // trust authentication ignores it; it must still never be logged
		password = "pw-close-leak-Secret-71c2"
		u.User = url.UserPassword(u.User.Username(), password)
	}
	db, err = Open(u.String(), WithLogger(slog.New(w)))
	require.NoError(t, err)
	c = db.Driver().(*Driver).connector
	c.closeGrace = grace
	return db, c, password
}

// waitPoolClosed waits for the background close to finish, within a
// generous deadline.
func waitPoolClosed(t *testing.T, c *Connector, within time.Duration) {
	t.Helper()
	select {
	case <-c.poolClosed:
	case <-time.After(within):
		t.Fatalf("the pool was not closed within %v", within)
	}
}

// TestCloseReclaimsLeakedCheckouts: Rows never closed, a *sql.Conn never
// closed and a transaction never ended do not keep their server sessions or
// a goroutine once the grace period after Close is over, and the leak is
// logged once with its count.
func TestCloseReclaimsLeakedCheckouts(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	app := testdb.AppName(t)
	admin := testdb.Admin(t)
	var w warnings
	const grace = 300 * time.Millisecond
	db, c, password := openForClose(t, app, grace, &w)
	ctx := context.Background()

	released, err := db.Conn(ctx) // back in database/sql's free list: not leaked
	require.NoError(t, err)
	require.NoError(t, released.PingContext(ctx))
	rows, err := db.QueryContext(ctx, "SELECT generate_series(1, 100000)")
	require.NoError(t, err)
	require.True(t, rows.Next()) // leaked: never closed
	conn, err := db.Conn(ctx)
	require.NoError(t, err)
	require.NoError(t, conn.PingContext(ctx)) // leaked: never closed
	tx, err := db.BeginTx(ctx, nil)
	require.NoError(t, err)
	_, err = tx.ExecContext(ctx, "SELECT 1") // never committed or rolled back
	require.NoError(t, err)
	require.NoError(t, released.Close())
	require.Equal(t, 4, testdb.CountConns(t, admin, app))

	require.NoError(t, db.Close())
	waitPoolClosed(t, c, grace+closeSettlePeriod+10*time.Second)
	require.Eventually(t, func() bool { return testdb.CountConns(t, admin, app) == 0 },
		10*time.Second, 10*time.Millisecond, "server sessions of leaked checkouts remain")

	// database/sql's own goroutine for the open transaction is the
	// application's leak, not the connector's: end it (it finds its
	// connection closed), after the close has finished with it.
	require.Error(t, tx.Rollback())
	require.NoError(t, goleak.Find(ignore))

	recs := w.all()
	require.Len(t, recs, 1, "one warning per Close")
	var n int64
	recs[0].Attrs(func(a slog.Attr) bool {
		if a.Key == "connections" {
			n = a.Value.Int64()
		}
		return true
	})
	require.EqualValues(t, 3, n, "the connection released to database/sql before Close is not counted")
	var text strings.Builder
	require.NoError(t, slog.NewTextHandler(&text, nil).Handle(ctx, recs[0]))
	require.NotContains(t, text.String(), password)
	require.NotContains(t, text.String(), "postgres://")
	_ = rows
	_ = conn
}

// TestCloseWaitsForReleaseWithinGrace: a caller that holds a connection
// across Close keeps using it, and its release completes the close with no
// forced close and no warning.
func TestCloseWaitsForReleaseWithinGrace(t *testing.T) {
	app := testdb.AppName(t)
	admin := testdb.Admin(t)
	var w warnings
	db, c, _ := openForClose(t, app, time.Hour, &w)
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	require.NoError(t, err)
	tx, err := conn.BeginTx(ctx, nil)
	require.NoError(t, err)

	require.NoError(t, db.Close())
	select {
	case <-c.poolClosed:
		t.Fatal("the pool closed under a connection still held")
	default:
	}
	var got int
	require.NoError(t, tx.QueryRowContext(ctx, "SELECT 42").Scan(&got))
	require.Equal(t, 42, got)
	require.NoError(t, tx.Commit())
	require.NoError(t, conn.Close())

	waitPoolClosed(t, c, 10*time.Second) // the release, not the hour-long grace period
	require.Eventually(t, func() bool { return testdb.CountConns(t, admin, app) == 0 },
		10*time.Second, 10*time.Millisecond)
	require.Empty(t, w.all())
}
