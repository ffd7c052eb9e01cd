// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

package rdsproxy

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
)

// Errors the driver returns, to test with [errors.Is]. Their texts can change
// between versions; their identities will not.
var (
	// ErrConfig is wrapped by every error about a DSN key or an option.
	ErrConfig = errors.New("rdsproxy: invalid configuration")

	// ErrInsecureIAM is returned when iam=true or [WithTokenFunc] is combined
	// with an sslmode that may send the token in clear text.
	ErrInsecureIAM = errors.New("rdsproxy: an IAM token (iam=true or WithTokenFunc) needs TLS that verifies the server, " +
		"but sslmode is disable, allow, prefer, require or verify-ca, which can connect without TLS or to a server whose " +
		"name was not checked, and hand it the token; remove sslmode (the default is verify-full) or set sslmode=verify-full")

	// ErrNoRegion is returned by Open and NewConnector when iam=true and no AWS
	// region can be found.
	ErrNoRegion = errors.New("rdsproxy: iam=true needs an AWS region: set the aws_region DSN key, " +
		"or AWS_REGION, or connect to an RDS host name that contains the region " +
		"(<name>.proxy-<id>.<region>.rds.amazonaws.com)")

	// ErrClosed is returned by Connect after the connector was closed.
	ErrClosed = errors.New("rdsproxy: connector is closed")

	// ErrPoolWaitTimeout is returned under plain sql.Open or sql.OpenDB (no
	// db.SetMaxOpenConns) to a caller that waited 30 seconds for a
	// connection at the cap and could not be served, whatever its context.
	// database/sql does not queue callers there; [Open], or
	// db.SetMaxOpenConns with the cap, makes it queue them under their own
	// contexts.
	ErrPoolWaitTimeout = errors.New("rdsproxy: timed out waiting for a connection at the cap under plain sql.Open, " +
		"where database/sql does not queue callers itself: open the database with rdsproxy.Open, or call " +
		"db.SetMaxOpenConns with pool_max_conns, so that callers wait under their own contexts")
)

// ConfigError describes one bad DSN key or option. It names the key, repeats the
// offending value (values of rdsproxy's own keys are never secrets; a password
// is never echoed), and lists what is accepted.
type ConfigError struct {
	Key      string // DSN key or option name, e.g. "pool_max_conns" or "WithMaxConns"
	Value    string // the rejected value, as given
	Accepted string // what would have been accepted, in words
	Err      error  // the underlying cause, if any

	hide hidden[[]string] // texts that may hold a password, masked in Error (set by ParseConfig); hidden from %#v
}

func (e *ConfigError) Error() string {
	msg := fmt.Sprintf("rdsproxy: invalid %s %q: accepted values: %s", e.Key, e.Value, e.Accepted)
	if e.Err != nil {
		msg += " (" + e.Err.Error() + ")"
	}
	if e.hide != nil {
		msg = redact(msg, e.hide())
	}
	return msg
}

// Is makes every ConfigError match [ErrConfig].
func (e *ConfigError) Is(target error) bool { return target == ErrConfig }

func (e *ConfigError) Unwrap() error { return e.Err }

// ErrBorrowTimeout is matched (errors.Is) by the error RDS Proxy sends when no
// database connection frees up within its ConnectionBorrowTimeout ("Timed-out
// waiting to acquire database connection."): from opening a connection and
// from [RetryRead]. A statement on an open connection returns the server's
// error unwrapped; [IsBorrowTimeout] matches both.
var ErrBorrowTimeout = errors.New("rdsproxy: RDS Proxy timed out waiting to borrow a database connection: " +
	"raise the proxy's MaxConnectionsPercent (or the database's max_connections) or its ConnectionBorrowTimeout, " +
	"reduce session pinning (see the pinning warnings), and keep transactions short so connections go back to the proxy sooner")

// readOnlySQLTransaction is SQLSTATE 25006, read_only_sql_transaction: a
// write sent to an Aurora reader (the proxy's read-only endpoint), or inside
// a read-only transaction.
const readOnlySQLTransaction = "25006"

// IsReadOnlyViolation reports whether err is the server refusing a write in
// a read-only session or transaction (SQLSTATE 25006), as a write sent to
// the proxy's read-only endpoint ([Cluster.Reader]) is refused. Such a
// statement belongs on [Cluster.Writer]; it was not executed, so running it
// there is safe.
func IsReadOnlyViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == readOnlySQLTransaction
}
