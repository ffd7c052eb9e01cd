package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rdsproxy/rdsproxy"
	"github.com/rdsproxy/rdsproxy/internal/testiam"
)

// TestClusterQueries runs the example through two emulator doors, the second
// read-only: the schema, the writes and the transaction must reach the
// writer door, and the write on the reader's Queries is refused there.
func TestClusterQueries(t *testing.T) {
	writer, reader, dsn := testiam.Cluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out strings.Builder
	if err := run(ctx, dsn, &out, rdsproxy.WithCredentialsProvider(testiam.Credentials)); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Co-creator of Unix and Go", "write on the reader refused: true"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if writer.Authentications() == 0 || reader.Authentications() == 0 {
		t.Errorf("both doors must be used: writer %d, reader %d authentications", writer.Authentications(), reader.Authentications())
	}
}
