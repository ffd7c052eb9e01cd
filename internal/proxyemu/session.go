package proxyemu

import (
	"bufio"
	"crypto/md5"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// maxFrameLen caps a relayed protocol message (PostgreSQL's own limit is 1 GB).
const maxFrameLen = 1 << 30

// session is one client connection and, once authenticated, its backend
// connection.
type session struct {
	p   *Proxy
	raw net.Conn // the accepted TCP conn; closing it ends TLS too
	id  uint64

	// Set during the handshake, read by the relay (which starts after it).
	appName    string
	backendPID uint32

	pin *PinnedSession // guarded by p.mu; nil until the session pins

	mu      sync.Mutex
	closed  bool
	backend net.Conn

	// Relay state, used by the borrow-timeout fault and idle detection.
	stMu        sync.Mutex
	established bool
	inFlight    int  // Query/FunctionCall/Sync sent minus ReadyForQuery received
	batchOpen   bool // extended-protocol messages forwarded, Sync not yet
	txStatus    byte // from the last ReadyForQuery: 'I', 'T' or 'E'

	lastActivity atomic.Int64 // UnixNano, real clock

	clientMu sync.Mutex // serialises writes to the client (both relay directions may write)
	clientW  *bufio.Writer
}

func (s *session) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	_ = s.raw.Close()
	if s.backend != nil {
		_ = s.backend.Close()
	}
}

func (s *session) setBackend(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		_ = c.Close()
		return false
	}
	s.backend = c
	return true
}

func (s *session) idle() bool {
	s.stMu.Lock()
	defer s.stMu.Unlock()
	return s.established && s.inFlight == 0 && !s.batchOpen
}

func fatal(be *pgproto3.Backend, code, msg string) {
	be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: code, Message: msg})
	_ = be.Flush()
}

// serve runs the front door: SSL negotiation, startup, IAM authentication,
// then the relay.
func (s *session) serve() {
	_ = s.raw.SetDeadline(time.Now().Add(handshakeTimeout))
	be := pgproto3.NewBackend(s.raw, s.raw)
	var client net.Conn
	for {
		msg, err := be.ReceiveStartupMessage()
		if err != nil {
			return
		}
		switch m := msg.(type) {
		case *pgproto3.SSLRequest:
			if client != nil {
				return // SSLRequest inside TLS: protocol violation
			}
			if _, err := s.raw.Write([]byte{'S'}); err != nil {
				return
			}
			tc := tls.Server(s.raw, s.p.pki.serverConfig())
			if err := tc.Handshake(); err != nil {
				return
			}
			client = tc
			be = pgproto3.NewBackend(tc, tc)
		case *pgproto3.GSSEncRequest:
			if client != nil {
				return
			}
			// No GSSAPI encryption; the client may go on with SSLRequest.
			if _, err := s.raw.Write([]byte{'N'}); err != nil {
				return
			}
		case *pgproto3.CancelRequest:
			return // RDS Proxy does not support query cancellation: just close
		case *pgproto3.StartupMessage:
			if client == nil {
				fatal(be, CodeSSLRequired, MsgSSLRequired)
				return
			}
			s.startup(be, client, m)
			return
		default:
			return
		}
	}
}

