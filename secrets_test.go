package rdsproxy_test

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rdsproxy/rdsproxy"
	"github.com/rdsproxy/rdsproxy/internal/testiam"
)

// secretConfig returns a Config whose connection string's password is
// secretPassword and whose IAM options hold testiam.Credentials (a
// value-type provider carrying the keys).
func secretConfig(t *testing.T) *rdsproxy.Config {
	t.Helper()
	c, err := rdsproxy.NewConnector("postgres://app:"+secretPassword+"@my-proxy.proxy-abc.us-east-1.rds.amazonaws.com/appdb?iam=true",
		rdsproxy.WithCredentialsProvider(testiam.Credentials))
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c.Config()
}

// requireNoSecret fails if s contains the password or the AWS keys.
func requireNoSecret(t *testing.T, what, s string) {
	t.Helper()
	for _, secret := range []string{secretPassword, "S3cr3t", testiam.SecretKey, testiam.SecretKey[:16], testiam.AccessKey} {
		require.NotContains(t, s, secret, "%s leaks a secret: %s", what, s)
	}
}

type appByValue struct {
	Name string
	DB   rdsproxy.Config
}

type appByPointer struct {
	Name string
	DB   *rdsproxy.Config
}

type appPrivate struct {
	name string
	db   rdsproxy.Config
	ptr  *rdsproxy.Config
}

// TestConfigFormattingHasNoSecrets prints a Config by value, by pointer and
// nested in other structs (exported and unexported fields, value and
// pointer) with every verb; none may show the password or the AWS keys.
func TestConfigFormattingHasNoSecrets(t *testing.T) {
	cfg := secretConfig(t)
	values := map[string]any{
		"pointer":             cfg,
		"value":               *cfg,
		"nested value":        appByValue{Name: "billing", DB: *cfg},
		"nested pointer":      appByPointer{Name: "billing", DB: cfg},
		"pointer to nested":   &appByValue{Name: "billing", DB: *cfg},
		"slice of values":     []rdsproxy.Config{*cfg},
		"map of values":       map[string]rdsproxy.Config{"main": *cfg},
		"interface in struct": struct{ V any }{*cfg},
	}
	verbs := []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10.3v", "%t", "%f", "%T", "%p"}
	for name, v := range values {
		for _, verb := range verbs {
			requireNoSecret(t, name+" "+verb, fmt.Sprintf(verb, v))
		}
		requireNoSecret(t, name+" Sprint", fmt.Sprint(v))
		requireNoSecret(t, name+" Sprintln", fmt.Sprintln(v))
	}
	// fmt cannot call methods on an unexported field, so there it prints the
	// Config's fields by reflection, and for %s or %q it follows a pointer
	// field once: no field may lead to the password or the keys.
	for name, v := range map[string]any{
		"unexported fields":  appPrivate{name: "billing", db: *cfg, ptr: cfg},
		"pointer unexported": &appPrivate{name: "billing", db: *cfg, ptr: cfg},
	} {
		for _, verb := range verbs {
			requireNoSecret(t, name+" "+verb, fmt.Sprintf(verb, v))
		}
	}
	// Behind a pointer in an unexported field, every verb is safe.
	for _, verb := range verbs {
		requireNoSecret(t, "unexported pointer "+verb, fmt.Sprintf(verb, struct{ c *rdsproxy.Config }{cfg}))
	}
	// %s of a Config by value is its description, not pgx's ConnConfig.
	require.Contains(t, fmt.Sprintf("%s", *cfg), "rdsproxy.Config{host=my-proxy")
	require.Contains(t, fmt.Sprintf("%+v", appByValue{DB: *cfg}), "rdsproxy.Config{host=my-proxy")
	require.Contains(t, fmt.Sprintf("%x", *cfg), fmt.Sprintf("%x", cfg.String()))
}

// TestConfigLoggingHasNoSecrets logs a Config, and structs holding one, with
// slog's text and JSON handlers, and marshals them with encoding/json.
func TestConfigLoggingHasNoSecrets(t *testing.T) {
	cfg := secretConfig(t)
	var buf bytes.Buffer
	for _, h := range []slog.Handler{slog.NewTextHandler(&buf, nil), slog.NewJSONHandler(&buf, nil)} {
		l := slog.New(h)
		l.Info("config", "value", *cfg, "pointer", cfg)
		l.Info("nested", "app", appByValue{Name: "billing", DB: *cfg}, "appptr", appByPointer{DB: cfg})
		l.Info("unexported", "app", appPrivate{db: *cfg, ptr: cfg})
		l.Info("group", slog.Group("g", slog.Any("cfg", *cfg)))
		l.With("cfg", cfg).Info("with")
	}
	requireNoSecret(t, "slog", buf.String())
	require.Contains(t, buf.String(), "rdsproxy.Config{host=my-proxy")

	for _, v := range []any{cfg, *cfg, appByValue{DB: *cfg}, appByPointer{DB: cfg}} {
		b, err := json.Marshal(v)
		require.NoError(t, err)
		requireNoSecret(t, "json", string(b))
	}
}

// TestConnectionStringPasswordIsSentAtDial: the password kept apart from
// ConnConfig (so no printing of a Config can reach it) still authenticates
// every dial, and a password the caller sets on ConnConfig wins.
func TestConnectionStringPasswordIsSentAtDial(t *testing.T) {
	for _, tc := range []struct{ name, set, want string }{
		{"from the connection string", "", secretPassword},
		{"set on ConnConfig", "caller-" + secretPassword, "caller-" + secretPassword},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startPlainServer(t)
			cfg, err := rdsproxy.ParseConfig("postgres://app:" + secretPassword + "@" + srv.ln.Addr().String() + "/appdb?sslmode=disable")
			require.NoError(t, err)
			require.Empty(t, cfg.ConnConfig.Password)
			require.NotContains(t, cfg.ConnConfig.ConnString(), secretPassword)
			if tc.set != "" {
				cfg.ConnConfig.Password = tc.set
			}
			c, err := rdsproxy.NewConnectorConfig(cfg)
			require.NoError(t, err)
			db := sql.OpenDB(c)
			defer db.Close()
			require.Error(t, db.Ping()) // the look-alike hangs up after the password
			require.Contains(t, srv.received(), tc.want+"\x00")
		})
	}
}
