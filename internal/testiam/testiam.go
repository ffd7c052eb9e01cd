// Package testiam gives rdsproxy's tests IAM authentication against a real
// server: the in-process RDS Proxy emulator (internal/proxyemu) in front of
// the test PostgreSQL (internal/testdb) or a backend the test names, test
// credentials it accepts, its CA written to a file, and an iam=true DSN that
// verifies it. Everything is closed when the test ends.
package testiam

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/rdsproxy/rdsproxy/internal/proxyemu"
	"github.com/rdsproxy/rdsproxy/internal/testdb"
)

// Test credentials and region the emulator accepts. They are not real AWS
// credentials; the secrets checks look for them (and for a prefix of
// SecretKey) in every error, log and exported attribute.
const (
	Region    = "us-east-1"
	AccessKey = "AKIDRDSPROXYTEST01"
	SecretKey = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYRDSPROXYSECRET"
)

// Credentials signs tokens the emulator accepts. It is a value, as a user's
// static provider is, so a String or %#v of an option holding it would show
// the keys if anything printed it.
var Credentials = credentials.NewStaticCredentialsProvider(AccessKey, SecretKey, "")

// Option changes what Start starts.
type Option func(*settings)

type settings struct {
	backend string
	appName string
	cfg     proxyemu.Config
}

// Backend relays to hostPort (a PgBouncer, a throwaway server) instead of the
// test database.
func Backend(hostPort string) Option { return func(s *settings) { s.backend = hostPort } }

// AppName sets the DSN's application_name. The default is testdb.Prefix()
// plus "_iam", inside the leak check's reach.
func AppName(name string) Option { return func(s *settings) { s.appName = name } }

// Clock is the emulator's clock for token expiry checks (default time.Now).
func Clock(now func() time.Time) Option { return func(s *settings) { s.cfg.Now = now } }

// IdleClientTimeout closes idle client connections after d, like the proxy
// setting of that name (default off).
func IdleClientTimeout(d time.Duration) Option {
	return func(s *settings) { s.cfg.IdleClientTimeout = d }
}

// ReadOnly makes the emulator stand for the proxy's read-only endpoint.
func ReadOnly() Option { return func(s *settings) { s.cfg.ReadOnly = true } }

// Configure changes any other field of the emulator's configuration.
func Configure(f func(*proxyemu.Config)) Option { return func(s *settings) { f(&s.cfg) } }

// Start starts the emulator in front of the test database (skipping or
// failing tb when it is unreachable, as testdb does) and returns it with an
// iam=true DSN for it: verify-full TLS against the emulator's CA, Region,
// the test database's user and database name. The emulator logs in to the
// backend with the test database URL's password, if any.
func Start(tb testing.TB, opts ...Option) (*proxyemu.Proxy, string) {
	tb.Helper()
	dbURL, err := url.Parse(testdb.Require(tb))
	if err != nil {
		tb.Fatalf("test database URL: %v", err)
	}
	s := settings{appName: testdb.Prefix() + "_iam"}
	s.cfg.BackendPassword, _ = dbURL.User.Password()
	for _, o := range opts {
		o(&s)
	}
	s.cfg.Region, s.cfg.Credentials = Region, Credentials
	s.cfg.Backend = s.backend
	if s.cfg.Backend == "" {
		s.cfg.Backend = testdb.HostPort(tb, dbURL.String())
	}
	p, err := proxyemu.Start(s.cfg)
	if err != nil {
		tb.Fatalf("start the RDS Proxy emulator: %v", err)
	}
	tb.Cleanup(func() { p.Close() })
	return p, iamDSN(tb, p, dbURL.User.Username(), dbURL.Path, s.appName)
}

// iamDSN returns an iam=true DSN for the running emulator p, logging in as user
// to database path (a URL path, "/postgres") with application_name app.
func iamDSN(tb testing.TB, p *proxyemu.Proxy, user, path, app string) string {
	tb.Helper()
	u := url.URL{Scheme: "postgres", User: url.User(user), Host: p.Addr(), Path: path}
	// Fixed parameter order: tests strip "iam=true&" and the region from it
	// to get a plain DSN for raw pgx.
	u.RawQuery = fmt.Sprintf("iam=true&aws_region=%s&sslmode=verify-full&sslrootcert=%s&application_name=%s",
		url.QueryEscape(Region), url.QueryEscape(CAFile(tb, p)), url.QueryEscape(app))
	return u.String()
}

// CAFile writes the emulator's CA certificate to a file in the test's
// temporary directory and returns its path, for sslrootcert.
func CAFile(tb testing.TB, p *proxyemu.Proxy) string {
	tb.Helper()
	ca := filepath.Join(tb.TempDir(), "proxy-ca.pem")
	if err := os.WriteFile(ca, p.CAPEM(), 0o600); err != nil {
		tb.Fatalf("write the emulator's CA: %v", err)
	}
	return ca
}

// Cluster starts two emulator doors on the test database, the second
// standing for the proxy's read-only endpoint (opts apply to both), and
// returns them with an iam=true DSN for the first whose read_host names the
// second and whose sslrootcert trusts both doors' CAs, for
// rdsproxy.OpenCluster.
func Cluster(tb testing.TB, opts ...Option) (writer, reader *proxyemu.Proxy, dsn string) {
	tb.Helper()
	writer, dsn = Start(tb, opts...)
	reader, _ = Start(tb, append(opts[:len(opts):len(opts)], ReadOnly())...)
	ca := filepath.Join(tb.TempDir(), "proxy-cas.pem")
	if err := os.WriteFile(ca, append(writer.CAPEM(), reader.CAPEM()...), 0o600); err != nil {
		tb.Fatalf("write the emulators' CAs: %v", err)
	}
	u, err := url.Parse(dsn)
	if err != nil {
		tb.Fatalf("emulator DSN: %v", err)
	}
	q := u.Query()
	q.Set("sslrootcert", ca)
	q.Set("read_host", reader.Addr())
	u.RawQuery = q.Encode()
	return writer, reader, u.String()
}
