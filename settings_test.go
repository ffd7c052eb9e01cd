package rdsproxy

import (
	"errors"
	"os"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// settingOptions maps each DSN key that has an Option to a function making
// that Option from the key's DSN text (already known to parse).
var settingOptions = map[string]func(t *testing.T, v string) Option{
	keyPinCheck:     func(_ *testing.T, v string) Option { return WithPinCheck(PinCheckMode(v)) },
	keySessionAudit: func(_ *testing.T, v string) Option { return WithSessionAudit(v == "on") },
	keyPoolMaxConns: func(t *testing.T, v string) Option {
		n, err := strconv.Atoi(v)
		require.NoError(t, err)
		return WithMaxConns(n)
	},
	keyPoolMaxConnLifetime: func(t *testing.T, v string) Option {
		return WithMaxConnLifetime(mustDuration(t, v), DefaultMaxConnLifetimeJitter)
	},
	keyPoolMaxConnLifetimeJitter: func(t *testing.T, v string) Option {
		return WithMaxConnLifetime(DefaultMaxConnLifetime, mustDuration(t, v))
	},
	keyPoolMaxConnIdleTime:   func(t *testing.T, v string) Option { return WithMaxConnIdleTime(mustDuration(t, v)) },
	keyPoolHealthCheckPeriod: func(t *testing.T, v string) Option { return WithHealthCheckPeriod(mustDuration(t, v)) },
}

func mustDuration(t *testing.T, v string) time.Duration {
	d, err := time.ParseDuration(v)
	require.NoError(t, err)
	return d
}

// settingValues are, per key, values of the field's form: accepted ones and
// ones outside the bounds on either side.
var settingValues = map[string][]struct {
	v  string
	ok bool
}{
	keyIAM:                       {{"true", true}, {"false", true}},
	keyAWSRegion:                 {{"us-west-2", true}, {"Mars", false}},
	keyPinCheck:                  {{"off", true}, {"warn", true}, {"retire", true}, {"error", true}, {"loud", false}, {"", false}},
	keySessionAudit:              {{"on", true}, {"off", true}},
	keyPoolMaxConns:              {{"1", true}, {"10000", true}, {"0", false}, {"-1", false}, {"10001", false}},
	keyPoolMaxConnLifetime:       {{"1m", true}, {"23h", true}, {"59s", false}, {"24h", false}, {"-1m", false}},
	keyPoolMaxConnLifetimeJitter: {{"0s", true}, {"1h", true}, {"-1s", false}, {"23h30m", false}},
	keyPoolMaxConnIdleTime:       {{"1s", true}, {"24h", true}, {"999ms", false}, {"24h1s", false}},
	keyPoolHealthCheckPeriod:     {{"1s", true}, {"24h", true}, {"0s", false}, {"24h1s", false}},
	// OpenCluster's keys: NewConnector refuses a reader endpoint, valid or
	// not (TestClusterKeys covers OpenCluster).
	keyReadHost:     {{"reader.example.com", false}, {"reader.example.com:6432", false}, {"a:0", false}, {"a,b", false}},
	keyReadFallback: {{"off", true}, {"writer", false}, {"on", false}, {"", false}},
}

// TestSettingThreeWays: each key, set in the DSN, by its Option, or directly
// on a Config from ParseConfig, gives the same effective Config, or the same
// error (the value and the accepted values; the key names the DSN key, or
// the Option that set it).
func TestSettingThreeWays(t *testing.T) {
	t.Setenv("AWS_REGION", "us-east-1")
	os.Unsetenv("AWS_LAMBDA_FUNCTION_NAME")
	const base = "postgres://app:pw@db.example.com:5432/appdb"
	for _, s := range settings {
		values, ok := settingValues[s.key]
		require.True(t, ok, "no test values for %s", s.key)
		for _, tc := range values {
			t.Run(s.key+"="+tc.v, func(t *testing.T) {
				type outcome struct {
					keys          string
					errKey, value string
					accepted      string
				}
				result := func(c *Connector, err error) outcome {
					if err != nil {
						var ce *ConfigError
						require.True(t, errors.As(err, &ce), "not a ConfigError: %v", err)
						return outcome{errKey: ce.Key, value: ce.Value, accepted: ce.Accepted}
					}
					defer c.Close()
					return outcome{keys: c.Config().FormatOwnKeys()}
				}
				fromDSN := result(NewConnector(base + "?" + s.key + "=" + tc.v))

				cfg, err := ParseConfig(base)
				require.NoError(t, err)
				require.True(t, s.parse(cfg, tc.v), "%q does not parse", tc.v)
				direct := result(NewConnectorConfig(cfg))

				require.Equal(t, tc.ok, fromDSN.errKey == "", "DSN: %+v", fromDSN)
				require.Equal(t, fromDSN, direct, "DSN and a direct edit of Config.%s differ", s.field)
				if tc.ok {
					require.Contains(t, fromDSN.keys, s.key+"="+tc.v)
				} else {
					require.Equal(t, s.key, fromDSN.errKey)
				}

				opt, ok := settingOptions[s.key]
				if !ok {
					require.Empty(t, s.option, "%s names an Option the test does not know", s.key)
					return
				}
				fromOption := result(NewConnector(base, opt(t, tc.v)))
				want := fromDSN
				if !tc.ok {
					want.errKey = s.option
				}
				require.Equal(t, want, fromOption, "DSN and Option differ")
			})
		}
	}
}

// TestSettingsInREADME: every key of the settings table has a row in the
// README's key table.
func TestSettingsInREADME(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	for _, s := range settings {
		row := regexp.MustCompile("(?m)^\\| `" + regexp.QuoteMeta(s.key) + "` \\|")
		require.True(t, row.Match(readme), "README.md's key table has no row for %s", s.key)
	}
}
