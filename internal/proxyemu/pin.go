package proxyemu

import (
	"bytes"
	"cmp"
	"slices"

	"github.com/rdsproxy/rdsproxy/internal/pinning"
)

// PinReasonNamedPrepare is the pinning reason for a protocol-level Parse with
// a non-empty statement name (see Config.NamedPrepareDoesNotPin). It is the
// emulator's own reason: the analyzer only sees SQL text.
const PinReasonNamedPrepare pinning.Reason = "named_prepare"

// PinnedSession describes one client session the emulator has pinned.
type PinnedSession struct {
	// ID numbers client connections in the order the emulator accepted them,
	// from 1, over the emulator's whole life (restarts included).
	ID uint64
	// ApplicationName is the application_name the client sent at startup
	// ("" if none): it tells apart the sessions of tests sharing an emulator.
	ApplicationName string
	// BackendPID is the PostgreSQL process id of the session's backend
	// connection (as sent in BackendKeyData; a PgBouncer backend sends its own).
	BackendPID uint32
	// Reason is the first reason the session was pinned for: the first of
	// the analyzer's reasons (in its canonical order) of the first statement
	// that pinned, or PinReasonNamedPrepare.
	Reason pinning.Reason
	// Statement is pinning.Fingerprint of that statement's text: no literal
	// values, at most pinning.MaxFingerprintBytes long.
	Statement string
}

// PinnedNow is the number of open client sessions that are pinned: the
// emulator's DatabaseConnectionsCurrentlySessionPinned. A session leaves the
// count once the emulator has finished closing it, shortly after the client
// disconnects (poll for it); after Stop or Close it is 0 at once.
func (p *Proxy) PinnedNow() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for s := range p.sessions {
		if s.pin != nil {
			n++
		}
	}
	return n
}

// PinnedTotal counts the sessions ever pinned since Start.
func (p *Proxy) PinnedTotal() int64 { return p.pinnedTotal.Load() }

