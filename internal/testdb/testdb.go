// Package testdb gives rdsproxy's tests the real services they run against:
// PostgreSQL (named by RDSPROXY_TEST_DATABASE) and a PgBouncer in transaction
// pooling mode started on a free loopback port. Outside CI a missing service
// skips the test with a message naming it; with CI=true it fails the test,
// because .ci/run provides every service.
package testdb

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvDatabase names the environment variable with the test database's URL.
const EnvDatabase = "RDSPROXY_TEST_DATABASE"

// DefaultDatabase works on a fresh machine of the project's kind: PostgreSQL
// on 127.0.0.1:5432 with trust authentication.
const DefaultDatabase = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// AppNamePrefix starts the application_name of every connection the tests
// open, so the leak check can find leftovers in pg_stat_activity.
const AppNamePrefix = "rdsproxy_test"

// InCI reports whether the tests run under CI (CI=true), where no service may
// be missing.
func InCI() bool { return os.Getenv("CI") == "true" }

// missing skips (outside CI) or fails (in CI) tb because what is unavailable.
func missing(tb testing.TB, what string) {
	tb.Helper()
	if InCI() {
		tb.Fatalf("CI=true but %s", what)
	}
	tb.Skipf("skipping: %s", what)
}

// URL returns the test database URL: RDSPROXY_TEST_DATABASE, then
// DATABASE_URL (which the examples and the quickstart read), then the default.
func URL() string {
	for _, env := range []string{EnvDatabase, "DATABASE_URL"} {
		if u := os.Getenv(env); u != "" {
			return u
		}
	}
	return DefaultDatabase
}

var (
	reachOnce sync.Once
	reachErr  error
)

// Require skips or fails tb when the test database is unreachable, and
// returns its URL.
func Require(tb testing.TB) string {
	tb.Helper()
	reachOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, URL())
		if err != nil {
			reachErr = err
			return
		}
		conn.Close(ctx)
	})
	if reachErr != nil {
		missing(tb, fmt.Sprintf("PostgreSQL is not reachable at %s (set %s): %v", redact(URL()), EnvDatabase, reachErr))
	}
	return URL()
}

// Backend returns host:port of the test database (skipping or failing tb
// when it is unreachable), the form proxies and the emulator relay to.
func Backend(tb testing.TB) string {
	tb.Helper()
	return HostPort(tb, Require(tb))
}

// HostPort returns host:port of a database URL, with PostgreSQL's default
// port when the URL names none.
func HostPort(tb testing.TB, dsn string) string {
	tb.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		tb.Fatalf("database URL %s: %v", redact(dsn), err)
	}
	port := u.Port()
	if port == "" {
		port = defaultPort
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// defaultPort is PostgreSQL's port, which libpq and pgx assume when a URL
// names none.
const defaultPort = "5432"

// WithParams returns dsn (a URL) with extra query parameters.
func WithParams(dsn string, kv ...string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		panic(err)
	}
	q := u.Query()
	for i := 0; i+1 < len(kv); i += 2 {
		q.Set(kv[i], kv[i+1])
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// Prefix is AppNamePrefix plus this process's id: the leak check must not
// count connections of test binaries running beside this one (go test runs
// packages in parallel).
func Prefix() string { return fmt.Sprintf("%s_%d", AppNamePrefix, os.Getpid()) }

// AppName returns a unique application_name for one test.
func AppName(tb testing.TB) string {
	name := strings.NewReplacer("/", "_", " ", "_").Replace(tb.Name())
	if len(name) > 40 {
		name = name[:40]
	}
	return fmt.Sprintf("%s_%s_%d", Prefix(), name, time.Now().UnixNano()%1e6)
}

// Admin opens a direct pgx connection to the test database for assertions.
func Admin(tb testing.TB) *pgx.Conn {
	tb.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, WithParams(Require(tb), "application_name", "rdsproxy_admin"))
	if err != nil {
		tb.Fatalf("admin connection: %v", err)
	}
	tb.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// CountConns returns how many server connections carry application_name app.
func CountConns(tb testing.TB, admin *pgx.Conn, app string) int {
	tb.Helper()
	var n int
	if err := admin.QueryRow(context.Background(),
		"SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", app).Scan(&n); err != nil {
		tb.Fatalf("count connections: %v", err)
	}
	return n
}

// WaitForLeakedConns is TestMain's leak check: it returns the connections
// this process's tests left open, after giving closed backends up to timeout
// to exit (the server removes them asynchronously).
func WaitForLeakedConns(timeout time.Duration) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		leaked, err := LeakedConns(ctx)
		if err != nil || len(leaked) == 0 {
			return leaked, err
		}
		select {
		case <-ctx.Done():
			return leaked, nil
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// LeakedConns returns the connections this process's tests left open
// (application_name starting with Prefix()), for TestMain's leak check.
func LeakedConns(ctx context.Context) ([]string, error) {
	conn, err := pgx.Connect(ctx, URL())
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SELECT application_name || ' (pid ' || pid || ')' FROM pg_stat_activity WHERE application_name LIKE $1 || '%'", Prefix())
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

func redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "(unparseable URL)"
	}
	return u.Redacted()
}

// PgBouncer is a running pgbouncer process in transaction pooling mode.
type PgBouncer struct {
	Port int
	cmd  *exec.Cmd
	dir  string
	done chan struct{}
}

// StartPgBouncer starts Debian's pgbouncer on a free loopback port in front of
// the test database, with pool_mode=transaction and poolSize server
// connections per database/user pair. Stop it with Stop.
func StartPgBouncer(tb testing.TB, poolSize int) *PgBouncer {
	tb.Helper()
	dbURL, err := url.Parse(Require(tb))
	if err != nil {
		tb.Fatalf("parse %s: %v", EnvDatabase, err)
	}
	bin, err := exec.LookPath("pgbouncer")
	if err != nil {
		for _, p := range []string{"/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"} {
			if _, e := os.Stat(p); e == nil {
				bin, err = p, nil
			}
		}
	}
	if err != nil {
		missing(tb, "pgbouncer is not installed (apt-get install pgbouncer)")
	}
	port, err := freePort()
	if err != nil {
		tb.Fatalf("find a free port: %v", err)
	}
	dir, err := os.MkdirTemp("", "rdsproxy-pgbouncer-")
	if err != nil {
		tb.Fatalf("temp dir: %v", err)
	}
	// pgbouncer refuses to run as root; it runs as postgres, which must be able
	// to write its log and pid files.
	var runAs []string
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			missing(tb, "running as root and there is no postgres user for pgbouncer to run as")
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			tb.Fatalf("chown %s: %v", dir, err)
		}
		runAs = []string{"-u", "postgres"}
	}
	pgHost, pgPort := dbURL.Hostname(), dbURL.Port()
	if pgPort == "" {
		pgPort = "5432"
	}
	ini := fmt.Sprintf(`[databases]
* = host=%s port=%s

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
auth_type = trust
auth_file = %s
pool_mode = transaction
default_pool_size = %d
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = 5000
max_db_connections = %d
server_reset_query =
ignore_startup_parameters = extra_float_digits
logfile = %s
pidfile = %s
unix_socket_dir =
`, pgHost, pgPort, port, filepath.Join(dir, "users.txt"), poolSize, poolSize,
		filepath.Join(dir, "pgbouncer.log"), filepath.Join(dir, "pgbouncer.pid"))
	user := dbURL.User.Username()
	if err := os.WriteFile(filepath.Join(dir, "users.txt"), []byte(fmt.Sprintf("%q \"\"\n", user)), 0o644); err != nil {
		tb.Fatalf("write users: %v", err)
	}
	iniPath := filepath.Join(dir, "pgbouncer.ini")
	if err := os.WriteFile(iniPath, []byte(ini), 0o644); err != nil {
		tb.Fatalf("write ini: %v", err)
	}
	args := append(runAs, iniPath)
	cmd := exec.Command(bin, args...)
	out, _ := os.Create(filepath.Join(dir, "stdout.log"))
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start pgbouncer: %v", err)
	}
	b := &PgBouncer{Port: port, cmd: cmd, dir: dir, done: make(chan struct{})}
	go func() { cmd.Wait(); out.Close(); close(b.done) }()
	// Wait until it accepts connections (bounded; not a timing assertion).
	for i := 0; ; i++ {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-b.done:
			log, _ := os.ReadFile(filepath.Join(dir, "stdout.log"))
			tb.Fatalf("pgbouncer exited at start: %s", log)
		default:
		}
		if i > 200 {
			b.Stop()
			tb.Fatalf("pgbouncer did not listen on port %d", port)
		}
		time.Sleep(25 * time.Millisecond)
	}
	return b
}

