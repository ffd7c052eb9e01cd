package faults

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/rdsproxy/rdsproxy"
	"github.com/rdsproxy/rdsproxy/internal/testiam"
)

const (
	// testPassword is put in every non-IAM DSN (trust authentication ignores
	// it) so the secrets check can look for it in errors and logs.
	testPassword = "faults-Passw0rd-SECRET"
)

// soak reports whether the long local mode is on (RDSPROXY_SOAK=1).
func soak() bool { return os.Getenv("RDSPROXY_SOAK") == "1" }

// scale picks the bounded or the soak value.
func scale[T any](bounded, long T) T {
	if soak() {
		return long
	}
	return bounded
}

// capture is the secrets evidence: every log record of every connector the
// suite opens and every error a test observed.
type capture struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	recs atomic.Int64
	errs atomic.Int64
}

var evidence = &capture{}

func (c *capture) Write(p []byte) (int, error) {
	c.recs.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.Write(p)
}

// err records err (with every fmt rendering of it) and returns it.
func (c *capture) err(err error) error {
	if err == nil {
		return nil
	}
	c.errs.Add(1)
	c.mu.Lock()
	fmt.Fprintf(&c.buf, "%v\n%+v\n%#v\n", err, err, err)
	c.mu.Unlock()
	return err
}

func (c *capture) records() int64 { return c.recs.Load() }
func (c *capture) errors() int64  { return c.errs.Load() }

// secrets are the strings that must never appear: token parts, the AWS secret
// key (and a prefix of it), the access key id and the DSN password.
var secrets = []string{"X-Amz-Signature", "X-Amz-Credential", "Action=connect", testiam.SecretKey, testiam.SecretKey[:16],
	testiam.AccessKey, testPassword}

func (c *capture) findSecret() string {
	c.mu.Lock()
	text := c.buf.String()
	c.mu.Unlock()
	for _, s := range secrets {
		if i := strings.Index(text, s); i >= 0 {
			lo := max(0, strings.LastIndexByte(text[:i], '\n')+1)
			hi := strings.IndexByte(text[i:], '\n')
			if hi < 0 {
				hi = len(text) - i
			}
			return fmt.Sprintf("%q in %q", s, text[lo:i+hi])
		}
	}
	return ""
}

// logger is the capturing logger every connector of the suite gets.
var logger = slog.New(slog.NewTextHandler(evidence, &slog.HandlerOptions{Level: slog.LevelDebug}))

// withPassword adds the test password to a URL DSN.
func withPassword(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		panic(err)
	}
	u.User = url.UserPassword(u.User.Username(), testPassword)
	return u.String()
}

// openDB opens dsn with rdsproxy.Open and the capturing logger, closed at the
// end of the test.
func openDB(tb testing.TB, dsn string, opts ...rdsproxy.Option) *sql.DB {
	tb.Helper()
	db, err := rdsproxy.Open(dsn, append([]rdsproxy.Option{rdsproxy.WithLogger(logger)}, opts...)...)
	require.NoError(tb, evidence.err(err))
	tb.Cleanup(func() { db.Close() })
	return db
}

// openWithLogger is rdsproxy.Open with the capturing logger.
func openWithLogger(dsn string, opts ...rdsproxy.Option) (*sql.DB, error) {
	return rdsproxy.Open(dsn, append([]rdsproxy.Option{rdsproxy.WithLogger(logger)}, opts...)...)
}

// queryOne runs a one-row query and checks its answer.
func queryOne(ctx context.Context, db interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}) error {
	var n int
	if err := db.QueryRowContext(ctx, "SELECT $1::int + 1", 41).Scan(&n); err != nil {
		return evidence.err(err)
	}
	if n != 42 {
		return fmt.Errorf("got %d", n)
	}
	return nil
}

// percentile returns the p-th percentile (0-100) of ds (nearest rank).
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s))*p/100+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// countBackends counts server connections with application_name app.
func countBackends(ctx context.Context, admin *pgx.Conn, app string) (int, error) {
	var n int
	err := admin.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", app).Scan(&n)
	return n, err
}

// errBox keeps the last error of several goroutines (errors of different
// types, which atomic.Value refuses).
type errBox struct {
	mu  sync.Mutex
	err error
}

func (b *errBox) Store(err error) { b.mu.Lock(); b.err = err; b.mu.Unlock() }
func (b *errBox) Load() error     { b.mu.Lock(); defer b.mu.Unlock(); return b.err }
