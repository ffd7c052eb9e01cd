package rdsproxy_test

import (
	"context"
	"log"
	"os"

	"github.com/rdsproxy/rdsproxy"
)

// One DSN for both endpoints of the proxy: the default endpoint as the
// writer, the read-only endpoint (read_host) as the reader.
func ExampleOpenCluster() {
	cluster, err := rdsproxy.OpenCluster("postgres://app@my-proxy.proxy-abc.us-east-1.rds.amazonaws.com/appdb?iam=true" +
		"&read_host=my-proxy-ro.endpoint.proxy-abc.us-east-1.rds.amazonaws.com&read_fallback=writer")
	if err != nil {
		log.Fatal(err)
	}
	defer cluster.Close()
	ctx := context.Background()

	var n int
	if err := cluster.Reader().QueryRowContext(ctx, "SELECT count(*) FROM orders").Scan(&n); err != nil {
		log.Fatal(err)
	}
	if _, err := cluster.Writer().ExecContext(ctx, "INSERT INTO orders (item) VALUES ($1)", os.Args[0]); err != nil {
		log.Fatal(err)
	}
}

// A write sent to the reader is refused, not executed: send it to the writer.
func ExampleIsReadOnlyViolation() {
	cluster, err := rdsproxy.OpenCluster(os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer cluster.Close()
	ctx := context.Background()
	const q = "UPDATE orders SET shipped = true WHERE id = $1"
	_, err = cluster.Reader().ExecContext(ctx, q, 42)
	if rdsproxy.IsReadOnlyViolation(err) {
		_, err = cluster.Writer().ExecContext(ctx, q, 42)
	}
	if err != nil {
		log.Fatal(err)
	}
}