func (s *session) startup(be *pgproto3.Backend, client net.Conn, m *pgproto3.StartupMessage) {
	params := maps.Clone(m.Parameters)
	user := params["user"]
	s.appName = params["application_name"]
	if user == "" {
		fatal(be, "28000", "no PostgreSQL user name specified in startup packet")
		return
	}
	if _, ok := params["options"]; ok {
		fatal(be, CodeNotSupported, MsgOptionsRefused)
		return
	}

	be.Send(&pgproto3.AuthenticationCleartextPassword{})
	if err := be.Flush(); err != nil {
		return
	}
	if err := be.SetAuthType(pgproto3.AuthTypeCleartextPassword); err != nil {
		return
	}
	msg, err := be.Receive()
	if err != nil {
		return
	}
	pw, ok := msg.(*pgproto3.PasswordMessage)
	if !ok {
		fatal(be, "08P01", "expected password message")
		return
	}
	if reason := s.p.authenticate(pw.Password, user); reason != "" {
		fatal(be, CodeAuthFailed, fmt.Sprintf(MsgAuthFailedFormat, user))
		return
	}
	if s.p.borrowTimeout.Load() {
		fatal(be, CodeBorrowTimeout, MsgBorrowTimeout)
		return
	}

	// Towards the backend: same startup parameters, optionally another
	// user/database (the proxy's own database credentials).
	if s.p.cfg.BackendUser != "" {
		params["user"] = s.p.cfg.BackendUser
	}
	if s.p.cfg.BackendDatabase != "" {
		params["database"] = s.p.cfg.BackendDatabase
	}
	if s.p.cfg.ReadOnly {
		params[readOnlyParameter] = "on"
	}
	bc, err := net.DialTimeout("tcp", s.p.cfg.Backend, dialTimeout)
	if err != nil {
		fatal(be, "08006", "proxyemu: cannot reach backend "+s.p.cfg.Backend)
		return
	}
	if !s.setBackend(bc) {
		return
	}
	_ = bc.SetDeadline(time.Now().Add(handshakeTimeout))
	fe := pgproto3.NewFrontend(bc, bc)
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: m.ProtocolVersion, Parameters: params})
	if err := fe.Flush(); err != nil {
		return
	}
	for {
		msg, err := fe.Receive()
		if err != nil {
			return
		}
		switch bm := msg.(type) {
		case *pgproto3.AuthenticationOk:
			be.Send(bm)
		case *pgproto3.AuthenticationCleartextPassword:
			fe.Send(&pgproto3.PasswordMessage{Password: s.p.cfg.BackendPassword})
			if err := fe.Flush(); err != nil {
				return
			}
		case *pgproto3.AuthenticationMD5Password:
			fe.Send(&pgproto3.PasswordMessage{Password: md5Password(params["user"], s.p.cfg.BackendPassword, bm.Salt)})
			if err := fe.Flush(); err != nil {
				return
			}
		case *pgproto3.AuthenticationSASL:
			fatal(be, "08006", "proxyemu: backend requires SCRAM, which the emulator does not implement; use trust, password or md5")
			return
		case *pgproto3.ErrorResponse:
			be.Send(bm)
			_ = be.Flush()
			return
		case *pgproto3.BackendKeyData:
			s.backendPID = bm.ProcessID
			be.Send(bm)
		case *pgproto3.ReadyForQuery:
			be.Send(bm)
			if err := be.Flush(); err != nil {
				return
			}
			// The relay reads the backend socket directly: nothing may be
			// left in the Frontend's buffer. The backend sends nothing after
			// ReadyForQuery until asked, so this holds.
			if fe.ReadBufferLen() != 0 {
				return
			}
			_ = s.raw.SetDeadline(time.Time{})
			_ = bc.SetDeadline(time.Time{})
			s.relay(client, bc)
			return
		default: // ParameterStatus, BackendKeyData, NoticeResponse, NegotiateProtocolVersion
			be.Send(msg)
		}
	}
}

func md5Password(user, password string, salt [4]byte) string {
	inner := md5.Sum([]byte(password + user))
	h := md5.New()
	h.Write([]byte(hex.EncodeToString(inner[:])))
	h.Write(salt[:])
	return "md5" + hex.EncodeToString(h.Sum(nil))
}

func (s *session) touch() { s.lastActivity.Store(time.Now().UnixNano()) }

// relay copies protocol messages both ways until either side ends. It works
// per message (not raw bytes) so that it can see request boundaries for the
// borrow-timeout fault and for idle detection.
func (s *session) relay(client, backend net.Conn) {
	s.clientW = bufio.NewWriterSize(client, 32<<10)
	s.stMu.Lock()
	s.established = true
	s.txStatus = 'I'
	s.stMu.Unlock()
	s.touch()

	done := make(chan struct{}, 2)
	go func() { defer func() { done <- struct{}{} }(); s.clientToBackend(client, backend) }()
	go func() { defer func() { done <- struct{}{} }(); s.backendToClient(backend) }()

	stopWatch := make(chan struct{})
	watchDone := make(chan struct{})
	go func() { defer close(watchDone); s.watchIdle(stopWatch) }()

	<-done
	s.close()
	<-done
	close(stopWatch)
	<-watchDone
}

