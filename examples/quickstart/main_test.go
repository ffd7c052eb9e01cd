package main

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rdsproxy/rdsproxy/internal/testdb"
)

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestQuickstart(t *testing.T) {
	dsn := testdb.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The driver logs pinning warnings from its own goroutine, to the same
	// writer as the program's output: the buffer must be safe for that.
	var out lockedBuffer
	if err := run(ctx, dsn, &out); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	for _, want := range []string{
		"connected to PostgreSQL",
		"3 + 10 = 13",
		"pins=true reasons=[session_setting]",
		"pool: max_open=5",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	// One warning per distinct pinning statement, though each ran twice.
	if n := strings.Count(text, "level=WARN"); n != 2 {
		t.Errorf("want 2 pinning warnings, got %d:\n%s", n, text)
	}
}

// TestQuickstartIAM runs the -iam mode: the same workload through the RDS
// Proxy emulator, each connection authenticated with a signed IAM token.
func TestQuickstartIAM(t *testing.T) {
	dsn := testdb.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out lockedBuffer
	if err := runIAM(ctx, dsn, &out); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	for _, want := range []string{
		"RDS Proxy emulator at 127.0.0.1:",
		"connected to PostgreSQL",
		"3 + 10 = 13",
		"IAM: proxy authentications=",
		"rejections=0, token signings=1",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "authentications=0") {
		t.Errorf("no connection authenticated through the emulator:\n%s", text)
	}
	if n := strings.Count(text, "level=WARN"); n != 2 {
		t.Errorf("want 2 pinning warnings, got %d:\n%s", n, text)
	}
}
