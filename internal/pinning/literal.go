package pinning

import (
	"strings"
	"unicode/utf8"
)

// Decoding of identifier and string-literal values, following PostgreSQL's
// scanner (scan.l) and its Unicode-escape processing (str_udeescape in
// parser.c). The lexical classifier needs values, not just token extents, in
// two places: a U&"..." identifier may spell a pinning name with escapes, and
// the query text handed to functions like query_to_xml is itself SQL.

// defaultUnicodeEscape is the escape character of U&"..." and U&'...' when no
// UESCAPE clause follows.
const defaultUnicodeEscape = '\\'

// maxUnicodeCodePoint is the largest code point a Unicode escape may name.
const maxUnicodeCodePoint = 0x10FFFF

// identValue returns the name a parser would see for an identifier token:
// unquoted ones folded to lower case (ASCII only, like PostgreSQL), quoted
// ones with doubled quotes undone, U&"..." ones decoded with esc. It reports
// false for a token that is not an identifier or whose escapes PostgreSQL
// would reject (the whole string then fails to parse).
func identValue(src string, t token) (string, bool) {
	switch t.kind {
	case tokIdent:
		return asciiLower(src[t.vs:t.ve]), true
	case tokQIdent:
		return strings.ReplaceAll(src[t.vs:t.ve], `""`, `"`), true
	case tokUIdent:
		if t.esc == 0 {
			return "", false
		}
		v, ok := decodeUnicodeEscapes(strings.ReplaceAll(src[t.vs:t.ve], `""`, `"`), t.esc)
		return v, ok && v != ""
	}
	return "", false
}

func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if b[j] >= 'A' && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

func hexVal(c byte) (rune, bool) {
	switch {
	case c >= '0' && c <= '9':
		return rune(c - '0'), true
	case c >= 'a' && c <= 'f':
		return rune(c-'a') + 10, true
	case c >= 'A' && c <= 'F':
		return rune(c-'A') + 10, true
	}
	return 0, false
}

// hexRun decodes exactly n hex digits at s[i:].
func hexRun(s string, i, n int) (rune, bool) {
	if i+n > len(s) {
		return 0, false
	}
	var r rune
	for k := i; k < i+n; k++ {
		v, ok := hexVal(s[k])
		if !ok {
			return 0, false
		}
		r = r<<4 | v
	}
	return r, true
}

// decodeUnicodeEscapes applies str_udeescape: esc esc is a literal esc,
// esc XXXX and esc +XXXXXX name a code point (UTF-16 surrogate pairs
// combine), anything else after esc is an error, as are code point 0, values
// above U+10FFFF, unpaired surrogates and a result that is not valid UTF-8.
func decodeUnicodeEscapes(s string, esc byte) (string, bool) {
	if strings.IndexByte(s, esc) < 0 {
		return s, utf8.ValidString(s)
	}
	var b strings.Builder
	var pairFirst rune
	for i := 0; i < len(s); {
		if s[i] != esc {
			if pairFirst != 0 {
				return "", false
			}
			b.WriteByte(s[i])
			i++
			continue
		}
		var r rune
		var ok bool
		switch {
		case i+1 < len(s) && s[i+1] == esc:
			if pairFirst != 0 {
				return "", false
			}
			b.WriteByte(esc)
			i += 2
			continue
		case i+1 < len(s) && s[i+1] == '+':
			r, ok = hexRun(s, i+2, 6)
			i += 8
		default:
			r, ok = hexRun(s, i+1, 4)
			i += 5
		}
		if !ok || r == 0 || r > maxUnicodeCodePoint {
			return "", false
		}
		isFirst, isSecond := r >= 0xD800 && r <= 0xDBFF, r >= 0xDC00 && r <= 0xDFFF
		switch {
		case pairFirst != 0 && !isSecond, pairFirst == 0 && isSecond:
			return "", false
		case pairFirst != 0:
			r = (pairFirst-0xD800)<<10 + (r - 0xDC00) + 0x10000
			pairFirst = 0
		case isFirst:
			pairFirst = r
			continue
		}
		b.WriteRune(r)
	}
	if pairFirst != 0 {
		return "", false
	}
	v := b.String()
	return v, utf8.ValidString(v)
}

// validUnicodeEscape is check_uescapechar: the UESCAPE character may not be a
// hex digit, '+', a quote or whitespace.
func validUnicodeEscape(c byte) bool {
	_, hex := hexVal(c)
	return !hex && c != '+' && c != '\'' && c != '"' && !isSpace(c)
}

// uescapeChar returns the escape character a UESCAPE clause names: the
// operand must be a simple string literal ('x', E'x', $$x$$, not U&'x')
// whose value is exactly one byte that validUnicodeEscape accepts; otherwise
// PostgreSQL rejects the statement and uescapeChar reports false.
func uescapeChar(src string, t token) (byte, bool) {
	if t.kind != tokString || src[t.start] == 'u' || src[t.start] == 'U' {
		return 0, false
	}
	v, ok := stringValue(src, t)
	if !ok || len(v) != 1 || !validUnicodeEscape(v[0]) {
		return 0, false
	}
	return v[0], true
}

// stringValue returns the value of a string-literal token: a standard,
// escape (E'...'), Unicode (U&'...', decoded with t.esc) or dollar-quoted
// string, with continuation segments joined. It reports false for an
// unterminated literal or one PostgreSQL would reject, including one whose
// value holds a NUL byte (no text value can).
func stringValue(src string, t token) (string, bool) {
	v, ok := rawStringValue(src, t)
	if !ok || strings.IndexByte(v, 0) >= 0 {
		return "", false
	}
	return v, true
}

