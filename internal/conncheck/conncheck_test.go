package conncheck

import (
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// pair returns both ends of a real loopback TCP connection.
func pair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	server = <-accepted
	require.NotNil(t, server)
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

func TestProbeStates(t *testing.T) {
	client, server := pair(t)
	p := NewProber(client)
	require.NotNil(t, p)
	require.Equal(t, Quiet, p.Probe())

	_, err := server.Write([]byte("E"))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return p.Probe() == Pending }, 5e9, 1e6)

	// Peeking must not consume: the byte is still there to be read.
	buf := make([]byte, 1)
	_, err = client.Read(buf)
	require.NoError(t, err)
	require.Equal(t, byte('E'), buf[0])
	require.Equal(t, Quiet, p.Probe())

	require.NoError(t, server.Close())
	require.Eventually(t, func() bool { return p.Probe() == Closed }, 5e9, 1e6)
}

func TestNilProberIsUnknown(t *testing.T) {
	var p *Prober
	require.Equal(t, Unknown, p.Probe())
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	require.Nil(t, NewProber(c1), "net.Pipe has no socket to probe")
}

func TestProbeDoesNotAllocate(t *testing.T) {
	client, _ := pair(t)
	p := NewProber(client)
	allocs := testing.AllocsPerRun(100, func() { p.Probe() })
	require.Zero(t, allocs)
}

func BenchmarkProbe(b *testing.B) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	go func() { c, _ := ln.Accept(); defer c.Close(); select {} }()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	p := NewProber(c)
	b.ReportAllocs()
	for b.Loop() {
		p.Probe()
	}
}

// TestProbeDoesNotWaitForABlockedReader: pgx's background reader can sit in a
// blocking Read on an idle connection. A probe that took the socket's read
// lock (RawConn.Read) waited for it forever; the probe must not.
func TestProbeDoesNotWaitForABlockedReader(t *testing.T) {
	client, server := pair(t)
	p := NewProber(client)
	readerBlocked := make(chan struct{})
	go func() {
		close(readerBlocked)
		buf := make([]byte, 1)
		client.Read(buf) // blocks until the server writes or closes
	}()
	<-readerBlocked
	time.Sleep(50 * time.Millisecond) // let the reader enter its blocking Read (not a timing assertion)

	done := make(chan State, 1)
	go func() { done <- p.Probe() }()
	select {
	case st := <-done:
		require.Equal(t, Quiet, st)
	case <-time.After(10 * time.Second): // watchdog against a hang
		t.Fatal("Probe blocked behind a concurrent Read")
	}
	server.Close()
}
