// Package conncheck tells, without a round trip, whether an idle database
// connection has something waiting on its socket.
//
// The idea comes from go-sql-driver/mysql's conncheck.go: a pooled connection
// whose peer has gone away (RDS Proxy closing an idle client, a backend killed
// by failover or pg_terminate_backend, a Lambda environment thawed after the
// proxy dropped it) has either an EOF or an unsolicited message waiting in the
// kernel's receive buffer. MySQL reads and discards; PostgreSQL may legitimately
// send unsolicited messages (NotificationResponse, ParameterStatus), so we only
// peek (MSG_PEEK) and let the caller decide to ping. Nothing is consumed.
//
// Hand-written because no library offers a non-consuming, allocation-free
// readiness probe on a net.Conn; the probe is one recvfrom(2) system call.
package conncheck

import (
	"crypto/tls"
	"net"
	"syscall"
)

// State is what a probe saw on an idle connection.
type State uint8

const (
	// Unknown means the probe could not look (not a socket, or an unsupported
	// platform). Callers fall back to their idle-time ping policy.
	Unknown State = iota
	// Quiet means nothing is waiting: the peer has sent nothing and has not
	// closed its side.
	Quiet
	// Pending means bytes are waiting: an unsolicited message, which on an idle
	// PostgreSQL connection is usually a FATAL error sent just before the
	// server closes the connection. A ping settles it.
	Pending
	// Closed means the peer closed the connection (EOF) or the socket failed.
	Closed
)

// Prober probes one connection. It caches the raw socket handle so that a
// probe does not allocate; create one per physical connection.
type Prober struct {
	raw   syscall.RawConn
	state State
	fn    func(fd uintptr) // prebuilt so Probe does not allocate a closure
}

// NewProber returns a Prober for conn, unwrapping TLS. It returns nil when conn
// is not backed by a socket that can be probed; a nil *Prober is valid and
// always reports Unknown.
func NewProber(conn net.Conn) *Prober {
	if tc, ok := conn.(*tls.Conn); ok {
		conn = tc.NetConn()
	}
	sc, ok := conn.(syscall.Conn)
	if !ok || !supported {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	p := &Prober{raw: raw}
	p.fn = func(fd uintptr) { p.state = peek(fd) }
	return p
}

// Probe reports what is waiting on the socket. It must not be called
// concurrently with itself for the same Prober; a pooled connection is only
// probed by the goroutine checking it out.
func (p *Prober) Probe() State {
	if p == nil {
		return Unknown
	}
	// Control, not Read: RawConn.Read takes the socket's read lock, which
	// pgx's background reader can hold while it sits in a blocking Read on an
	// idle connection, so a probe through Read could wait forever. Control only keeps
	// the descriptor valid for the call, and MSG_DONTWAIT makes the peek
	// itself non-blocking.
	if err := p.raw.Control(p.fn); err != nil {
		return Closed
	}
	return p.state
}
