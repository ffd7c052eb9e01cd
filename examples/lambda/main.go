// Command lambda is an AWS Lambda function (github.com/aws/aws-lambda-go)
// that queries PostgreSQL through RDS Proxy with IAM authentication.
//
// The *sql.DB lives in package scope: it is opened on the first invocation
// of an execution environment and reused by every warm invocation after it,
// so a warm invocation reuses an open connection and signs no token. Inside
// Lambda (AWS_LAMBDA_FUNCTION_NAME is set) rdsproxy caps the pool at 2
// connections and retires idle ones after 1 minute; credentials come from
// the function's role through the environment.
//
// Build for the provided.al2023 runtime on Graviton:
//
//	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 go build -tags lambda.norpc -o bootstrap ./lambda/
//
// and set DATABASE_URL to the proxy endpoint, e.g.
// postgres://app@my-proxy.proxy-abc.us-east-1.rds.amazonaws.com:5432/appdb?iam=true
package main

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"sync"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/rdsproxy/rdsproxy"
)

// openDB opens the package-scope *sql.DB once per execution environment.
// rdsproxy.Open does not dial: the first query does.
var openDB = sync.OnceValues(func() (*sql.DB, error) {
	dsn := os.Getenv("DATABASE_URL")
	if dsn == "" {
		return nil, fmt.Errorf("DATABASE_URL is not set")
	}
	return rdsproxy.Open(dsn)
})

// Request is the invocation payload.
type Request struct {
	A int `json:"a"`
	B int `json:"b"`
}

// Response is what the function returns.
type Response struct {
	Sum        int `json:"sum"`
	BackendPID int `json:"backend_pid"`
}

func handler(ctx context.Context, req Request) (Response, error) {
	db, err := openDB()
	if err != nil {
		return Response{}, err
	}
	var resp Response
	// ctx carries the invocation's deadline: a slow query fails before
	// Lambda kills the environment.
	err = db.QueryRowContext(ctx, "SELECT $1::int + $2::int, pg_backend_pid()", req.A, req.B).
		Scan(&resp.Sum, &resp.BackendPID)
	return resp, err
}

func main() {
	lambda.Start(handler)
}
