package rdsproxy_test

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/rdsproxy/rdsproxy"
)

// TestPasswordsWithReservedCharactersReadAsPgxReadsThem: passwords holding
// '#', '?', '&', '@' or spaces, in a URL's user information or query or in
// quoted keyword/value text, are read exactly as pgx reads them, with the
// verify-full default applied.
func TestPasswordsWithReservedCharactersReadAsPgxReadsThem(t *testing.T) {
	t.Setenv("PGSSLMODE", "")
	for _, dsn := range []string{
		"postgres://app@db.example.com:5432/appdb?password=abc#XYZsecret",
		"postgres://app@db.example.com/appdb?application_name=x&password=abc#XYZ?secret",
		"postgres://app@db.example.com/appdb?password=a@b#c",
		"postgres://app:abc#XYZsecret@db.example.com/appdb",
		"postgres://app:a?b&c#d@db.example.com:5432/appdb?application_name=x",
		"postgres://app:a%23b%3Fc%26d%40e%20f@db.example.com/appdb",
		"postgres://app:pw@db.example.com/appdb?password=a%23b%26c%40d%20e",
		"postgres://app:a@b@db.example.com/appdb", // pgx: password "a", host "b@db.example.com"
		"postgres://app:abc#XYZ@db.example.com/appdb?",
		"postgres://app:abc#XYZ@db.example.com/appdb?application_name=x&",
		"postgres://app:abc#XYZ@db.example.com",
		"postgres://app:abc#X?YZ@h1.example.com:5432,h2.example.com:5433/appdb",
		"postgres://app@[::1]:5432/appdb?password=a#b",
		`host=db.example.com user=app password='a b#c?d&e@f\'g' dbname=appdb`,
		`host=db.example.com user=app password=abc#XYZ?s&e@t dbname=appdb`,
	} {
		want, err := pgconn.ParseConfig(dsn)
		require.NoError(t, err, dsn)
		cfg, err := rdsproxy.ParseConfig(dsn)
		require.NoError(t, err, dsn)
		got := cfg.ConnConfig
		require.Equal(t, want.Password, rdsproxy.DialPassword(cfg), dsn)
		require.Equal(t, want.Host, got.Host, dsn)
		require.Equal(t, want.Port, got.Port, dsn)
		require.Equal(t, want.Database, got.Database, dsn)
		require.Equal(t, want.User, got.User, dsn)
		require.NotNil(t, got.TLSConfig, dsn)
		require.False(t, got.TLSConfig.InsecureSkipVerify, "%s: the verify-full default applies", dsn)
		for _, fb := range got.Fallbacks {
			require.NotNil(t, fb.TLSConfig, dsn)
			require.False(t, fb.TLSConfig.InsecureSkipVerify, dsn)
		}
	}
	// The reported case: pgx reads the whole value as the password.
	cfg, err := rdsproxy.ParseConfig("postgres://app@db.example.com:5432/appdb?password=abc#XYZsecret")
	require.NoError(t, err)
	require.Equal(t, "abc#XYZsecret", rdsproxy.DialPassword(cfg))

	// An explicit sslmode is kept wherever it is, and '#' hides none.
	cfg, err = rdsproxy.ParseConfig("postgres://app:a#b@db.example.com/appdb?password=x#y&sslmode=disable")
	require.NoError(t, err)
	require.Nil(t, cfg.ConnConfig.TLSConfig)
	require.Equal(t, "x#y", rdsproxy.DialPassword(cfg))
}

