// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

package rdsproxy

import (
	"strings"
)

// keySearchPath is PostgreSQL's search_path, sent as a startup parameter when
// the DSN has it. PostgreSQL matches parameter names without regard to case.
const keySearchPath = "search_path"

const acceptedSearchPath = "a search_path whose first schema is not pg_temp: PostgreSQL creates unqualified " +
	"tables, views, sequences and functions in the first schema of the path that exists, so with pg_temp first " +
	"(or after only \"$user\", which usually names no schema) every plain CREATE makes a temporary object, which " +
	"pins the RDS Proxy session; put pg_temp after a schema that exists (e.g. app, public, pg_temp) or drop it " +
	"(PostgreSQL searches pg_temp first for tables anyway when the path does not list it)"

// checkSearchPath rejects a search_path startup parameter whose creation
// target would be the session's temporary schema.
func checkSearchPath(params map[string]string) error {
	for k, v := range params {
		if strings.EqualFold(k, keySearchPath) && createsInTempSchema(v) {
			return &ConfigError{Key: k, Value: v, Accepted: acceptedSearchPath}
		}
	}
	return nil
}

// createsInTempSchema reports whether PostgreSQL would create unqualified
// objects in the temporary schema under search_path sp: pg_temp (or an
// explicit pg_temp_N) comes before every schema other than "$user". Schemas
// named before it are assumed to exist; "$user" is not, since a schema per
// login is rare. A path PostgreSQL cannot parse is left to the server.
func createsInTempSchema(sp string) bool {
	names, ok := splitIdentifiers(sp)
	if !ok {
		return false
	}
	for _, n := range names {
		switch {
		case isTempSchema(n):
			return true
		case n == "$user":
			continue
		default:
			return false
		}
	}
	return false
}

// isTempSchema reports whether n names a temporary schema: the alias pg_temp
// or a session's own pg_temp_N.
func isTempSchema(n string) bool {
	digits, ok := strings.CutPrefix(n, "pg_temp")
	if !ok {
		return false
	}
	if digits == "" {
		return true
	}
	digits, ok = strings.CutPrefix(digits, "_")
	if !ok || digits == "" {
		return false
	}
	for _, r := range digits {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// splitIdentifiers splits a comma-separated list of identifiers the way
// PostgreSQL reads search_path (SplitIdentifierString): whitespace around
// names is ignored, a double-quoted name is taken literally ("" is a quote),
// an unquoted one is folded to lower case.
func splitIdentifiers(s string) ([]string, bool) {
	var names []string
	i := 0
	skipSpace := func() {
		for i < len(s) && strings.IndexByte(" \t\n\r\f\v", s[i]) >= 0 {
			i++
		}
	}
	skipSpace()
	if i == len(s) {
		return nil, true // an empty path
	}
	for {
		var name strings.Builder
		if s[i] == '"' {
			i++
			for {
				j := strings.IndexByte(s[i:], '"')
				if j < 0 {
					return nil, false // unterminated quote
				}
				name.WriteString(s[i : i+j])
				i += j + 1
				if i < len(s) && s[i] == '"' {
					name.WriteByte('"')
					i++
					continue
				}
				break
			}
		} else {
			start := i
			for i < len(s) && s[i] != ',' && strings.IndexByte(" \t\n\r\f\v", s[i]) < 0 {
				i++
			}
			if i == start {
				return nil, false // empty name
			}
			name.WriteString(asciiLower(s[start:i]))
		}
		names = append(names, name.String())
		skipSpace()
		if i == len(s) {
			return names, true
		}
		if s[i] != ',' {
			return nil, false
		}
		i++
		skipSpace()
		if i == len(s) {
			return nil, false // trailing comma
		}
	}
}

// asciiLower folds A-Z only, as PostgreSQL folds unquoted identifiers in a
// UTF-8 database.
func asciiLower(s string) string {
	return strings.Map(func(r rune) rune {
		if 'A' <= r && r <= 'Z' {
			return r + ('a' - 'A')
		}
		return r
	}, s)
}
