// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

package rdsproxy

import (
	"reflect"

	"github.com/jackc/pgx/v5"
)

// hidden keeps a value out of reach of reflection-based printing. fmt prints
// an unexported field of a user's struct by reflection, without calling its
// methods, and for a verb that does not fit a pointer (%s, %q, %x, %d) it
// follows that pointer once and prints the fields behind it, strings and
// interface values included. A func is printed as an address with every verb
// at every depth, so a value behind a closure is never printed: a Config held
// in any field of any struct cannot show its connection string's password or
// a credentials provider's keys.
type hidden[T any] func() T

func hide[T any](v T) hidden[T] { return func() T { return v } }

// get returns the hidden value, or T's zero value for a nil hidden.
func (h hidden[T]) get() (v T) {
	if h != nil {
		v = h()
	}
	return v
}

// emptyConnConfig is the base of secretFreeConnConfig: a ConnConfig made by
// pgx.ParseConfig (pgx refuses to connect with any other) whose connection
// string holds nothing secret.
const emptyConnConfig = "sslmode=disable"

// secretFreeConnConfig returns a copy of cc without its password and without
// the connection string it was parsed from, which pgx keeps in an unexported
// field that reflection-based printing shows and that may hold the password.
// The password is then set at each dial (installAuth). pgx offers no way to
// drop the kept string, so the copy starts from a ConnConfig parsed from a
// harmless string and takes every exported field of cc.
func secretFreeConnConfig(cc *pgx.ConnConfig) (*pgx.ConnConfig, error) {
	clean, err := pgx.ParseConfig(emptyConnConfig)
	if err != nil {
		return nil, pgxParseError{err}
	}
	dst, src := reflect.ValueOf(clean).Elem(), reflect.ValueOf(cc).Elem()
	for i := range dst.NumField() {
		if dst.Type().Field(i).IsExported() {
			dst.Field(i).Set(src.Field(i))
		}
	}
	clean.Password = ""
	return clean, nil
}