// URL returns a URL for database db through this PgBouncer, copying user and
// parameters from the test database URL.
func (b *PgBouncer) URL() string {
	u, _ := url.Parse(URL())
	u.Host = fmt.Sprintf("127.0.0.1:%d", b.Port)
	q := u.Query()
	q.Set("sslmode", "disable")
	u.RawQuery = q.Encode()
	return u.String()
}

// Stop terminates pgbouncer and removes its directory.
func (b *PgBouncer) Stop() {
	if b.cmd.Process != nil {
		b.cmd.Process.Signal(syscall.SIGTERM) // immediate shutdown; SIGINT would wait for clients
		select {
		case <-b.done:
		case <-time.After(10 * time.Second):
			b.cmd.Process.Kill()
			<-b.done
		}
	}
	os.RemoveAll(b.dir)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Restart stops pgbouncer the way Stop does (immediate shutdown: every client
// and server connection is closed) and starts it again on the same port with
// the same configuration, returning once it accepts connections. Clients see
// their connections drop, then a working service at the same address.
func (b *PgBouncer) Restart(tb testing.TB) {
	tb.Helper()
	if b.cmd.Process != nil {
		b.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-b.done:
		case <-time.After(10 * time.Second):
			b.cmd.Process.Kill()
			<-b.done
		}
	}
	out, err := os.OpenFile(filepath.Join(b.dir, "stdout.log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		tb.Fatalf("reopen pgbouncer log: %v", err)
	}
	// The listening socket may linger for a moment after the old process
	// exits: retry the start while the port is busy (bounded).
	for attempt := 0; ; attempt++ {
		cmd := exec.Command(b.cmd.Path, b.cmd.Args[1:]...)
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			out.Close()
			tb.Fatalf("restart pgbouncer: %v", err)
		}
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		b.cmd, b.done = cmd, done
		if b.waitListening() {
			break
		}
		select {
		case <-done: // exited (port still taken): try again
		default:
			b.cmd.Process.Kill()
			<-done
		}
		if attempt >= 40 {
			out.Close()
			log, _ := os.ReadFile(filepath.Join(b.dir, "stdout.log"))
			tb.Fatalf("pgbouncer did not come back on port %d: %s", b.Port, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The log file stays open for the new process; close our copy when it exits.
	go func(done <-chan struct{}) { <-done; out.Close() }(b.done)
}

// waitListening waits (bounded) until pgbouncer accepts connections, and
// reports false if it exited or never listened.
func (b *PgBouncer) waitListening() bool {
	for i := 0; i <= 200; i++ {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", b.Port), time.Second)
		if err == nil {
			c.Close()
			return true
		}
		select {
		case <-b.done:
			return false
		default:
		}
		time.Sleep(25 * time.Millisecond)
	}
	return false
}
