// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

package rdsproxy

import (
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/rdsproxy/rdsproxy/internal/pinning"
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

	// ErrPinning is matched (errors.Is) by the error of a statement that
	// pin_check=error refused: the statement would have pinned the RDS Proxy
	// session and was not sent to the server.
	ErrPinning = errors.New("rdsproxy: statement refused by pin_check=error: it would pin the RDS Proxy session")

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

	// ErrIAMAuth is wrapped by the error returned when RDS Proxy rejects IAM
	// authentication even with a freshly signed token.
	ErrIAMAuth = errors.New("rdsproxy: IAM authentication failed")

	// ErrUnparsable is wrapped by the error [AnalyzePinning] returns when the
	// PostgreSQL parser rejects the SQL.
	ErrUnparsable = pinning.ErrUnparsable

	// ErrBorrowTimeout is matched (errors.Is) by the error RDS Proxy sends when no
	// database connection frees up within its ConnectionBorrowTimeout ("Timed-out
	// waiting to acquire database connection."): from opening a connection and
	// from [RetryRead]. A statement on an open connection returns the server's
	// error unwrapped; [IsBorrowTimeout] matches both.
	ErrBorrowTimeout = errors.New("rdsproxy: RDS Proxy timed out waiting to borrow a database connection: " +
		"raise the proxy's MaxConnectionsPercent (or the database's max_connections) or its ConnectionBorrowTimeout, " +
		"reduce session pinning (see the pinning warnings), and keep transactions short so connections go back to the proxy sooner")
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

// borrowTimeoutText starts the error RDS Proxy sends when no database
// connection frees up within its ConnectionBorrowTimeout. No AWS source names
// its SQLSTATE, so the text is what identifies it.
const borrowTimeoutText = "Timed-out waiting to acquire database connection"

// IsBorrowTimeout reports whether err is RDS Proxy's borrow timeout. It
// matches errors that already match [ErrBorrowTimeout] (from opening a
// connection, and from [RetryRead]) and also the raw server error that a
// statement on an already open connection returns: the driver hands
// database/sql pgx's own connection, unwrapped, so it cannot rewrite the
// errors of statements.
func IsBorrowTimeout(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrBorrowTimeout) {
		return true
	}
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && strings.HasPrefix(pgErr.Message, borrowTimeoutText)
}

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

// borrowTimeoutError is the proxy's error, made to match ErrBorrowTimeout and
// to carry its advice; the original stays reachable with errors.As.
type borrowTimeoutError struct{ err error }

func (e *borrowTimeoutError) Error() string        { return ErrBorrowTimeout.Error() + ": " + e.err.Error() }
func (e *borrowTimeoutError) Is(target error) bool { return target == ErrBorrowTimeout }
func (e *borrowTimeoutError) Unwrap() error        { return e.err }

// classifyError maps an error the proxy sent into rdsproxy's sentinels. Today
// that is the borrow timeout; everything else is returned unchanged.
func classifyError(err error) error {
	if err == nil || errors.Is(err, ErrBorrowTimeout) || !IsBorrowTimeout(err) {
		return err
	}
	return &borrowTimeoutError{err: err}
}

// IsAmbiguousCommit reports whether err, returned by (*sql.Tx).Commit or by a
// statement run outside a transaction (autocommit), leaves the outcome
// unknown: the server may have committed even though the caller got an error.
// The caller must then check (for example by looking the row up by a
// client-generated id) before retrying, or the write may happen twice.
//
// It is false, meaning "not committed", when the statement never reached the
// server ([driver.ErrBadConn], errors pgx marks safe to retry, a closed
// transaction or connector, a borrow timeout, [ErrPoolWaitTimeout]), when the server answered the
// COMMIT with an ERROR (serialization failure, deferred constraint) or with
// ROLLBACK ([pgx.ErrTxCommitRollback]). It is true when the session ended
// while the COMMIT was in flight: a FATAL from the server
// (pg_terminate_backend, failover, shutdown), a broken or closed socket, or a
// context that ended after the COMMIT was sent.
//
// database/sql retries a statement only on driver.ErrBadConn, and pgx's stdlib
// returns driver.ErrBadConn only for errors it knows happened before anything
// was sent; a COMMIT is never retried. The fault suite (internal/faults)
// checks both against pg_terminate_backend under load.
func IsAmbiguousCommit(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, driver.ErrBadConn) || pgconn.SafeToRetry(err) ||
		errors.Is(err, pgx.ErrTxCommitRollback) || errors.Is(err, pgx.ErrTxClosed) ||
		errors.Is(err, sql.ErrTxDone) || errors.Is(err, sql.ErrConnDone) ||
		errors.Is(err, ErrClosed) || errors.Is(err, ErrPoolWaitTimeout) || IsBorrowTimeout(err) {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		sev := pgErr.SeverityUnlocalized
		if sev == "" {
			sev = pgErr.Severity
		}
		// ERROR: the server ran the statement and refused it; the transaction
		// is rolled back. FATAL or PANIC: the session ended around it.
		return sev != "ERROR"
	}
	return true
}
