// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

package rdsproxy

import (
	"context"
	"crypto/tls"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
)

// readerProbeInterval is how often, while reads are served by the writer
// (read_fallback=writer), one connection to the reader endpoint is tried.
// Reads do not try the reader themselves during an episode: with readers
// present but unavailable, RDS Proxy answers a new connection only after its
// ConnectionBorrowTimeout (120 s by default), which no read should wait for.
// Five seconds brings reads back to the reader soon after it returns, at the
// cost of one connection attempt per five seconds per process.
const readerProbeInterval = 5 * time.Second

// readerProbeTimeout bounds one probe of the reader endpoint: the dial, the
// token, the proxy's answer and a ping.
const readerProbeTimeout = 10 * time.Second

// metricReadFallbacks counts connections the reader pool took from the
// writer pool under read_fallback=writer.
const metricReadFallbacks = "rdsproxy.pool.reader.fallbacks"

// readerConnector is the reader *sql.DB's connector: the reader pool, and
// with read_fallback=writer the writer pool while the reader endpoint takes
// no connection.
type readerConnector struct {
	reader, writer *Connector
	fallback       bool
	probeEvery     time.Duration // readerProbeInterval; tests shorten it
	fallbacks      metric.Int64Counter

	// db and writerDB are the cluster's two *sql.DB. During an episode both
	// draw on the writer pool, and neither keeps idle connections: a
	// connection goes back to the writer pool at release, where the next
	// read or write takes it, instead of waiting in one *sql.DB's free list
	// while a caller of the other waits at the writer pool's cap.
	db, writerDB *sql.DB

	mu         sync.Mutex
	onWriter   bool        // an episode is under way: reads go to the writer
	borrowed   []*pgx.Conn // writer connections handed to the reader *sql.DB this episode
	stopProbe  context.CancelFunc
	probeEnded chan struct{}
	closed     bool
}

var (
	_ driver.Connector = (*readerConnector)(nil)
	_ io.Closer        = (*readerConnector)(nil)
)

func newReaderConnector(reader, writer *Connector, fallback bool) *readerConnector {
	rc := &readerConnector{reader: reader, writer: writer, fallback: fallback, probeEvery: readerProbeInterval}
	if fallback {
		var err error
		rc.fallbacks, err = reader.tel.meter.Int64Counter(metricReadFallbacks, metric.WithUnit("{connection}"),
			metric.WithDescription("Connections the reader pool took from the writer pool because the reader endpoint took none (read_fallback=writer)."))
		if err != nil {
			otel.Handle(err) // a failed instrument is a no-op, as in telemetry.go
		}
	}
	return rc
}

// Connect opens a reader connection; under read_fallback=writer, a writer
// connection when the reader endpoint takes none.
func (rc *readerConnector) Connect(ctx context.Context) (driver.Conn, error) {
	if !rc.fallback {
		return rc.reader.Connect(ctx)
	}
	rc.mu.Lock()
	onWriter := rc.onWriter
	rc.mu.Unlock()
	if !onWriter {
		conn, err := rc.reader.Connect(ctx)
		if err == nil || ctx.Err() != nil || !readerUnavailable(err) {
			return conn, err
		}
		rc.startEpisode(err)
	}
	return rc.fromWriter(ctx)
}

// fromWriter takes a writer connection for a read.
func (rc *readerConnector) fromWriter(ctx context.Context) (driver.Conn, error) {
	conn, err := rc.writer.Connect(ctx)
	if err != nil {
		return nil, err
	}
	if rc.fallbacks != nil {
		rc.fallbacks.Add(ctx, 1, rc.reader.tel.poolOpt)
	}
	if sc, ok := conn.(interface{ Conn() *pgx.Conn }); ok { // *stdlib.Conn, or its pin_check=error wrapper
		rc.mu.Lock()
		if !rc.onWriter {
			// The episode ended while this read waited for the writer: give
			// the connection back at its next reuse, as endEpisode did for
			// the others.
			if s := stateOf(sc.Conn()); s != nil {
				s.flags.Or(flagHandBack)
			}
			rc.mu.Unlock()
			return conn, nil
		}
		if len(rc.borrowed) >= 2*int(rc.writer.cfg.MaxConns) {
			// Keep the list to the connections still open: a long episode
			// with churn would otherwise grow it without bound.
			rc.borrowed = slices.DeleteFunc(rc.borrowed, (*pgx.Conn).IsClosed)
		}
		rc.borrowed = append(rc.borrowed, sc.Conn())
		rc.mu.Unlock()
	}
	return conn, nil
}

