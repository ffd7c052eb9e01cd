package pinning

import (
	"strings"
	"unicode/utf8"
)

// MaxFingerprintBytes bounds the text [Fingerprint] returns: enough to
// recognise a statement in a log line, short enough that a 1 MB INSERT does not
// become one.
const MaxFingerprintBytes = 200

// maxFingerprintInput is how much of sql [Fingerprint] reads: a statement
// longer than this pins for its size (MaxStatementBytes), and its first 16 KB
// identify it well enough for a log line. Reading no further keeps the cost of
// a multi-megabyte INSERT at that of a 16 KB one.
const maxFingerprintInput = MaxStatementBytes

// Fingerprint returns sql normalised for logs, and a 64-bit FNV-1a hash of the
// normalised text (before truncation, so that two long statements with the
// same first 200 bytes still differ). Only the first [MaxStatementBytes] of
// sql are read: statements that agree that far share the fingerprint and the
// hash, and a text cut there ends with "...".
//
// The text never contains a literal value: comments are dropped, every string
// (escape, Unicode, bit and hex strings and dollar-quoted bodies) and number
// becomes ?, and in a SET statement everything after = or TO becomes ?,
// because SET values may be bare words (SET search_path TO tenant_42) and a
// per-tenant value should not make a new statement. Whitespace runs become
// one space; identifiers, keywords, operators and $n placeholders are kept as
// written. The text is truncated to [MaxFingerprintBytes] on a UTF-8 boundary.
func Fingerprint(sql string) (text string, hash uint64) {
	var b strings.Builder
	// Keep a few bytes past the limit so truncate can find a rune boundary
	// and mark the cut; never copy more than that of a huge statement.
	const keep = MaxFingerprintBytes + utf8.UTFMax
	b.Grow(min(len(sql), keep))
	hash = fnvOffset64
	cut := len(sql) > maxFingerprintInput
	if cut {
		end := maxFingerprintInput // on a UTF-8 boundary, so the text stays valid
		for end > maxFingerprintInput-utf8.UTFMax && !utf8.RuneStart(sql[end]) {
			end--
		}
		sql = sql[:end]
	}
	l := lexer{src: sql}
	prevEnd := -1
	first := true   // the next token starts a statement
	inSet := false  // the current statement starts with SET
	setVal := false // past the = or TO of a SET
	emit := func(s string) {
		for i := 0; i < len(s); i++ {
			hash = (hash ^ uint64(s[i])) * fnvPrime64
		}
		if room := keep - b.Len(); room > 0 {
			b.WriteString(s[:min(len(s), room)])
		}
	}
	for {
		t := l.next()
		if t.kind == tokEOF {
			break
		}
		if prevEnd >= 0 && t.start > prevEnd {
			emit(" ") // the source had whitespace or a comment here
		}
		prevEnd = t.end
		tok := sql[t.start:t.end]
		switch {
		case t.punct(sql, ';'):
			first, inSet, setVal = true, false, false
			emit(tok)
			continue
		case first:
			first = false
			inSet = t.is(sql, "set")
		case inSet && !setVal && (t.punct(sql, '=') || t.is(sql, "to")):
			setVal = true
			emit(tok)
			continue
		}
		switch {
		case t.kind == tokString, t.kind == tokNumber:
			tok = "?"
		case setVal && (t.kind == tokIdent || t.kind == tokQIdent || t.kind == tokUIdent):
			tok = "?"
		}
		emit(tok)
	}
	text = truncate(b.String(), MaxFingerprintBytes)
	if cut && !strings.HasSuffix(text, "...") {
		text += "..." // the statement goes on
	}
	return text, hash
}

// FNV-1a, inline so that hashing a token does not allocate.
const (
	fnvOffset64 = 14695981039346656037
	fnvPrime64  = 1099511628211
)
