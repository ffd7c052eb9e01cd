// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

package rdsproxy

import (
	"crypto/tls"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// readerPoolSuffix distinguishes the reader pool's name from the writer's
// when the two would otherwise be equal (WithPoolName, or one endpoint for
// both).
const readerPoolSuffix = "-reader"

// Cluster is an RDS Proxy's two endpoints as two pools: the default
// (read/write) endpoint as [Cluster.Writer] and its read-only endpoint,
// routed to the Aurora readers, as [Cluster.Reader]. Open it with
// [OpenCluster].
//
// The two pools share one IAM token source, one pinning check (each
// pinning statement is reported once, whichever pool ran it) and the
// telemetry providers; their metrics, the pinning counter included, carry
// distinct db.client.connection.pool.name values: each endpoint's default name, or,
// when the two would be equal (WithPoolName, or one endpoint given twice),
// the writer's followed by -reader for the reader.
//
// A Cluster does not route statements: the application picks Writer or
// Reader for each. It gives no read-your-writes: a row committed through
// Writer may not yet be visible through Reader (Aurora replica lag,
// usually under 100 ms). Read what you just wrote through Writer.
type Cluster struct {
	writer, reader *sql.DB
	rc             *readerConnector // nil without read_host
}

// OpenCluster opens the writer pool on dsn's host and, when dsn has the
// read_host key (host or host:port; the port defaults to the writer's), a
// reader pool on that endpoint with every other setting and option the
// same. Without read_host, Reader returns the writer pool. Nothing is dialed
// yet.
//
// Each pool has its own cap, pool_max_conns (the same default, Lambda's
// included): a process holds up to twice the cap, half on each endpoint. For
// a fleet, the proxy's MaxConnectionsPercent of the writer bounds the
// writer pools of every process together, and the readers' bound their
// reader pools.
//
// With read_fallback=writer, when no connection to the reader endpoint can
// be opened (refused, or the proxy answers that it has no reader or timed out
// borrowing one), reads are served by connections from the writer pool until
// the reader endpoint accepts a connection again; it is tried every few
// seconds in the background. Each episode logs one warning, and the
// rdsproxy.pool.reader.fallbacks metric counts the connections borrowed from
// the writer.
func OpenCluster(dsn string, opts ...Option) (*Cluster, error) {
	cfg, err := ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	if err := cfg.apply(opts); err != nil {
		return nil, err
	}
	readHost, fallback := cfg.ReadHost, cfg.ReadFallback == ReadFallbackWriter
	cfg.ReadHost, cfg.ReadFallback = "", ReadFallbackOff // the writer's own Config names one endpoint
	if readHost == "" {
		// read_fallback alone changes nothing: reads are on the writer.
		db, err := openDB(cfg)
		if err != nil {
			return nil, err
		}
		return &Cluster{writer: db, reader: db}, nil
	}
	host, port, err := parseReadHost(readHost) // valid: checked by apply
	if err != nil {
		return nil, err
	}
	shareTokenSource(cfg)
	rcfg, err := readerConfig(cfg, host, port)
	if err != nil {
		return nil, err
	}
	w, err := newConnector(cfg, nil, true)
	if err != nil {
		return nil, err
	}
	rcfg.sharedPins = w.pins // one pinning check: each statement reported once, whichever pool ran it
	r, err := newConnector(rcfg, nil, true)
	if err != nil {
		w.Close()
		return nil, err
	}
	rc := newReaderConnector(r, w, fallback)
	wdb := dbOver(w, w)
	rdb := dbOver(rc, r)
	rc.db, rc.writerDB = rdb, wdb
	return &Cluster{writer: wdb, reader: rdb, rc: rc}, nil
}

// Writer is the pool on the proxy's default endpoint: every write, and the
// reads that must see the application's own writes.
func (c *Cluster) Writer() *sql.DB { return c.writer }

// Reader is the pool on the proxy's read-only endpoint, or the writer pool
// when the DSN has no read_host. A write on it fails with SQLSTATE 25006
// ([IsReadOnlyViolation]).
func (c *Cluster) Reader() *sql.DB { return c.reader }

// Close closes both pools. It is safe to call twice.
func (c *Cluster) Close() error {
	var err error
	if c.reader != c.writer {
		err = c.reader.Close() // first: it may hold connections of the writer pool (read_fallback)
	}
	return errors.Join(err, c.writer.Close())
}

// ReadFallbackMode is what reads on [Cluster.Reader] do when no connection to
// the reader endpoint can be opened. DSN key read_fallback.
type ReadFallbackMode string

// Values for [ReadFallbackMode].
const (
	// ReadFallbackOff returns the error. The default: a reader that is
	// down should be seen, and the writer may not have room for the reads.
	ReadFallbackOff ReadFallbackMode = "off"
	// ReadFallbackWriter serves reads from the writer pool until the reader
	// endpoint accepts connections again.
	ReadFallbackWriter ReadFallbackMode = "writer"
)

// checkOneEndpoint refuses OpenCluster's settings in a constructor that
// opens one endpoint, so that a reader endpoint is never silently ignored.
func (c *Config) checkOneEndpoint() error {
	if c.ReadHost != "" {
		return clusterOnlyKey(keyReadHost, c.ReadHost)
	}
	if c.ReadFallback != ReadFallbackOff {
		return clusterOnlyKey(keyReadFallback, string(c.ReadFallback))
	}
	return nil
}

// parseReadHost reads read_host: a host name or address, optionally with
// :port (an IPv6 address bracketed when a port follows).
func parseReadHost(v string) (string, uint16, error) {
	bad := &ConfigError{Key: keyReadHost, Value: v, Accepted: acceptedReadHost}
	host, portText := v, ""
	if h, p, err := net.SplitHostPort(v); err == nil {
		host, portText = h, p
	} else if len(v) > 2 && v[0] == '[' && v[len(v)-1] == ']' {
		host = v[1 : len(v)-1]
	}
	if host == "" || strings.ContainsAny(host, "[], /@?#%\t\n") || strings.Contains(host, ":") && net.ParseIP(host) == nil {
		return "", 0, bad
	}
	if portText == "" {
		if strings.HasSuffix(v, ":") {
			return "", 0, bad
		}
		return host, 0, nil
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil || port == 0 {
		return "", 0, bad
	}
	return host, uint16(port), nil
}

// readerConfig is cfg for the reader endpoint: its host and port (and TLS
// server name), and a pool name of its own.
func readerConfig(cfg *Config, host string, port uint16) (*Config, error) {
	for _, fb := range cfg.ConnConfig.Fallbacks {
		// sslmode=prefer or allow adds the same host without TLS; a list of
		// hosts leaves no single writer endpoint to mirror.
		if fb.Host != cfg.ConnConfig.Host || fb.Port != cfg.ConnConfig.Port {
			return nil, &ConfigError{Key: keyReadHost, Value: host,
				Accepted: "a read_host with a single writer host: the DSN lists several hosts"}
		}
	}
	r := *cfg
	cc := cfg.ConnConfig.Copy()
	toReader := func(h *string, p *uint16, tc **tls.Config) {
		*h = host
		if port != 0 {
			*p = port
		}
		if *tc != nil && (*tc).ServerName != "" {
			// verify-full checks the server's name; the reader's
			// certificate names the reader endpoint.
			c := (*tc).Clone()
			c.ServerName = host
			*tc = c
		}
	}
	toReader(&cc.Host, &cc.Port, &cc.TLSConfig)
	for _, fb := range cc.Fallbacks {
		toReader(&fb.Host, &fb.Port, &fb.TLSConfig)
	}
	r.ConnConfig = cc
	writerName := cfg.PoolName
	if writerName == "" {
		writerName = defaultPoolName(cfg.ConnConfig)
	}
	if r.PoolName == "" {
		r.PoolName = defaultPoolName(cc)
	}
	if r.PoolName == writerName {
		r.PoolName += readerPoolSuffix
	}
	return &r, nil
}

// shareTokenSource gives both pools one token source when the options name
// credentials: the default chain's process-wide source is shared anyway.
func shareTokenSource(cfg *Config) {
	o := cfg.iam()
	if cfg.IAM && o.tokenFunc == nil && o.source == nil && o.creds != nil {
		cfg.editIAM().source = NewTokenSource(TokenSourceOptions{Credentials: o.creds})
	}
}

// openDB is [Open] for a parsed and validated cfg.
func openDB(cfg *Config) (*sql.DB, error) {
	c, err := newConnector(cfg, nil, true)
	if err != nil {
		return nil, err
	}
	return dbOver(c, c), nil
}

// dbOver opens a *sql.DB over dc whose own limits agree with c's
// configuration (see [Open]).
func dbOver(dc driver.Connector, c *Connector) *sql.DB {
	db := sql.OpenDB(dc)
	c.tel.observeDB(db) // db.client.connection.count tells held connections from database/sql's idle ones
	n := int(c.cfg.MaxConns)
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
	db.SetConnMaxIdleTime(c.cfg.MaxConnIdleTime)
	// The longest a connection can live under the jittered policy; the policy
	// retires each connection at its own jittered deadline before this, so
	// database/sql's unjittered lifetime never retires a fleet in lockstep.
	db.SetConnMaxLifetime(c.cfg.MaxConnLifetime + c.cfg.MaxConnLifetimeJitter)
	return db
}

// clusterOnlyKey is the error for a key of OpenCluster given to Open,
// sql.Open or NewConnector.
func clusterOnlyKey(key, value string) error {
	return &ConfigError{Key: key, Value: value, Accepted: fmt.Sprintf("%s only with rdsproxy.OpenCluster, "+
		"which opens a reader pool on it; Open, sql.Open and NewConnector open one endpoint", key)}
}