// TestBadDSNErrorsHideThePassword: connection strings pgx or rdsproxy
// refuse, with the secret in the user information, the query (read by pgx
// as part of another key, or after a '#'), or quoted keyword/value text: the
// error shows no part of the secret.
func TestBadDSNErrorsHideThePassword(t *testing.T) {
	t.Setenv("PGSSLMODE", "")
	const secret = "XYZsecret"
	for _, dsn := range []string{
		"postgres://app:" + secret + "@db.example.com:99999/appdb",
		"postgres://app:abc/" + secret + "@db.example.com/appdb",
		"postgres://app:abc@" + secret + "@db.example.com:99999/appdb",
		"postgres://app:abc " + secret + "@db.example.com/appdb",
		"postgres://app:abc%zz" + secret + "@db.example.com/appdb",
		"postgres://app:" + secret + "@[::1/appdb",
		"postgres://app:" + secret + "@h1:5432,h2:x/appdb",
		"postgres://app@db.example.com/appdb?password=abc&" + secret,
		"postgres://app@db.example.com/appdb?password=abc&" + secret + "&sslmode=disable",
		"postgres://app@db.example.com/appdb?password=abc=" + secret,
		"postgres://app@db.example.com/appdb?password=abc " + secret,
		"postgres://app@db.example.com/appdb?password=abc%zz" + secret,
		"postgres://app@db.example.com/appdb?sslmode=bogus#" + secret,
		"postgres://app@db.example.com/appdb?password=abc#" + secret + "&pool_max_conns=0",
		"postgres://app@db.example.com/appdb?password=abc#" + secret + "&pool_max_connz=1",
		"postgres://app@db.example.com/appdb?password=abc#" + secret + "&connect_timeout=x",
		"postgres://app@db.example.com/appdb?password=abc#" + secret + "&default_query_exec_mode=x",
		"postgres://app@db.example.com/appdb?password=abc&" + secret + "=1&pool_max_conns=0",
		"postgres://app@db.example.com/appdb?pass%77ord=abc&" + secret,
		"host=db.example.com password='abc " + secret,
		"host=db.example.com password=abc " + strings.Repeat(secret, 10000), // pgx quotes the whole "key"
		"host=db.example.com password=abc " + secret,
		"host=db.example.com password=abc " + secret + " port=x",
		`host=db.example.com password='abc\' ` + secret + `' port=99999`,
		"host=db.example.com password=" + secret + " target_session_attrs=" + secret,
		"host=db.example.com password=" + secret + ` search_path='"$user",pg_temp,` + secret + "_x'",
		"host=db.example.com password=" + secret + " search_path=pg_temp," + secret,
	} {
		_, err := rdsproxy.ParseConfig(dsn)
		require.Error(t, err, dsn)
		require.ErrorIs(t, err, rdsproxy.ErrConfig, dsn)
		for _, part := range []string{secret, secret[:4], secret[len(secret)-4:], "Zsec"} {
			require.NotContains(t, err.Error(), part, "%s: %v", dsn, err)
			// Printed field by field too, as a logger's %+v or %#v does.
			for _, verb := range []string{"%+v", "%#v"} {
				require.NotContains(t, fmt.Sprintf(verb, err), part, "%s: %s", dsn, verb)
			}
		}
		var pe *pgconn.ParseConfigError
		require.False(t, errorsAs(err, &pe), "pgx's error, with the raw connection string, must not be reachable: %s", dsn)
	}
	// The error still says what is wrong.
	_, err := rdsproxy.ParseConfig("postgres://app:" + secret + "@db.example.com:99999/appdb")
	require.Contains(t, err.Error(), "invalid port")
	_, err = rdsproxy.ParseConfig("postgres://app:" + secret + "@db.example.com/appdb?pool_max_conns=0")
	require.Contains(t, err.Error(), "pool_max_conns")
}

func errorsAs(err error, target **pgconn.ParseConfigError) bool {
	for ; err != nil; err = unwrapOne(err) {
		if pe, ok := err.(*pgconn.ParseConfigError); ok {
			*target = pe
			return true
		}
		if strings.Contains(err.Error(), "cannot parse `") {
			return true
		}
	}
	return false
}

func unwrapOne(err error) error {
	if u, ok := err.(interface{ Unwrap() error }); ok {
		return u.Unwrap()
	}
	return nil
}

// TestMalformedDSNCostIsBounded: an erroneous connection string costs work
// in proportion to its length, however it is built (here, layers of
// percent-encoding and repeated password keys, which once made redaction
// allocate gigabytes), and one over the limit is refused unread.
func TestMalformedDSNCostIsBounded(t *testing.T) {
	for name, dsn := range map[string]string{
		"percent layers":  "postgres://u:%" + strings.Repeat("25", 30000) + "@h:x/db",
		"password keys":   "host=h port=x " + strings.Repeat("password=XYZsecret ", 3000),
		"over the limit":  "postgres://u:" + strings.Repeat("s", 70<<10) + "@h/db",
		"keyword quoting": "host=h password='" + strings.Repeat(`\'`, 30000),
	} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := rdsproxy.ParseConfig(dsn)
		require.ErrorIs(t, err, rdsproxy.ErrConfig, name)
		_ = err.Error()
		_ = err.Error()
		runtime.ReadMemStats(&after)
		// A few copies of the string per step is linear; gigabytes are not.
		require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(64<<20), "%s: bytes allocated", name)
		require.NotContains(t, err.Error(), "XYZsecret", name)
	}
}