func rawStringValue(src string, t token) (string, bool) {
	s := src[t.start:t.end]
	switch {
	case s == "":
		return "", false
	case s[0] == '$':
		i := strings.IndexByte(s[1:], '$') + 2 // the tag's end
		if len(s) < 2*i || s[len(s)-i:] != s[:i] {
			return "", false
		}
		return s[i : len(s)-i], true
	case s[0] == 'e' || s[0] == 'E':
		return escapeStringValue(s[1:])
	case s[0] == 'u' || s[0] == 'U':
		if t.esc == 0 {
			return "", false
		}
		v, ok := quotedSegments(s[2:])
		if !ok {
			return "", false
		}
		return decodeUnicodeEscapes(v, t.esc)
	}
	return quotedSegments(s)
}

// quotedSegments joins the bodies of 'a' <newline> 'b' segments (s starts at
// the first quote), undoing doubled quotes.
func quotedSegments(s string) (string, bool) {
	var b strings.Builder
	i := 0
	for {
		if i >= len(s) || s[i] != '\'' {
			return "", false
		}
		end := scanQuoted(s, i+1, '\'', false)
		if end-1 <= i || s[end-1] != '\'' {
			return "", false // unterminated
		}
		b.WriteString(strings.ReplaceAll(s[i+1:end-1], "''", "'"))
		if end == len(s) {
			return b.String(), true
		}
		if i = quoteContinuation(s, end); i < 0 {
			return "", false
		}
	}
}

// escapeStringValue decodes an E'...' literal (s starts at the first quote):
// \b \f \n \r \t, octal \ooo, hex \xhh, \uXXXX, \UXXXXXXXX, and \c for any
// other c; doubled quotes; continuation segments stay in escape mode.
func escapeStringValue(s string) (string, bool) {
	var b strings.Builder
	var pairFirst rune // a pending UTF-16 high surrogate from \u
	i := 0
	for {
		if i >= len(s) || s[i] != '\'' {
			return "", false
		}
		i++
		for {
			if i >= len(s) {
				return "", false // unterminated
			}
			c := s[i]
			if c == '\'' {
				if i+1 < len(s) && s[i+1] == '\'' {
					b.WriteByte('\'')
					i += 2
					continue
				}
				i++
				break
			}
			if pairFirst != 0 && (c != '\\' || i+1 >= len(s) || s[i+1] != 'u' && s[i+1] != 'U') {
				return "", false // a high surrogate must be followed by a low one
			}
			if c != '\\' {
				b.WriteByte(c)
				i++
				continue
			}
			if i+1 >= len(s) {
				return "", false
			}
			n, ok := escapeSequence(&b, s, i+1, &pairFirst)
			if !ok {
				return "", false
			}
			i = n
		}
		if i == len(s) {
			break
		}
		if i = quoteContinuation(s, i); i < 0 {
			return "", false
		}
	}
	if pairFirst != 0 {
		return "", false
	}
	v := b.String()
	return v, utf8.ValidString(v)
}

// escapeSequence writes the value of the backslash escape whose first byte
// after the backslash is s[i], returning the index after it. A \u or \U
// high surrogate is held in *pairFirst until the low one follows.
func escapeSequence(b *strings.Builder, s string, i int, pairFirst *rune) (int, bool) {
	c := s[i]
	switch c {
	case 'b':
		b.WriteByte('\b')
	case 'f':
		b.WriteByte('\f')
	case 'n':
		b.WriteByte('\n')
	case 'r':
		b.WriteByte('\r')
	case 't':
		b.WriteByte('\t')
	case 'x':
		// \x followed by one or two hex digits; without one it is a plain x.
		n := 0
		var v rune
		for n < 2 && i+1+n < len(s) {
			d, ok := hexVal(s[i+1+n])
			if !ok {
				break
			}
			v = v<<4 | d
			n++
		}
		if n == 0 {
			b.WriteByte('x')
			return i + 1, true
		}
		b.WriteByte(byte(v))
		return i + 1 + n, true
	case 'u', 'U':
		n := 4
		if c == 'U' {
			n = 8
		}
		r, ok := hexRun(s, i+1, n)
		if !ok {
			return 0, false
		}
		isFirst, isSecond := r >= 0xD800 && r <= 0xDBFF, r >= 0xDC00 && r <= 0xDFFF
		switch {
		case r == 0 || r > maxUnicodeCodePoint:
			return 0, false
		case *pairFirst != 0 && !isSecond, *pairFirst == 0 && isSecond:
			return 0, false
		case *pairFirst != 0:
			r = (*pairFirst-0xD800)<<10 + (r - 0xDC00) + 0x10000
			*pairFirst = 0
		case isFirst:
			*pairFirst = r
			return i + 1 + n, true
		}
		b.WriteRune(r)
		return i + 1 + n, true
	default:
		if c >= '0' && c <= '7' {
			v, n := 0, 0
			for n < 3 && i+n < len(s) && s[i+n] >= '0' && s[i+n] <= '7' {
				v = v<<3 | int(s[i+n]-'0')
				n++
			}
			b.WriteByte(byte(v))
			return i + n, true
		}
		b.WriteByte(c)
	}
	return i + 1, true
}
