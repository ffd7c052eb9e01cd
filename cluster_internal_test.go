package rdsproxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// FuzzParseReadHost: any read_host text is either refused with a
// ConfigError naming the key, or read as a host (and port) that joins back
// into an endpoint pgx can dial.
func FuzzParseReadHost(f *testing.F) {
	for _, s := range []string{"reader.example", "reader.example:6432", "[::1]:5433", "::1", "[::1]", "a:b:c", "", ":", "[", "a:0", "a:65536"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		host, port, err := parseReadHost(v)
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Key != keyReadHost {
				t.Fatalf("parseReadHost(%q): %v is not a ConfigError for read_host", v, err)
			}
			return
		}
		if host == "" {
			t.Fatalf("parseReadHost(%q) accepted an empty host", v)
		}
		if port != 0 {
			h, p, err := net.SplitHostPort(net.JoinHostPort(host, strconv.Itoa(int(port))))
			if err != nil || h != host || p != strconv.Itoa(int(port)) {
				t.Fatalf("parseReadHost(%q) = %q, %d: does not join back", v, host, port)
			}
		}
	})
}

// TestReaderPoolName: the reader pool's name is its endpoint's default name,
// or the writer's followed by -reader when the two would be equal; the TLS
// server name follows the reader's host.
func TestReaderPoolName(t *testing.T) {
	for _, tc := range []struct {
		dsn, opt, host string
		port           uint16
		want           string
	}{
		{"postgres://app@w.example:5432/appdb?sslmode=verify-full", "", "r.example", 0, "r.example:5432/appdb"},
		{"postgres://app@w.example:5432/appdb?sslmode=verify-full", "", "r.example", 6432, "r.example:6432/appdb"},
		{"postgres://app@w.example:5432/appdb?sslmode=verify-full", "", "w.example", 0, "w.example:5432/appdb-reader"},
		{"postgres://app@w.example:5432/appdb?sslmode=verify-full", "orders", "r.example", 0, "orders-reader"},
	} {
		cfg, err := ParseConfig(tc.dsn)
		if err != nil {
			t.Fatal(err)
		}
		if tc.opt != "" {
			cfg.PoolName = tc.opt
		}
		r, err := readerConfig(cfg, tc.host, tc.port)
		if err != nil {
			t.Fatal(err)
		}
		if r.PoolName != tc.want {
			t.Errorf("%s with read_host %s:%d, pool name %q: reader pool %q, want %q", tc.dsn, tc.host, tc.port, tc.opt, r.PoolName, tc.want)
		}
		if sn := r.ConnConfig.TLSConfig.ServerName; sn != tc.host {
			t.Errorf("reader TLS server name %q, want %q", sn, tc.host)
		}
		if cfg.ConnConfig.Host != "w.example" || cfg.ConnConfig.TLSConfig.ServerName != "w.example" {
			t.Errorf("readerConfig changed the writer's Config")
		}
	}
}

// TestReaderUnavailable: which errors from opening a reader connection send
// reads to the writer under read_fallback=writer. The proxy's answer for a
// read-only endpoint without a reader target cannot be caused locally, so
// its classes are checked on constructed server errors.
func TestReaderUnavailable(t *testing.T) {
	fatal := func(code, msg string) error {
		return &pgconn.PgError{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: code, Message: msg}
	}
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{refused, true},
		{fmt.Errorf("connect: %w", refused), true},
		{io.ErrUnexpectedEOF, true},
		{fatal("08006", "no target"), true},
		{fatal("53300", "Timed-out waiting to acquire database connection."), true},
		{classifyError(fatal("53300", "Timed-out waiting to acquire database connection.")), true},
		{fatal("57P03", "the database system is starting up"), true},
		{fatal("XX000", "internal error"), true},
		{fatal("28P01", "IAM authentication failed for user app."), false},
		{fmt.Errorf("%w: %w", ErrIAMAuth, fatal("28P01", "IAM authentication failed")), false},
		{fatal("3D000", "database \"x\" does not exist"), false},
		{ErrClosed, false},
		{ErrPoolWaitTimeout, false},
		{&tls.CertificateVerificationError{Err: errors.New("x509: unknown authority")}, false},
		{errors.New("something else"), false},
	} {
		if got := readerUnavailable(tc.err); got != tc.want {
			t.Errorf("readerUnavailable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
