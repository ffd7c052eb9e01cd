// Package proxyemu is a local stand-in for Amazon RDS Proxy's front door, for
// tests: it terminates TLS with a generated test CA, verifies IAM tokens
// exactly (endpoint, user, region, access key, expiry on an injectable clock,
// SigV4 signature recomputed with the SDK), answers with RDS Proxy's error
// texts, and relays authenticated sessions to a real PostgreSQL or PgBouncer.
//
// Pinning is accounted, not enacted: the emulator inspects each client's
// statements as the proxy does (through the project's pinning analyzer, plus
// named protocol-level prepared statements and the 16384-byte rule) and
// reports the sessions it would have pinned (PinnedNow, PinnedTotal,
// PinnedSessions), but every client session has its own backend connection
// for its whole life anyway: there is no multiplexing.
//
// A front door can stand for the proxy's read-only endpoint (Config.ReadOnly)
// and can be stopped and restarted on the same port (Stop, Restart), so that
// tests can take an endpoint away and bring it back.
//
// What it does not emulate: multiplexing, the borrow wait (the borrow-timeout
// fault answers at once), InitQuery, the 24 h client lifetime, direct SSL
// negotiation (sslnegotiation=direct) and SCRAM towards the backend.
package proxyemu

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// RDS Proxy's client-visible texts (from proxy behaviour reported in the
// field; see the project's reference notes).
const (
	MsgSSLRequired = "IAM authentication is allowed only with SSL connections."
	// MsgAuthFailedFormat takes the user name, unquoted, as RDS Proxy prints it.
	MsgAuthFailedFormat = "IAM authentication failed for user %s. Check the IAM token for this user and try again."
	MsgBorrowTimeout    = "Timed-out waiting to acquire database connection."
	MsgOptionsRefused   = "Feature not supported: RDS Proxy currently doesn't support command-line options."

	// CodeAuthFailed is the SQLSTATE sent with MsgAuthFailedFormat
	// (invalid_password), CodeSSLRequired with MsgSSLRequired
	// (invalid_authorization_specification).
	CodeAuthFailed  = "28P01"
	CodeSSLRequired = "28000"
	// CodeBorrowTimeout: no source says which SQLSTATE the proxy uses;
	// 53300 (too_many_connections) is our choice. Match on MsgBorrowTimeout.
	CodeBorrowTimeout = "53300"
	CodeNotSupported  = "0A000"
)

const (
	// handshakeTimeout bounds TLS + startup + auth + backend connect so that a
	// stuck client or backend cannot pin a goroutine.
	handshakeTimeout = 10 * time.Second
	dialTimeout      = 5 * time.Second
)

// Config configures the emulator.
type Config struct {
	// Region the proxy lives in; tokens must be scoped to it.
	Region string
	// Credentials are the only credentials whose tokens are accepted (the test
	// plays both IAM and the client).
	Credentials aws.CredentialsProvider
	// Backend is host:port of the PostgreSQL or PgBouncer to relay to (plain
	// TCP, no TLS).
	Backend string
	// BackendUser and BackendDatabase replace the client's user and database
	// towards the backend when set (RDS Proxy logs in with the Secrets Manager
	// user, not the IAM one). BackendPassword answers cleartext or MD5
	// password requests from the backend; SCRAM is not supported.
	BackendUser, BackendPassword, BackendDatabase string
	// Now is the clock for token expiry checks. Default time.Now.
	Now func() time.Time
	// IdleClientTimeout closes client connections with no traffic in either
	// direction and no request in flight for this long (real time), like the
	// proxy's IdleClientTimeout: the client sees EOF on next use. 0 = off.
	IdleClientTimeout time.Duration

	// NamedPrepareDoesNotPin stops a protocol-level Parse with a statement
	// name from pinning. By default it pins (PinReasonNamedPrepare): RDS
	// Proxy probably no longer pins on it (nothing from AWS says so either
	// way), but a named statement exists only on the backend connection that
	// parsed it, so a multiplexed client that uses it again can land on a
	// backend where it does not exist. The project advises against named
	// statements behind the proxy and counts them as pinning; set this to
	// emulate a proxy that handles them.
	NamedPrepareDoesNotPin bool

	// ReadOnly makes this front door stand for the proxy's read-only endpoint
	// (an Aurora reader behind it): every backend session starts with
	// default_transaction_read_only=on, sent as a startup parameter, so writes
	// fail with SQLSTATE 25006 (read_only_sql_transaction) as on a reader, and
	// the client sees ParameterStatus default_transaction_read_only=on
	// (PostgreSQL 14 and later report it).
	// It is a stand-in: a client can still write after
	// SET default_transaction_read_only = off (which pins, as every SET does)
	// or in a BEGIN READ WRITE transaction, which an Aurora reader refuses.
	// The backend must be PostgreSQL; PgBouncer 1.18 refuses the startup
	// parameter.
	ReadOnly bool
}

