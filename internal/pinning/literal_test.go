package pinning

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestStringValue decodes the literal forms query text may come in, the way
// PostgreSQL's scanner does; ok false where PostgreSQL rejects the literal.
func TestStringValue(t *testing.T) {
	for _, tc := range []struct {
		lit, want string
		ok        bool
	}{
		{`'it''s'`, "it's", true},
		{"'a'\n'b'", "ab", true},
		{"'a' -- c\n  -- d\n'b'", "ab", true},
		{"'a'\r'b'", "ab", true},
		{`E'a\'b\\c\n\x41\101\u00e9\U0001F600\q'`, "a'b\\c\nAAé\U0001F600q", true},
		{`E'\uD83D\uDE00'`, "\U0001F600", true},
		{"E'\\''\n'\\''", "''", true},
		{`E'\uD83D'`, "", false}, // unpaired surrogate
		{`E'\u00'`, "", false},
		{`E'\0'`, "", false}, // NUL
		{`$$a'b$$`, "a'b", true},
		{`$t$ $$ $t$`, " $$ ", true},
		{`$t$ x`, "", false},
		{`U&'\0041\+000042!'`, "AB!", true},
		{`U&'\\'`, `\`, true},
		{`U&'\0000'`, "", false},
		{`'open`, "", false},
	} {
		l := lexer{src: tc.lit}
		tok := l.next()
		require.Equal(t, tokString, tok.kind, "%q", tc.lit)
		require.Equal(t, len(tc.lit), tok.end, "%q is one token", tc.lit)
		v, ok := stringValue(tc.lit, tok)
		require.Equal(t, tc.ok, ok, "%q", tc.lit)
		require.Equal(t, tc.want, v, "%q", tc.lit)
	}
}

func TestUescapeChar(t *testing.T) {
	for _, tc := range []struct {
		op   string
		want byte
	}{
		{"'!'", '!'}, {"E'\\\\'", '\\'}, {"$$#$$", '#'}, {"'!'\n''", '!'},
		{"'a'", 0}, {"'+'", 0}, {"' '", 0}, {`'"'`, 0}, {"''''", 0}, {"'!!'", 0}, {"U&'!'", 0}, {"'é'", 0},
	} {
		l := lexer{src: tc.op}
		c, ok := uescapeChar(tc.op, l.next())
		require.Equal(t, tc.want != 0, ok, "%q", tc.op)
		require.Equal(t, tc.want, c, "%q", tc.op)
	}
}

// TestPrefilterAllocsOnTraps: the scanner rules added for carriage-return
// comments and string continuations keep the prefilter allocation-free.
func TestPrefilterAllocsOnTraps(t *testing.T) {
	for _, sql := range []string{
		"SELECT 1 -- note\r, 2 -- more\n FROM t",
		"SELECT E'a'\n'\\'b', 'c' -- x\r\n'd' FROM t",
		"SELECT $tag$ x $tag$, /* /* n */ */ 1 FROM t WHERE a = 'it''s'",
	} {
		require.False(t, mayPin(sql), "%q", sql)
		require.Zero(t, testing.AllocsPerRun(100, func() { mayPin(sql) }), "%q", sql)
	}
}
