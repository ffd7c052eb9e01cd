// Package exampletest gives the examples' tests their services: the local
// PostgreSQL (DATABASE_URL, or trust authentication on 127.0.0.1:5432) and
// the in-process RDS Proxy emulator in front of it. Outside CI a missing
// PostgreSQL skips the test with a message naming it; with CI=true it fails.
package exampletest

import (
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/rdsproxy/rdsproxy/internal/proxyemu"
	"github.com/rdsproxy/rdsproxy/internal/testdb"
)

// DefaultDatabaseURL is the library's test default: local PostgreSQL with
// trust authentication.
const DefaultDatabaseURL = testdb.DefaultDatabase

// Test credentials and region the emulator accepts. They are not real AWS
// credentials.
const (
	Region    = "us-east-1"
	AccessKey = "AKIDRDSPROXYEXAMPLE"
	SecretKey = "example/secret/key/not/a/real/one/0000000"
)

// Credentials returns static credentials with AccessKey and SecretKey.
func Credentials() aws.CredentialsProvider {
	return credentials.NewStaticCredentialsProvider(AccessKey, SecretKey, "")
}

// URL returns the test database URL: RDSPROXY_TEST_DATABASE, DATABASE_URL or
// the default (the library's test harness decides, so both agree).
func URL() string { return testdb.URL() }

// Require skips (outside CI) or fails (CI=true) tb when PostgreSQL is not
// reachable, and returns its URL.
func Require(tb testing.TB) string { return testdb.Require(tb) }

// Proxy starts the RDS Proxy emulator in front of the test database and
// returns it with an iam=true DSN for it (verifying the emulator's test CA).
// The emulator accepts tokens signed with AccessKey/SecretKey for Region.
func Proxy(tb testing.TB) (*proxyemu.Proxy, string) {
	tb.Helper()
	u, err := url.Parse(Require(tb))
	if err != nil {
		tb.Fatal(err)
	}
	port := u.Port()
	if port == "" {
		port = "5432"
	}
	pw, _ := u.User.Password()
	p, err := proxyemu.Start(proxyemu.Config{
		Region:          Region,
		Credentials:     Credentials(),
		Backend:         net.JoinHostPort(u.Hostname(), port),
		BackendPassword: pw,
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { p.Close() })
	ca := filepath.Join(tb.TempDir(), "proxy-ca.pem")
	if err := os.WriteFile(ca, p.CAPEM(), 0o600); err != nil {
		tb.Fatal(err)
	}
	q := url.Values{"iam": {"true"}, "aws_region": {Region}, "sslmode": {"verify-full"}, "sslrootcert": {ca}}
	dsn := (&url.URL{Scheme: "postgres", User: url.User(u.User.Username()), Host: p.Addr(), Path: u.Path, RawQuery: q.Encode()}).String()
	return p, dsn
}

// ProxyCluster starts two emulator doors in front of the test database, the
// second standing for the proxy's read-only endpoint (its sessions are
// read-only, so writes fail with SQLSTATE 25006), and returns an iam=true
// DSN for the first with read_host naming the second, for
// rdsproxy.OpenCluster.
func ProxyCluster(tb testing.TB) (writer, reader *proxyemu.Proxy, dsn string) {
	tb.Helper()
	u, err := url.Parse(Require(tb))
	if err != nil {
		tb.Fatal(err)
	}
	port := u.Port()
	if port == "" {
		port = "5432"
	}
	pw, _ := u.User.Password()
	start := func(readOnly bool) *proxyemu.Proxy {
		p, err := proxyemu.Start(proxyemu.Config{
			Region:          Region,
			Credentials:     Credentials(),
			Backend:         net.JoinHostPort(u.Hostname(), port),
			BackendPassword: pw,
			ReadOnly:        readOnly,
		})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { p.Close() })
		return p
	}
	writer, reader = start(false), start(true)
	ca := filepath.Join(tb.TempDir(), "proxy-cas.pem")
	if err := os.WriteFile(ca, append(writer.CAPEM(), reader.CAPEM()...), 0o600); err != nil {
		tb.Fatal(err)
	}
	q := url.Values{"iam": {"true"}, "aws_region": {Region}, "sslmode": {"verify-full"}, "sslrootcert": {ca}, "read_host": {reader.Addr()}}
	dsn = (&url.URL{Scheme: "postgres", User: url.User(u.User.Username()), Host: writer.Addr(), Path: u.Path, RawQuery: q.Encode()}).String()
	return writer, reader, dsn
}