// readOnlyParameter is the startup parameter that makes a ReadOnly door's
// backend sessions read-only.
const readOnlyParameter = "default_transaction_read_only"

// errClosed is returned by Restart after Close.
var errClosed = errors.New("proxyemu: emulator is closed")

// Proxy is a running emulator.
type Proxy struct {
	cfg  Config
	now  func() time.Time
	pki  *testPKI
	addr string
	port uint16

	ctl      sync.Mutex // serialises Stop, Restart and Close
	wg       sync.WaitGroup
	mu       sync.Mutex
	ln       net.Listener // nil while stopped or closed
	closed   bool
	sessions map[*session]struct{}
	tokens   map[[sha256.Size]byte]struct{}

	sessionIDs  atomic.Uint64
	pinnedTotal atomic.Int64

	auths         atomic.Int64
	rejects       atomic.Int64
	rejectNext    atomic.Int64
	borrowTimeout atomic.Bool
	lastReject    atomic.Pointer[string]
}

// Start listens on 127.0.0.1 on a free port and serves until Stop or Close.
func Start(cfg Config) (*Proxy, error) {
	if cfg.Region == "" || cfg.Credentials == nil || cfg.Backend == "" {
		return nil, errors.New("proxyemu: Region, Credentials and Backend are required")
	}
	pki, err := newTestPKI()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("proxyemu: listen: %w", err)
	}
	p := &Proxy{
		cfg:      cfg,
		now:      cfg.Now,
		pki:      pki,
		ln:       ln,
		addr:     ln.Addr().String(),
		port:     uint16(ln.Addr().(*net.TCPAddr).Port),
		sessions: make(map[*session]struct{}),
		tokens:   make(map[[sha256.Size]byte]struct{}),
	}
	if p.now == nil {
		p.now = time.Now
	}
	p.wg.Add(1)
	go p.acceptLoop(ln)
	return p, nil
}

func (p *Proxy) acceptLoop(ln net.Listener) {
	defer p.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return // listener closed
		}
		s := &session{p: p, raw: c, id: p.sessionIDs.Add(1)}
		p.mu.Lock()
		if p.ln != ln { // stopped or closed meanwhile
			p.mu.Unlock()
			_ = c.Close()
			return
		}
		p.sessions[s] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go func() {
			defer p.wg.Done()
			defer p.forget(s)
			s.serve()
		}()
	}
}

func (p *Proxy) forget(s *session) {
	s.close()
	p.mu.Lock()
	delete(p.sessions, s)
	p.mu.Unlock()
}

// Addr is "127.0.0.1:<port>", the endpoint tokens must be signed for.
func (p *Proxy) Addr() string { return p.addr }

// Host is "127.0.0.1".
func (p *Proxy) Host() string { return "127.0.0.1" }

// Port is the listening port.
func (p *Proxy) Port() uint16 { return p.port }

// CACertPool trusts the emulator's server certificate (SANs 127.0.0.1 and
// localhost). A fresh pool is returned each time; callers may modify it.
func (p *Proxy) CACertPool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(p.pki.caPEM)
	return pool
}

// CAPEM is the test CA certificate in PEM (for sslrootcert files).
func (p *Proxy) CAPEM() []byte { return append([]byte(nil), p.pki.caPEM...) }

// Close stops listening, closes every client and backend connection and waits
// for all goroutines to end. It is idempotent; the emulator cannot be
// restarted after it.
func (p *Proxy) Close() error { return p.shutdown(true) }

// Stop takes the endpoint away, as when the instance behind it goes down:
// the port stops listening (new dials are refused), every client session is
// closed (clients see EOF on next use) and Stop returns once they are all
// gone. Counters, fault settings and the CA are kept; Restart serves again on
// the same port. Stop on a stopped emulator does nothing.
func (p *Proxy) Stop() error { return p.shutdown(false) }

