package pinning

import "strings"

// This file is the pure-Go side of the analyzer: a tokenizer that follows
// PostgreSQL's lexical rules (src/backend/parser/scan.l) closely enough to tell
// code from literals and comments, the zero-allocation prefilter mayPin, and
// the statement-level classifier used when the parser is unavailable
// (CGO_ENABLED=0) or fails.
//
// Assumption: standard_conforming_strings is on (the PostgreSQL default since
// 9.1, and the RDS default), so a backslash only escapes inside E'...'.

type tokKind uint8

const (
	tokEOF    tokKind = iota
	tokIdent          // unquoted identifier or keyword
	tokQIdent         // "quoted identifier"; value is the text between the quotes
	tokUIdent         // U&"identifier"; value is the raw text between the quotes
	tokString         // any string literal, including dollar-quoted bodies
	tokNumber         // numeric literal (and any junk glued to it)
	tokParam          // $1
	tokCast           // ::
	tokPunct          // any other single byte: ( ) , ; . operators
)

type token struct {
	kind tokKind
	// esc is the Unicode escape character of a U&"..." identifier or
	// U&'...' string: '\\' unless a UESCAPE clause names another, 0 when
	// that clause is malformed (PostgreSQL rejects the statement). The
	// lexer sets the default; splitStatements applies UESCAPE clauses.
	esc        byte
	start, end int // the whole token in the source
	vs, ve     int // the value: identifier text without quotes
}

