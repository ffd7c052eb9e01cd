// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

package rdsproxy

import (
	"errors"
	"net/url"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// minRedactedRun is the shortest run of characters shared with a possible
// password that redaction masks in an error. Shorter runs (a quote, a port
// number, "db") are too common in error texts to mean anything; four
// characters of a password are already worth hiding.
const minRedactedRun = 4

// redactionMask replaces what redaction hides.
const redactionMask = "[redacted]"

// redactDSNError makes an error from parsing dsn safe to show: pgx's own
// messages quote the connection string with a best-effort redaction, and its
// inner errors quote pieces of it (a port, a query key), which for a
// password pgx read differently from its author (an unescaped '/', '&' or
// space) can be part of that password. The result never contains
// minRedactedRun or more consecutive characters of any text that may be a
// password, and wraps only ErrConfig: pgx's error, with its ConnString
// field, is not reachable through it.
func redactDSNError(dsn string, err error) error {
	if err == nil {
		return nil
	}
	var regions []string
	if cfg, perr := pgconn.ParseConfig(dsn); perr == nil {
		// pgx read the string: its password is the one to hide.
		regions = append(regions, cfg.Password)
	} else {
		regions = possiblePasswords(dsn)
	}
	var pe pgxParseError
	if errors.As(err, &pe) {
		return &ConfigError{Key: "connection string", Value: "(not shown)",
			Accepted: "a URL or keyword/value connection string that pgx can parse",
			Err:      errors.New(redact(pgxMessage(pe.err), regions)), hide: hide(regions)}
	}
	var ce *ConfigError
	if errors.As(err, &ce) {
		out := *ce
		out.Key = redact(ce.Key, regions)
		out.Value = redact(ce.Value, regions)
		if ce.Err != nil {
			out.Err = errors.New(redact(pgxMessage(ce.Err), regions))
		}
		out.hide = hide(regions)
		return &out
	}
	// rdsproxy's own errors, such as ErrInsecureIAM, quote nothing; a
	// password that happens to spell part of their text is hidden all the
	// same.
	return &redactedError{err: err, hide: hide(regions)}
}

// redactedError is err with its text redacted.
type redactedError struct {
	err  error
	hide hidden[[]string] // hidden from %#v, like ConfigError's
}

func (e *redactedError) Error() string { return redact(e.err.Error(), e.hide()) }
func (e *redactedError) Unwrap() error { return e.err }

// pgxParseError marks an error from pgx's parsers, which quote the
// connection string and pieces of it.
type pgxParseError struct{ err error }

func (e pgxParseError) Error() string { return e.err.Error() }

// pgxMessage is err's text without the connection string pgx quotes in it.
func pgxMessage(err error) string {
	var pe *pgconn.ParseConfigError
	if !errors.As(err, &pe) {
		return err.Error()
	}
	bare := *pe
	bare.ConnString = ""
	return strings.TrimPrefix(bare.Error(), "cannot parse ``: ")
}

// possiblePasswords returns every part of dsn that may be meant as a
// password, generously, for a string pgx could not parse: in a URL, all
// between the scheme and the last '@'; in either form, everything after the
// first "password" key, to the end (which holds every later one). Each comes
// raw and decoded once, as pgx decodes (percent-decoding for URLs, backslash
// escapes for quoted keyword/value text). A handful of regions, whatever
// the input: redact's cost is linear in their total length.
func possiblePasswords(dsn string) []string {
	regions := passwordRegions(dsn)
	if decoded, err := url.PathUnescape(dsn); err == nil && decoded != dsn {
		regions = append(regions, passwordRegions(decoded)...)
	}
	for _, r := range regions {
		if strings.Contains(r, `\`) {
			regions = append(regions, strings.ReplaceAll(r, `\`, ""))
		}
	}
	return regions
}

// passwordRegions is possiblePasswords for one reading of the text.
func passwordRegions(dsn string) []string {
	regions := userinfoRegions(dsn)
	if j := strings.Index(strings.ToLower(dsn), "password"); j >= 0 {
		regions = append(regions, dsn[j+len("password"):])
	}
	return regions
}

// userinfoRegions returns a URL's text between the scheme and the last '@',
// which holds the user information however the URL is read.
func userinfoRegions(dsn string) []string {
	rest, ok := strings.CutPrefix(dsn, "postgresql://")
	if !ok {
		rest, ok = strings.CutPrefix(dsn, "postgres://")
	}
	if !ok {
		return nil
	}
	i := strings.LastIndexByte(rest, '@')
	if i < 0 {
		return nil
	}
	regions := []string{rest[:i]}
	if decoded, err := url.PathUnescape(rest[:i]); err == nil && decoded != rest[:i] {
		regions = append(regions, decoded)
	}
	return regions
}

// maxRedactedText bounds the error text redact works on (longer text is cut
// first): pgx can quote a whole malformed key, and an error need not repeat
// kilobytes of a connection string.
const maxRedactedText = 512

// redact replaces in s every run of minRedactedRun or more characters that
// also occurs in one of regions with redactionMask. The output therefore
// holds no such run at all outside the masks.
func redact(s string, regions []string) string {
	if len(s) > maxRedactedText {
		s = s[:maxRedactedText] + "..."
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		n := longestSharedPrefix(s[i:], regions)
		if n >= minRedactedRun {
			b.WriteString(redactionMask)
			i += n
			continue
		}
		b.WriteByte(s[i])
		i++
	}
	return b.String()
}

// longestSharedPrefix returns the length of the longest prefix of s found in
// any of regions, or 0 when even minRedactedRun bytes are not found.
func longestSharedPrefix(s string, regions []string) int {
	if len(s) < minRedactedRun {
		return 0
	}
	best := 0
	for _, r := range regions {
		if !strings.Contains(r, s[:minRedactedRun]) {
			continue
		}
		// Binary search: a prefix of a prefix found in r is found in r too.
		lo, hi := minRedactedRun, min(len(s), len(r)) // s[:lo] is in r
		for lo < hi {
			mid := (lo + hi + 1) / 2
			if strings.Contains(r, s[:mid]) {
				lo = mid
			} else {
				hi = mid - 1
			}
		}
		best = max(best, lo)
	}
	return best
}
