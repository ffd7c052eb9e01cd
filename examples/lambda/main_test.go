package main

import (
	"context"
	"testing"

	"github.com/rdsproxy/rdsproxy/internal/testiam"
)

// TestHandlerReusesConnection calls the handler twice in-process, as two
// invocations of one warm execution environment, through the RDS Proxy
// emulator with IAM: the second reuses the first one's connection (same
// backend, no new authentication, no new token).
func TestHandlerReusesConnection(t *testing.T) {
	proxy, dsn := testiam.Start(t)
	// What Lambda sets in the environment: the function name (which selects
	// rdsproxy's Lambda defaults) and the role's credentials and region,
	// which the AWS SDK's default chain reads.
	t.Setenv("AWS_LAMBDA_FUNCTION_NAME", "rdsproxy-example")
	t.Setenv("AWS_ACCESS_KEY_ID", testiam.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", testiam.SecretKey)
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_REGION", testiam.Region)
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
	t.Setenv("DATABASE_URL", dsn)

	ctx := context.Background()
	first, err := handler(ctx, Request{A: 1, B: 2})
	if err != nil {
		t.Fatal(err)
	}
	second, err := handler(ctx, Request{A: 3, B: 4})
	if err != nil {
		t.Fatal(err)
	}
	if first.Sum != 3 || second.Sum != 7 {
		t.Errorf("sums: got %d and %d, want 3 and 7", first.Sum, second.Sum)
	}
	if first.BackendPID != second.BackendPID {
		t.Errorf("the warm invocation used another connection: backend pid %d, then %d", first.BackendPID, second.BackendPID)
	}
	db, err := openDB()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s := db.Stats()
	if s.OpenConnections != 1 || s.MaxOpenConnections != 2 {
		t.Errorf("pool: open=%d max_open=%d, want 1 and the Lambda cap 2", s.OpenConnections, s.MaxOpenConnections)
	}
	if n := proxy.Authentications(); n != 1 {
		t.Errorf("proxy authentications: %d, want 1 (the warm invocation must not reconnect)", n)
	}
}