type lexer struct {
	src string
	pos int
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

func isIdentStart(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c >= 0x80
}

func isIdentCont(c byte) bool {
	return isIdentStart(c) || c >= '0' && c <= '9' || c == '$'
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// next returns the next token, skipping whitespace and comments.
func (l *lexer) next() token {
	src := l.src
	for l.pos < len(src) {
		c := src[l.pos]
		switch {
		case isSpace(c):
			l.pos++
		case c == '-' && l.pos+1 < len(src) && src[l.pos+1] == '-':
			l.pos = commentEnd(src, l.pos)
		case c == '/' && l.pos+1 < len(src) && src[l.pos+1] == '*':
			l.skipBlockComment()
		default:
			return l.scanToken()
		}
	}
	return token{kind: tokEOF, start: len(src), end: len(src)}
}

// isNewline reports whether c ends a -- comment: scan.l's newline is [\n\r],
// so a bare carriage return ends the comment and starts code.
func isNewline(c byte) bool { return c == '\n' || c == '\r' }

// commentEnd returns where the -- comment starting at i ends: at the first
// newline (which is left to be skipped as whitespace) or at the end of src.
func commentEnd(src string, i int) int {
	rest := src[i:]
	n := strings.IndexByte(rest, '\n')
	if n < 0 {
		n = len(rest)
	}
	if r := strings.IndexByte(rest[:n], '\r'); r >= 0 {
		n = r
	}
	return i + n
}

// skipBlockComment skips a comment; PostgreSQL block comments nest.
func (l *lexer) skipBlockComment() {
	src := l.src
	depth := 0
	for l.pos < len(src) {
		if src[l.pos] == '/' && l.pos+1 < len(src) && src[l.pos+1] == '*' {
			depth++
			l.pos += 2
			continue
		}
		if src[l.pos] == '*' && l.pos+1 < len(src) && src[l.pos+1] == '/' {
			depth--
			l.pos += 2
			if depth == 0 {
				return
			}
			continue
		}
		l.pos++
	}
}

func (l *lexer) scanToken() token {
	src := l.src
	start := l.pos
	c := src[start]
	switch {
	case c == '\'':
		l.pos = scanString(src, start+1, false)
		return token{kind: tokString, start: start, end: l.pos}
	case c == '"':
		end := scanQuoted(src, start+1, '"', false)
		l.pos = end
		return token{kind: tokQIdent, start: start, end: end, vs: start + 1, ve: closeQuote(src, start+1, end, '"')}
	case c == '$':
		if start+1 < len(src) && isDigit(src[start+1]) {
			l.pos = start + 1
			for l.pos < len(src) && isIdentCont(src[l.pos]) {
				l.pos++
			}
			return token{kind: tokParam, start: start, end: l.pos}
		}
		if end, ok := scanDollarQuote(src, start); ok {
			l.pos = end
			return token{kind: tokString, start: start, end: end}
		}
		l.pos++
		return token{kind: tokPunct, start: start, end: l.pos}
	case isDigit(c) || c == '.' && start+1 < len(src) && isDigit(src[start+1]):
		l.pos++
		for l.pos < len(src) && (isIdentCont(src[l.pos]) || src[l.pos] == '.') {
			l.pos++
		}
		return token{kind: tokNumber, start: start, end: l.pos}
	case isIdentStart(c):
		// String prefixes: E'' (backslash escapes), U&'' and U&"" (Unicode
		// escapes). B'', X'' and N'' need no special handling: the identifier
		// ends at the quote and the quote starts an ordinary string.
		if start+1 < len(src) {
			switch {
			case (c == 'e' || c == 'E') && src[start+1] == '\'':
				l.pos = scanString(src, start+2, true)
				return token{kind: tokString, start: start, end: l.pos}
			case (c == 'u' || c == 'U') && src[start+1] == '&' && start+2 < len(src):
				switch src[start+2] {
				case '\'':
					l.pos = scanString(src, start+3, false)
					return token{kind: tokString, esc: defaultUnicodeEscape, start: start, end: l.pos}
				case '"':
					end := scanQuoted(src, start+3, '"', false)
					l.pos = end
					return token{kind: tokUIdent, esc: defaultUnicodeEscape, start: start, end: end, vs: start + 3, ve: closeQuote(src, start+3, end, '"')}
				}
			}
		}
		l.pos++
		for l.pos < len(src) && isIdentCont(src[l.pos]) {
			l.pos++
		}
		return token{kind: tokIdent, start: start, end: l.pos, vs: start, ve: l.pos}
	case c == ':' && start+1 < len(src) && src[start+1] == ':':
		l.pos += 2
		return token{kind: tokCast, start: start, end: l.pos}
	}
	l.pos++
	return token{kind: tokPunct, start: start, end: l.pos}
}

// scanString returns the position after a string literal whose body starts
// at i, including the segments it continues into ('a'<newline>'b' is one
// literal in PostgreSQL). An escape string's later segments are in escape
// mode too, so a \' there does not end it.
func scanString(src string, i int, backslash bool) int {
	end := scanQuoted(src, i, '\'', backslash)
	for {
		q := quoteContinuation(src, end)
		if q < 0 {
			return end
		}
		end = scanQuoted(src, q+1, '\'', backslash)
	}
}

// scanQuoted returns the position after the closing quote q of a literal whose
// body starts at i; a doubled quote is an escaped quote, and with backslash a
// backslash escapes the next byte. Unterminated literals run to the end.
func scanQuoted(src string, i int, q byte, backslash bool) int {
	for i < len(src) {
		switch src[i] {
		case q:
			if i+1 < len(src) && src[i+1] == q {
				i += 2
				continue
			}
			return i + 1
		case '\\':
			if backslash {
				i += 2
				continue
			}
		}
		i++
	}
	return len(src)
}

// quoteContinuation reports where a string literal that ended at i continues:
// the index of the opening quote of the next segment when src[i:] starts
// with scan.l's {whitespace_with_newline} followed by a quote, else -1.
// whitespace_with_newline is horizontal space and -- comments, one newline,
// then any whitespace and newline-terminated -- comments; a block comment
// breaks the continuation.
func quoteContinuation(src string, i int) int {
	sawNewline := false
	for i < len(src) {
		c := src[i]
		switch {
		case c == '\'':
			if sawNewline {
				return i
			}
			return -1
		case isNewline(c):
			sawNewline = true
			i++
		case isSpace(c):
			i++
		case c == '-' && i+1 < len(src) && src[i+1] == '-':
			i = commentEnd(src, i)
			if i == len(src) {
				return -1
			}
		default:
			return -1
		}
	}
	return -1
}

// closeQuote returns where the value of a quoted token ends: before the
// closing quote, or at end for an unterminated one.
func closeQuote(src string, vs, end int, q byte) int {
	if end > vs && end-1 < len(src) && src[end-1] == q && end-1 >= vs {
		return end - 1
	}
	return end
}

// scanDollarQuote recognizes $$...$$ and $tag$...$tag$ starting at i (which
// holds '$'). It reports false when the '$' does not open a dollar quote, in
// which case PostgreSQL returns the '$' alone and rescans.
func scanDollarQuote(src string, i int) (int, bool) {
	j := i + 1
	if j < len(src) && src[j] != '$' {
		if !isIdentStart(src[j]) {
			return 0, false
		}
		for j < len(src) && isIdentStart(src[j]) || j < len(src) && isDigit(src[j]) {
			j++
		}
	}
	if j >= len(src) || src[j] != '$' {
		return 0, false
	}
	delim := src[i : j+1]
	if k := strings.Index(src[j+1:], delim); k >= 0 {
		return j + 1 + k + len(delim), true
	}
	return len(src), true
}

// is reports whether t is the keyword or unquoted identifier kw (lower-case
// ASCII). PostgreSQL folds only ASCII letters of unquoted identifiers, so
// strings.EqualFold (which folds 'ſ' to 's') would be wrong here.
func (t token) is(src, kw string) bool {
	return t.kind == tokIdent && asciiFoldEq(src[t.vs:t.ve], kw)
}

func asciiFoldEq(s, lower string) bool {
	if len(s) != len(lower) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// name reports whether t names the (lower-case) identifier n the way the
// parser would: unquoted identifiers are folded, quoted ones are exact.
func (t token) name(src, n string) bool {
	switch t.kind {
	case tokIdent:
		return asciiFoldEq(src[t.vs:t.ve], n)
	case tokQIdent:
		return src[t.vs:t.ve] == n
	case tokUIdent:
		v, ok := identValue(src, t)
		return ok && v == n
	}
	return false
}

func (t token) punct(src string, c byte) bool {
	return t.kind == tokPunct && src[t.start] == c
}

// prefilterWords are the identifiers without which no statement can pin
// (other than by size, a U&"..." identifier, or a pg_temp_N schema name: see
// mayPin). "view" is included because CREATE VIEW is reported as a possible
// implicit temporary view; UPDATE pg_settings always contains "set".
var prefilterWords = [...]string{
	"set", "reset", "set_config", "prepare", "execute", "deallocate", "discard",
	"temp", "temporary", "pg_temp", "view", "declare", "listen", "unlisten", "load",
	"nextval", "setval",
	"pg_advisory_lock", "pg_advisory_lock_shared", "pg_try_advisory_lock",
	"pg_try_advisory_lock_shared", "pg_advisory_unlock", "pg_advisory_unlock_shared",
	"pg_advisory_unlock_all",
	// Functions that run SQL handed to them as text.
	"query_to_xml", "query_to_xml_and_xmlschema", "ts_stat", "ts_rewrite",
	// UPDATE pg_settings is set_config by another name; the classifier
	// reports the statement whether or not the SET clause follows.
	"pg_settings",
}

// prefilterLongest is the length of the longest prefilter word.
const prefilterLongest = len("pg_try_advisory_lock_shared")

// prefilterByLetter groups prefilterWords by first letter, so an identifier
// is compared only with the few words that start like it.
var prefilterByLetter = func() (t [26][]string) {
	for _, w := range prefilterWords {
		t[w[0]-'a'] = append(t[w[0]-'a'], w)
	}
	return t
}()

// mayPin is the prefilter: it returns false, without allocating, when sql
// cannot pin because none of the trigger words (nor a U&"..." identifier,
// which may spell one, nor a pg_temp_N name) appears outside literals and
// comments and the text is within the size limit. It errs on the side of
// true: quoted identifiers are matched case-insensitively.
func mayPin(sql string) bool {
	if len(sql) > MaxStatementBytes {
		return true
	}
	l := lexer{src: sql}
	for {
		t := l.next()
		switch t.kind {
		case tokEOF:
			return false
		case tokUIdent:
			// Escapes (with any UESCAPE character) can spell any name;
			// such identifiers are rare, so the classifier decides.
			return true
		case tokIdent, tokQIdent:
			v := sql[t.vs:t.ve]
			if len(v) < 3 || len(v) > prefilterLongest {
				continue
			}
			c := v[0] | 0x20 // ASCII lower case for letters
			if c < 'a' || c > 'z' {
				continue
			}
			if c == 'p' && len(v) > len(tempSchemaPrefix) && asciiFoldEq(v[:len(tempSchemaPrefix)], tempSchemaPrefix) {
				return true // pg_temp_N, a temporary schema's real name
			}
			for _, w := range prefilterByLetter[c-'a'] {
				if asciiFoldEq(v, w) {
					return true
				}
			}
		}
	}
}
