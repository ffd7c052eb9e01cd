// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

package rdsproxy

import (
	"context"
	"database/sql"
	"database/sql/driver"
)

// driverName is the name rdsproxy registers with database/sql. It can be
// changed at link time if it collides:
// -ldflags "-X github.com/rdsproxy/rdsproxy.driverName=custom".
var driverName = "rdsproxy"

// Driver is the database/sql driver registered as "rdsproxy". Prefer
// [Open] or [NewConnector]; sql.Open("rdsproxy", dsn) works too.
type Driver struct {
	connector *Connector // the connector whose Driver method returned it (see ObserveDB); nil for the registered one
}

var rdsDriver = &Driver{}

var (
	_ driver.Driver        = (*Driver)(nil)
	_ driver.DriverContext = (*Driver)(nil)
)

func init() {
	sql.Register(driverName, rdsDriver)
}

// Open opens one connection outside any pool. database/sql never calls it,
// because Driver implements DriverContext; it exists for the interface. The
// connection's pool is closed when the connection is.
func (d *Driver) Open(dsn string) (driver.Conn, error) {
	c, err := NewConnector(dsn)
	if err != nil {
		return nil, err
	}
	conn, err := c.Connect(context.Background())
	if err != nil {
		c.Close()
		return nil, err
	}
	return &ownedConn{Conn: conn, owner: c}, nil
}

// ownedConn closes its one-connection connector with it. Only Driver.Open,
// which database/sql never calls, returns it.
type ownedConn struct {
	driver.Conn
	owner *Connector
}

func (o *ownedConn) Close() error {
	err := o.Conn.Close()
	o.owner.Close()
	return err
}

// OpenConnector is what sql.Open("rdsproxy", dsn) calls. See [NewConnector]
// for how the cap works under database/sql's default settings.
func (d *Driver) OpenConnector(dsn string) (driver.Connector, error) {
	return NewConnector(dsn)
}

// Open parses dsn, applies opts and returns a *sql.DB whose own limits
// (SetMaxOpenConns, SetMaxIdleConns, SetConnMaxIdleTime, SetConnMaxLifetime)
// agree with the connector's, so db.Stats() reports them and database/sql
// queues callers at the cap instead of the connector. Nothing is dialed yet.
func Open(dsn string, opts ...Option) (*sql.DB, error) {
	cfg, err := ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	c, err := newConnector(cfg, opts, true)
	if err != nil {
		return nil, err
	}
	return dbOver(c, c), nil
}