func (s *session) watchIdle(stop <-chan struct{}) {
	timeout := s.p.cfg.IdleClientTimeout
	if timeout <= 0 {
		<-stop
		return
	}
	tick := time.NewTicker(max(timeout/4, 5*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
			last := time.Unix(0, s.lastActivity.Load())
			if s.idle() && time.Since(last) > timeout {
				s.close() // like RDS Proxy: no message, the client sees EOF
				return
			}
		}
	}
}

func readFrame(r *bufio.Reader, buf []byte) (byte, []byte, error) {
	buf = buf[:0]
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, buf, err
	}
	n := int64(binary.BigEndian.Uint32(hdr[1:]))
	if n < 4 || n > maxFrameLen {
		return 0, buf, errors.New("proxyemu: bad message length")
	}
	size := int(n) + 1
	if cap(buf) < size {
		buf = make([]byte, 0, size)
	}
	buf = append(buf[:0], hdr[:]...)
	buf = buf[:size]
	if _, err := io.ReadFull(r, buf[5:]); err != nil {
		return 0, buf, err
	}
	return hdr[0], buf, nil
}

func (s *session) clientToBackend(client, backend net.Conn) {
	r := bufio.NewReaderSize(client, 32<<10)
	w := bufio.NewWriterSize(backend, 32<<10)
	var buf []byte
	swallowing := false // dropping an extended-protocol batch refused with a borrow timeout
	pins := pinTracker{namedPrepareDoesNotPin: s.p.cfg.NamedPrepareDoesNotPin}
	for {
		typ, frame, err := readFrame(r, buf)
		buf = frame
		if err != nil {
			return
		}
		s.touch()
		if swallowing {
			if typ == 'S' {
				swallowing = false
				if s.replyBorrowTimeout() != nil {
					return
				}
			}
			continue
		}
		if s.refuseRequest(typ) {
			switch typ {
			case 'Q', 'F', 'S':
				if s.replyBorrowTimeout() != nil {
					return
				}
			default:
				swallowing = true
			}
			continue
		}
		if !pins.pinned {
			if v := pins.inspect(typ, frame[5:]); v.pins() {
				s.p.markPinned(s, v)
			}
		}
		if _, err := w.Write(frame); err != nil {
			return
		}
		if typ == 'X' {
			_ = w.Flush()
			return
		}
		if r.Buffered() == 0 {
			if err := w.Flush(); err != nil {
				return
			}
		}
	}
}

// refuseRequest updates the request bookkeeping for a client message and
// reports whether the borrow-timeout fault refuses it. Only a request that
// would need a backend borrowed is refused: one starting outside a
// transaction with nothing in flight.
func (s *session) refuseRequest(typ byte) bool {
	s.stMu.Lock()
	defer s.stMu.Unlock()
	isRequest := false
	switch typ {
	case 'Q', 'F', 'S', 'P', 'B', 'D', 'E', 'C', 'H':
		isRequest = true
	}
	if isRequest && !s.batchOpen && s.inFlight == 0 && s.txStatus == 'I' && s.p.borrowTimeout.Load() {
		return true
	}
	switch typ {
	case 'Q', 'F', 'S':
		s.inFlight++
		s.batchOpen = false
	case 'P', 'B', 'D', 'E', 'C', 'H':
		s.batchOpen = true
	}
	return false
}

func (s *session) replyBorrowTimeout() error {
	var out []byte
	out, _ = (&pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: CodeBorrowTimeout, Message: MsgBorrowTimeout}).Encode(out)
	out, _ = (&pgproto3.ReadyForQuery{TxStatus: 'I'}).Encode(out)
	s.clientMu.Lock()
	defer s.clientMu.Unlock()
	if _, err := s.clientW.Write(out); err != nil {
		return err
	}
	return s.clientW.Flush()
}

func (s *session) backendToClient(backend net.Conn) {
	r := bufio.NewReaderSize(backend, 32<<10)
	var buf []byte
	for {
		typ, frame, err := readFrame(r, buf)
		buf = frame
		if err != nil {
			return
		}
		s.touch()
		if typ == 'Z' && len(frame) == 6 {
			s.stMu.Lock()
			if s.inFlight > 0 {
				s.inFlight--
			}
			s.txStatus = frame[5]
			s.stMu.Unlock()
		}
		s.clientMu.Lock()
		_, err = s.clientW.Write(frame)
		if err == nil && r.Buffered() == 0 {
			err = s.clientW.Flush()
		}
		s.clientMu.Unlock()
		if err != nil {
			return
		}
	}
}
