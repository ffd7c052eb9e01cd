package rdsproxy_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rdsproxy/rdsproxy"
)

const secretPassword = "pw-S3cr3t-do-not-print"

func TestParseConfigErrors(t *testing.T) {
	base := "postgres://app:" + secretPassword + "@db.example.com:5432/appdb"
	kvBase := "host=db.example.com user=app password=" + secretPassword + " dbname=appdb"
	cases := []struct {
		dsn      string
		key      string // must appear in the message
		accepted string // must appear in the message
	}{
		{base + "?iam=yes", "iam", "true or false"},
		{base + "?aws_region=Mars", "aws_region", "us-east-1"},
		{base + "?pin_check=loud", "pin_check", "error, off, retire or warn"},
		{base + "?pool_max_conns=0", "pool_max_conns", "whole number"},
		{base + "?pool_max_conns=abc", "pool_max_conns", "whole number"},
		{base + "?pool_max_conns=99999999999", "pool_max_conns", "whole number"},
		{base + "?pool_max_conn_lifetime=25h", "pool_max_conn_lifetime", "24h"},
		{base + "?pool_max_conn_lifetime=-1s", "pool_max_conn_lifetime", "24h"},
		{base + "?pool_max_conn_lifetime=23h&pool_max_conn_lifetime_jitter=2h", "pool_max_conn_lifetime", "24h"},
		{base + "?pool_max_conn_lifetime_jitter=soon", "pool_max_conn_lifetime_jitter", "Go duration"},
		{base + "?pool_max_conn_idle_time=0s", "pool_max_conn_idle_time", "from 1s to 24h"},
		{base + "?pool_health_check_period=x", "pool_health_check_period", "from 1s to 24h"},
		{base + "?pool_health_check_period=1ns", "pool_health_check_period", "from 1s to 24h"},
		{base + "?pool_max_conn_lifetime=1ns", "pool_max_conn_lifetime", "from 1m, below 24h"},
		{base + "?pool_min_conns=2", "pool_min_conns", "pool_max_conns"},
		{base + "?iam_role=x", "iam_role", "rdsproxy's keys are"},
		{base + "?pin_checks=warn", "pin_checks", "rdsproxy's keys are"},
		{kvBase + " pool_max_conns=-3", "pool_max_conns", "whole number"},
		{kvBase + " iam=1", "iam", "true or false"},
		{base + "?iam=true&sslmode=disable&aws_region=us-east-1", "sslmode", "verify-full"},
		{base + "?iam=true&sslmode=prefer&aws_region=us-east-1", "sslmode", "verify-full"},
		{base + "?iam=true&sslmode=allow&aws_region=us-east-1", "sslmode", "verify-full"},
		{base + "?iam=true&sslmode=require&aws_region=us-east-1", "sslmode", "verify-full"},
		{base + "?iam=true&sslmode=verify-ca&aws_region=us-east-1", "sslmode", "verify-full"},
		{base + "?pool_max_conn_lifetime_jitter=2562047h47m", "pool_max_conn_lifetime_jitter", "24h"},
		{base + "?pool_max_conn_lifetime=23h&pool_max_conn_lifetime_jitter=1h", "pool_max_conn_lifetime_jitter", "24h"},
		{"postgres://app:" + secretPassword + "@db.example.com:99999/appdb", "port", ""},
		{"postgres://app:" + secretPassword + "%zz@db.example.com/appdb", "password", ""},
		{"host=h password='" + secretPassword, "unterminated", ""},
		{base + "?sslmode=bogus", "sslmode", ""},
		{base + "?default_query_exec_mode=fast", "default_query_exec_mode", ""},
	}
	for _, c := range cases {
		t.Run(c.key, func(t *testing.T) {
			_, err := rdsproxy.ParseConfig(c.dsn)
			require.Error(t, err, c.dsn)
			msg := err.Error()
			require.NotContains(t, msg, secretPassword)
			require.NotContains(t, msg, "S3cr3t")
			require.Contains(t, msg, c.key)
			require.Contains(t, msg, c.accepted)
			require.True(t, errors.Is(err, rdsproxy.ErrConfig) || errors.Is(err, rdsproxy.ErrInsecureIAM), "%v", err)

			// NewConnector and Open report the same error, before any dial.
			_, err = rdsproxy.NewConnector(c.dsn)
			require.Error(t, err)
			_, err = rdsproxy.Open(c.dsn)
			require.Error(t, err)
		})
	}
}

// TestUnknownKeyValueIsNotEchoed: an unknown key may be a guess such as
// aws_secret_access_key; its value must not appear in the error.
func TestUnknownKeyValueIsNotEchoed(t *testing.T) {
	for _, key := range []string{"aws_secret_access_key", "aws_session_token", "pool_password", "iam_token"} {
		_, err := rdsproxy.ParseConfig("postgres://app@db.example.com/appdb?" + key + "=" + secretPassword)
		require.ErrorIs(t, err, rdsproxy.ErrConfig)
		require.Contains(t, err.Error(), key)
		require.NotContains(t, err.Error(), secretPassword)
		require.NotContains(t, err.Error(), "S3cr3t")
	}
}