// Restart listens again on the same address after Stop, with the same CA and
// server certificate, so clients that trust CAPEM connect as before. It
// does nothing if the emulator is serving and fails after Close, or if the
// port was taken by someone else meanwhile.
func (p *Proxy) Restart() error {
	p.ctl.Lock()
	defer p.ctl.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errClosed
	}
	if p.ln != nil {
		return nil
	}
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		return fmt.Errorf("proxyemu: listen again on %s: %w", p.addr, err)
	}
	p.ln = ln
	p.wg.Add(1)
	go p.acceptLoop(ln)
	return nil
}

// Serving reports whether the emulator accepts connections (false after Stop
// until Restart, and after Close).
func (p *Proxy) Serving() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ln != nil
}

func (p *Proxy) shutdown(final bool) error {
	p.ctl.Lock()
	defer p.ctl.Unlock()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = final
	var err error
	if p.ln != nil {
		err = p.ln.Close()
		p.ln = nil
	}
	for s := range p.sessions {
		s.close()
	}
	p.mu.Unlock()
	// No goroutine is added once ln is nil (acceptLoop checks under mu), so
	// this waits for the accept loop and every session to end.
	p.wg.Wait()
	return err
}

// Authentications counts accepted tokens.
func (p *Proxy) Authentications() int64 { return p.auths.Load() }

// Rejections counts rejected tokens (including RejectNextAuth ones).
func (p *Proxy) Rejections() int64 { return p.rejects.Load() }

// LastRejectReason says why the last token was rejected (one of the Reason*
// constants, "" if none was). Clients all see the same text, as with the real
// proxy; tests use this to check a rejection happened for the intended reason.
func (p *Proxy) LastRejectReason() string {
	if r := p.lastReject.Load(); r != nil {
		return *r
	}
	return ""
}

// DistinctTokens counts the different tokens accepted so far (tells signing
// from reuse). Only SHA-256 hashes are kept.
func (p *Proxy) DistinctTokens() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.tokens)
}

// ClientConnections is the number of client connections currently open
// (including ones still in the handshake).
func (p *Proxy) ClientConnections() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.sessions)
}

// RejectNextAuth makes the next n otherwise valid tokens fail with the
// proxy's auth-failed error, as when a token's credentials were revoked.
func (p *Proxy) RejectNextAuth(n int) { p.rejectNext.Add(int64(n)) }

// SetBorrowTimeout, while on, answers new sessions (after authentication) and
// new requests on existing sessions with MsgBorrowTimeout, as RDS Proxy does
// when no database connection frees up within ConnectionBorrowTimeout. New
// sessions get a FATAL error and are closed; on an open session a request
// that starts outside a transaction with nothing in flight gets an ERROR
// followed by ReadyForQuery (the session stays usable). Requests inside a
// transaction already hold a backend and pass.
func (p *Proxy) SetBorrowTimeout(on bool) { p.borrowTimeout.Store(on) }

// DropIdleClients closes every established client session with no request in
// flight, as if IdleClientTimeout had just expired for all of them, and
// returns how many it closed. Deterministic alternative to IdleClientTimeout.
func (p *Proxy) DropIdleClients() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for s := range p.sessions {
		if s.idle() {
			s.close()
			n++
		}
	}
	return n
}

func (p *Proxy) recordAuth(token string) {
	p.auths.Add(1)
	h := sha256.Sum256([]byte(token))
	p.mu.Lock()
	p.tokens[h] = struct{}{}
	p.mu.Unlock()
}

func (p *Proxy) recordReject(reason string) {
	p.rejects.Add(1)
	p.lastReject.Store(&reason)
}

// takeForcedReject consumes one RejectNextAuth credit if there is one.
func (p *Proxy) takeForcedReject() bool {
	for {
		n := p.rejectNext.Load()
		if n <= 0 {
			return false
		}
		if p.rejectNext.CompareAndSwap(n, n-1) {
			return true
		}
	}
}

// authenticate verifies the token and updates the counters; "" means accepted.
func (p *Proxy) authenticate(token, user string) string {
	ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
	defer cancel()
	reason := p.verifyToken(ctx, token, user)
	if reason == "" && p.takeForcedReject() {
		reason = ReasonForced
	}
	if reason != "" {
		p.recordReject(reason)
		return reason
	}
	p.recordAuth(token)
	return ""
}

func (p *Proxy) String() string { return "proxyemu.Proxy{" + p.addr + " -> " + p.cfg.Backend + "}" }
