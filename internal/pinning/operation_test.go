package pinning

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestFirstKeyword(t *testing.T) {
	for sql, want := range map[string]string{
		"select 1":                           "select",
		"  /* c */ -- x\n Insert into t":     "Insert",
		"/* outer /* nested */ still */ END": "END",
		"(SELECT 1) UNION (SELECT 2)":        "SELECT",
		"WITH x AS (SELECT 1) SELECT":        "WITH",
		"SELECTING":                          "SELECTING",
		"select1":                            "select1",
		"-- ping":                            "",
		"/* unterminated":                    "",
		"":                                   "",
		"'select'":                           "",
		`"select"`:                           "",
		"E'x' select":                        "",
		"$1":                                 "",
		";select":                            "",
		"1 select":                           "",
	} {
		require.Equal(t, want, FirstKeyword(sql), "%q", sql)
	}
	require.Zero(t, testing.AllocsPerRun(100, func() { FirstKeyword("/* c */ (SELECT $1::int)") }))
}