// PinnedSessions lists the open pinned sessions by ID.
func (p *Proxy) PinnedSessions() []PinnedSession {
	p.mu.Lock()
	out := make([]PinnedSession, 0, len(p.sessions))
	for s := range p.sessions {
		if s.pin != nil {
			out = append(out, *s.pin)
		}
	}
	p.mu.Unlock()
	slices.SortFunc(out, func(a, b PinnedSession) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// markPinned records the session's first pinning reason. Later calls are
// ignored: a session stays pinned, for its first reason, until it closes.
func (p *Proxy) markPinned(s *session, v verdict) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s.pin != nil {
		return
	}
	s.pin = &PinnedSession{ID: s.id, ApplicationName: s.appName, BackendPID: s.backendPID,
		Reason: v.reason, Statement: v.statement}
	p.pinnedTotal.Add(1)
}

// verdict is what running a statement would do to the session; the zero
// verdict does not pin.
type verdict struct {
	reason    pinning.Reason
	statement string // fingerprint
}

func (v verdict) pins() bool { return v.reason != "" }

// classify runs the analyzer on one statement text.
func classify(sql string) verdict {
	// An unparsable text still comes with the lexical verdict, which is the
	// best the proxy's own inspection could do too.
	r, _ := pinning.Analyze(sql)
	if reasons := r.Reasons(); len(reasons) > 0 {
		fp, _ := pinning.Fingerprint(sql)
		return verdict{reasons[0], fp}
	}
	// The size rule is the proxy's, whatever the analyzer says.
	if len(sql) > pinning.MaxStatementBytes {
		fp, _ := pinning.Fingerprint(sql)
		return verdict{pinning.ReasonStatementSize, fp}
	}
	return verdict{}
}

// pinTracker follows the client's statements the way RDS Proxy inspects them
// and says when the session becomes pinned. It belongs to the goroutine that
// relays client messages and sees each message before it is forwarded, so a
// pin is recorded before the client can see the statement's result.
//
// Precision: a simple-protocol Query pins when it is sent. For the extended
// protocol the text is classified at Parse and the verdict follows the
// statement into the portals bound from it (Bind); the session pins when such
// a portal is executed (Execute), as the proxy pins when the statement runs.
// A pinning text that is only parsed and described never pins. A named Parse
// pins at once (PinReasonNamedPrepare) unless Config.NamedPrepareDoesNotPin.
// Statement and portal lifetimes follow PostgreSQL's where it matters: a
// Parse or Bind replaces an object of the same name, Close removes it, and a
// simple Query destroys the unnamed statement and portal. Portals are not
// dropped at transaction end (the client cannot execute them then anyway).
//
// Cost: the inspection runs on the relay path, before the message is
// forwarded. Doing it after forwarding would need the backend's reply held
// back until the verdict is in, and holding replies while the client is
// still sending can deadlock a pipelining client. So it stays cheap instead:
// Bind and Execute only look up names; Query and Parse texts go through the
// analyzer's prefilter (no parse unless a trigger word appears) and one copy
// of the text; and once pinned, nothing more is inspected. BenchmarkRelay
// and BenchmarkPinTrackerInspect measure it.
type pinTracker struct {
	namedPrepareDoesNotPin bool
	pinned                 bool

	// Verdicts of statements and portals whose text pins; absent = no pin.
	unnamedStmt, unnamedPortal verdict
	stmts, portals             map[string]verdict
}

// inspect looks at one client message (type and body, without the length)
// and returns the verdict if this message pins the session.
func (t *pinTracker) inspect(typ byte, body []byte) verdict {
	if t.pinned {
		return verdict{}
	}
	var v verdict
	switch typ {
	case 'Q':
		t.unnamedStmt, t.unnamedPortal = verdict{}, verdict{}
		sql, _ := cstring(body)
		v = classify(string(sql))
	case 'P':
		name, rest := cstring(body)
		sql, _ := cstring(rest)
		if len(name) > 0 && !t.namedPrepareDoesNotPin {
			fp, _ := pinning.Fingerprint(string(sql))
			v = verdict{PinReasonNamedPrepare, fp}
			break
		}
		t.stmts = setVerdict(t.stmts, &t.unnamedStmt, name, classify(string(sql)))
	case 'B':
		if !t.unnamedStmt.pins() && !t.unnamedPortal.pins() && len(t.stmts) == 0 && len(t.portals) == 0 {
			return verdict{} // the common case: nothing pending
		}
		portal, rest := cstring(body)
		stmt, _ := cstring(rest)
		t.portals = setVerdict(t.portals, &t.unnamedPortal, portal, getVerdict(t.stmts, t.unnamedStmt, stmt))
	case 'E':
		portal, _ := cstring(body)
		v = getVerdict(t.portals, t.unnamedPortal, portal)
	case 'C':
		if len(body) == 0 {
			return verdict{}
		}
		name, _ := cstring(body[1:])
		switch body[0] {
		case 'S':
			t.stmts = setVerdict(t.stmts, &t.unnamedStmt, name, verdict{})
		case 'P':
			t.portals = setVerdict(t.portals, &t.unnamedPortal, name, verdict{})
		}
	}
	if v.pins() {
		t.pinned = true
		t.unnamedStmt, t.unnamedPortal, t.stmts, t.portals = verdict{}, verdict{}, nil, nil
	}
	return v
}

// setVerdict records v for the named object (or the unnamed one) and returns
// the possibly allocated map. Only pinning verdicts are stored.
func setVerdict(m map[string]verdict, unnamed *verdict, name []byte, v verdict) map[string]verdict {
	if len(name) == 0 {
		*unnamed = v
		return m
	}
	if !v.pins() {
		delete(m, string(name))
		return m
	}
	if m == nil {
		m = make(map[string]verdict)
	}
	m[string(name)] = v
	return m
}

func getVerdict(m map[string]verdict, unnamed verdict, name []byte) verdict {
	if len(name) == 0 {
		return unnamed
	}
	return m[string(name)]
}

// cstring splits a NUL-terminated string off the front of b. A missing NUL
// (a malformed message, which the backend will reject) yields all of b.
func cstring(b []byte) (s, rest []byte) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return b, nil
	}
	return b[:i], b[i+1:]
}