// TestDefaultSSLModeWithReservedCharactersInPassword: pgx accepts a URL
// password with an unescaped '#' or '?'. The default sslmode must then either
// apply with the password intact, or fail loudly; never silently fall back to
// pgx's plaintext-capable default.
func TestDefaultSSLModeWithReservedCharactersInPassword(t *testing.T) {
	t.Setenv("PGSSLMODE", "")
	for _, pw := range []string{"pa#ss", "pa?ss", "p#a?ss"} {
		dsn := "postgres://app:" + pw + "@db.example.com:5432/appdb"
		cfg, err := rdsproxy.ParseConfig(dsn)
		if err != nil {
			require.ErrorIs(t, err, rdsproxy.ErrConfig)
			require.Contains(t, err.Error(), "sslmode")
			require.NotContains(t, err.Error(), pw)
			continue
		}
		require.Equal(t, pw, rdsproxy.DialPassword(cfg), "the password must survive")
		require.NotNil(t, cfg.ConnConfig.TLSConfig)
		require.False(t, cfg.ConnConfig.TLSConfig.InsecureSkipVerify, "the verify-full default must apply")
	}
}

func TestOptionErrors(t *testing.T) {
	dsn := "postgres://app@db.example.com/appdb"
	for _, opt := range []struct {
		name string
		o    rdsproxy.Option
	}{
		{"WithMaxConns", rdsproxy.WithMaxConns(0)},
		{"WithMaxConnLifetime", rdsproxy.WithMaxConnLifetime(0, 0)},
		{"WithMaxConnLifetime", rdsproxy.WithMaxConnLifetime(23*60*60e9, 2*60*60e9)},
		{"WithMaxConnLifetime", rdsproxy.WithMaxConnLifetime(30*60e9, 1<<62)},
		{"WithMaxConnIdleTime", rdsproxy.WithMaxConnIdleTime(-1)},
		{"WithMaxConnIdleTime", rdsproxy.WithMaxConnIdleTime(time.Millisecond)},
		{"WithHealthCheckPeriod", rdsproxy.WithHealthCheckPeriod(time.Nanosecond)},
		{"WithHealthCheckPeriod", rdsproxy.WithHealthCheckPeriod(25 * time.Hour)},
		{"WithPinCheck", rdsproxy.WithPinCheck("loud")},
		{"WithLogger", rdsproxy.WithLogger(nil)},
		{"WithTracer", rdsproxy.WithTracer(nil)},
	} {
		_, err := rdsproxy.NewConnector(dsn, opt.o)
		require.Error(t, err, opt.name)
		require.Contains(t, err.Error(), opt.name)
		require.ErrorIs(t, err, rdsproxy.ErrConfig)
	}
}

func TestOwnKeysAreNotSentAsStartupParameters(t *testing.T) {
	cfg, err := rdsproxy.ParseConfig("postgres://app@db.example.com/appdb?sslmode=disable&pin_check=off&pool_max_conns=3" +
		"&pool_max_conn_lifetime=10m&pool_max_conn_lifetime_jitter=1m&pool_max_conn_idle_time=2m&pool_health_check_period=30s" +
		"&aws_region=eu-west-1&iam=false&application_name=billing&search_path=app")
	require.NoError(t, err)
	require.Equal(t, map[string]string{"application_name": "billing", "search_path": "app"}, cfg.ConnConfig.RuntimeParams)
	require.EqualValues(t, 3, cfg.MaxConns)
	require.Equal(t, rdsproxy.PinCheckOff, cfg.PinCheck)
	require.Equal(t, "eu-west-1", cfg.AWSRegion)
}

func TestDefaultSSLModeIsVerifyFull(t *testing.T) {
	t.Setenv("PGSSLMODE", "")
	for _, dsn := range []string{
		"postgres://app@db.example.com/appdb",
		"postgres://app@db.example.com/appdb?application_name=x",
		"host=db.example.com user=app dbname=appdb",
		"postgres://app@h1.example.com:5432,h2.example.com:5433/appdb",
	} {
		cfg, err := rdsproxy.ParseConfig(dsn)
		require.NoError(t, err, dsn)
		tc := cfg.ConnConfig.TLSConfig
		require.NotNil(t, tc, dsn)
		require.False(t, tc.InsecureSkipVerify, "%s: verify-full must verify the certificate", dsn)
		require.NotEmpty(t, tc.ServerName, dsn)
		for _, fb := range cfg.ConnConfig.Fallbacks {
			require.NotNil(t, fb.TLSConfig, "%s: no plaintext fallback", dsn)
		}
	}
	// An explicit sslmode wins, in both syntaxes.
	for _, dsn := range []string{"postgres://app@db.example.com/appdb?sslmode=disable", "host=db.example.com sslmode=disable"} {
		cfg, err := rdsproxy.ParseConfig(dsn)
		require.NoError(t, err)
		require.Nil(t, cfg.ConnConfig.TLSConfig, dsn)
	}
	// So does PGSSLMODE.
	t.Setenv("PGSSLMODE", "disable")
	cfg, err := rdsproxy.ParseConfig("postgres://app@db.example.com/appdb")
	require.NoError(t, err)
	require.Nil(t, cfg.ConnConfig.TLSConfig)
}