// startEpisode sends reads to the writer, warns, and starts probing the
// reader endpoint.
func (rc *readerConnector) startEpisode(cause error) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.onWriter || rc.closed {
		return
	}
	rc.onWriter = true
	rc.setMaxIdle(0)
	ctx, cancel := context.WithCancel(context.Background())
	rc.stopProbe, rc.probeEnded = cancel, make(chan struct{})
	go rc.probe(ctx, rc.probeEnded)
	logger := rc.reader.cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	logger.Warn("rdsproxy: the read-only endpoint takes no connection; reads go to the writer endpoint until it does "+
		"(read_fallback=writer)", "reader_pool", rc.reader.tel.poolName, "writer_pool", rc.writer.tel.poolName,
		"error_type", errorType(cause), "retry_every", rc.probeEvery)
}

// setMaxIdle sets both *sql.DB's idle limit: n, or with n < 0 back to each
// pool's cap, as dbOver set it.
func (rc *readerConnector) setMaxIdle(n int) {
	for _, d := range []struct {
		db *sql.DB
		c  *Connector
	}{{rc.db, rc.reader}, {rc.writerDB, rc.writer}} {
		if d.db == nil {
			continue
		}
		if n < 0 {
			d.db.SetMaxIdleConns(int(d.c.cfg.MaxConns))
		} else {
			d.db.SetMaxIdleConns(n)
		}
	}
}

// probe tries the reader endpoint every probeEvery until it takes a
// connection, then ends the episode.
func (rc *readerConnector) probe(ctx context.Context, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(rc.probeEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if rc.readerAnswers(ctx) {
			rc.endEpisode()
			return
		}
	}
}

// readerAnswers opens (or takes from the pool) one reader connection and
// pings it.
func (rc *readerConnector) readerAnswers(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, readerProbeTimeout)
	defer cancel()
	conn, err := rc.reader.Connect(ctx)
	if err != nil {
		return false
	}
	defer conn.Close() // back to the reader pool, for the next read
	if p, ok := conn.(driver.Pinger); ok {
		return p.Ping(ctx) == nil
	}
	return true
}

// endEpisode sends reads back to the reader. The writer connections the
// reader *sql.DB holds are handed back to the writer pool at their next
// reuse (the pool policy's hand-back), so database/sql dials the reader
// instead.
func (rc *readerConnector) endEpisode() {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, conn := range rc.borrowed {
		if s := stateOf(conn); s != nil {
			s.flags.Or(flagHandBack)
		}
	}
	rc.borrowed, rc.onWriter = nil, false
	rc.setMaxIdle(-1)
	rc.stopProbe()
	rc.stopProbe = nil
	logger := rc.reader.cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	logger.Info("rdsproxy: the read-only endpoint takes connections again; reads go back to it",
		"reader_pool", rc.reader.tel.poolName)
}

// Driver returns the reader connector's driver, so that [ObserveDB] finds it.
func (rc *readerConnector) Driver() driver.Driver { return rc.reader.Driver() }

// Close stops the probe and closes the reader pool. database/sql calls it
// from DB.Close.
func (rc *readerConnector) Close() error {
	rc.mu.Lock()
	rc.closed = true
	stop, ended := rc.stopProbe, rc.probeEnded
	rc.mu.Unlock()
	if stop != nil {
		stop()
	}
	if ended != nil {
		<-ended
	}
	return rc.reader.Close()
}

// readerUnavailable reports whether err, from opening a reader connection,
// means the endpoint takes no connection now: refused or unreachable, the
// connection closed during startup, the proxy's borrow timeout (readers
// present but none available), or a startup error of the classes the proxy
// and PostgreSQL use for a target that cannot take connections (08
// connection exception, 53 insufficient resources, 57P shutdown or starting
// up, XX internal). An authentication or configuration error is not: the
// writer would not fix it, and it must be seen.
func readerUnavailable(err error) bool {
	if errors.Is(err, ErrClosed) || errors.Is(err, ErrPoolWaitTimeout) || errors.Is(err, ErrIAMAuth) {
		return false
	}
	if IsBorrowTimeout(err) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		c := pgErr.Code
		return strings.HasPrefix(c, "08") || strings.HasPrefix(c, "53") || strings.HasPrefix(c, "57P") || strings.HasPrefix(c, "XX")
	}
	var netErr net.Error
	var tlsErr *tls.CertificateVerificationError
	if errors.As(err, &tlsErr) {
		return false
	}
	return errors.As(err, &netErr) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}
