package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rdsproxy/rdsproxy"
	"github.com/rdsproxy/rdsproxy/internal/testiam"
)

// TestClusterGORM runs the example through two emulator doors, the second
// read-only: the migration, the writes and the read-your-writes read must
// reach the writer door (they would fail on the read-only one), the plain
// reads the reader door.
func TestClusterGORM(t *testing.T) {
	writer, reader, dsn := testiam.Cluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out strings.Builder
	if err := run(ctx, dsn, &out, rdsproxy.WithCredentialsProvider(testiam.Credentials)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "quantity 3;") || !strings.Contains(out.String(), "reader read-only: on") {
		t.Errorf("want the fresh row from the writer and the read on the read-only door:\n%s", out.String())
	}
	if writer.Authentications() == 0 || reader.Authentications() == 0 {
		t.Errorf("both doors must be used: writer %d, reader %d authentications", writer.Authentications(), reader.Authentications())
	}
}

// TestClusterDSN: the DSN built from DB_WRITE_HOST and DB_READ_HOST opens a
// cluster (nothing is dialed), and an empty read host leaves read_host out.
func TestClusterDSN(t *testing.T) {
	const w, r = "my-proxy.proxy-abc.us-east-1.rds.amazonaws.com", "my-proxy-ro.endpoint.proxy-abc.us-east-1.rds.amazonaws.com"
	dsn := clusterDSN(w, r, "app", "appdb")
	if want := "postgres://app@" + w + "/appdb?iam=true&read_host=" + r; dsn != want {
		t.Errorf("clusterDSN = %s, want %s", dsn, want)
	}
	cluster, err := rdsproxy.OpenCluster(dsn)
	if err != nil {
		t.Fatal(err)
	}
	if cluster.Reader() == cluster.Writer() {
		t.Error("read_host given: Reader must be a pool of its own")
	}
	cluster.Close()
	if dsn := clusterDSN(w, "", "app", "appdb"); strings.Contains(dsn, "read_host") {
		t.Errorf("no read host: %s", dsn)
	}
}