func TestConfigStringHasNoPassword(t *testing.T) {
	cfg, err := rdsproxy.ParseConfig("postgres://app:" + secretPassword + "@db.example.com/appdb?sslmode=disable")
	require.NoError(t, err)
	for _, s := range []string{cfg.String(), cfg.GoString(), cfg.FormatOwnKeys()} {
		require.NotContains(t, s, secretPassword)
		require.True(t, strings.Contains(s, "pool_max_conns=") || strings.Contains(s, "rdsproxy.Config"))
	}
}

// FuzzParseConfig: the parser never panics, never shows the password in an
// error, whether the password is quoted keyword/value text or raw in a URL's
// user information or query (where pgx may read it as other keys), and
// rdsproxy's keys round-trip: ParseConfig -> FormatOwnKeys -> ParseConfig
// yields the same settings (go-sql-driver/mysql's FuzzFormatDSN, for our keys).
func FuzzParseConfig(f *testing.F) {
	f.Add("iam=true aws_region=us-east-1 pool_max_conns=5 pool_max_conn_lifetime=30m", secretPassword)
	f.Add("pin_check=off pool_max_conn_idle_time=1m30s pool_max_conn_lifetime_jitter=0s", "abc#XYZsecret")
	f.Add("pool_health_check_period=10s application_name='a b'", "a?b&c@d e")
	f.Add("iam=maybe", "p/w:x@y")
	f.Add("pool_max_conns='7' aws_region=cn-north-1", `it's \ quoted`)
	f.Add("port=99999", "abc&def=ghi")
	f.Add(`search_path='"$user", PG_TEMP, "a""b"'`, "pg_temp")
	f.Fuzz(func(t *testing.T, extra, password string) {
		kvPassword := "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(password) + "'"
		dsn := "host=db.example.com user=app dbname=appdb sslmode=verify-full password=" + kvPassword + " " + extra
		checkSecret := len(password) >= 4 && !strings.Contains(password, "[") && !strings.Contains(password, "]") &&
			!strings.Contains("[redacted]", password)
		for _, d := range []string{
			"postgres://app:" + password + "@db.example.com:5432/appdb?" + strings.ReplaceAll(extra, " ", "&"),
			"postgres://app@db.example.com/appdb?password=" + password + "&" + strings.ReplaceAll(extra, " ", "&"),
			"host=db.example.com password=" + password + " " + extra,
		} {
			if _, err := rdsproxy.ParseConfig(d); err != nil && checkSecret && strings.Contains(err.Error(), password) {
				t.Fatalf("error contains the password %q: %v", password, err)
			}
		}
		cfg, err := rdsproxy.ParseConfig(dsn)
		if err != nil {
			if strings.Contains(err.Error(), secretPassword) || checkSecret && strings.Contains(err.Error(), password) {
				t.Fatalf("error contains the password: %v", err)
			}
			return
		}
		// A password that also spells part of the settings (port=10000 and
		// "0000") shows in their description without being leaked.
		inSettings := strings.Contains(extra+" db.example.com app appdb verify-full 5432", password)
		if checkSecret && !inSettings && (strings.Contains(cfg.String(), password) || strings.Contains(fmt.Sprintf("%v %+v %#v", *cfg, *cfg, cfg), password)) {
			t.Fatal("String contains the password")
		}
		again, err := rdsproxy.ParseConfig("host=db.example.com user=app dbname=appdb sslmode=verify-full " + cfg.FormatOwnKeys())
		if err != nil {
			t.Fatalf("re-parsing %q: %v", cfg.FormatOwnKeys(), err)
		}
		if cfg.FormatOwnKeys() != again.FormatOwnKeys() || cfg.IAM != again.IAM || cfg.MaxConns != again.MaxConns ||
			cfg.MaxConnLifetime != again.MaxConnLifetime || cfg.MaxConnLifetimeJitter != again.MaxConnLifetimeJitter ||
			cfg.MaxConnIdleTime != again.MaxConnIdleTime || cfg.PinCheck != again.PinCheck || cfg.AWSRegion != again.AWSRegion ||
			cfg.HealthCheckPeriod != again.HealthCheckPeriod {
			t.Fatalf("round trip changed settings:\n  %s\n  %s", cfg.FormatOwnKeys(), again.FormatOwnKeys())
		}
	})
}

// TestOwnKeysAreCaseSensitive: rdsproxy's keys are lower case, and a key in
// their name spaces written otherwise (IAM=true) is refused, not sent to the
// server as a startup parameter; pool_max_conns is a whole number as written.
func TestOwnKeysAreCaseSensitive(t *testing.T) {
	for _, dsn := range []string{
		"postgres://u@h/db?IAM=true",
		"postgres://u@h/db?Pin_Check=error",
		"host=h POOL_MAX_CONNS=3",
		"postgres://u@h/db?pool_max_conns=%2B5",
	} {
		_, err := rdsproxy.ParseConfig(dsn)
		require.ErrorIs(t, err, rdsproxy.ErrConfig, dsn)
	}
}
