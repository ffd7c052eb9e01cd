package iamauth

import (
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
)

func TestRegionFromHost(t *testing.T) {
	for _, tc := range []struct {
		host, region string
		ok           bool
	}{
		{"myproxy.proxy-c0abc123xyz.us-east-1.rds.amazonaws.com", "us-east-1", true},
		{"ro.endpoint.proxy-c0abc123xyz.eu-west-2.rds.amazonaws.com", "eu-west-2", true},
		{"mycluster.cluster-c0abc123xyz.eu-central-1.rds.amazonaws.com", "eu-central-1", true},
		{"mycluster.cluster-ro-c0abc123xyz.ap-southeast-2.rds.amazonaws.com", "ap-southeast-2", true},
		{"reports.cluster-custom-c0abc123xyz.sa-east-1.rds.amazonaws.com", "sa-east-1", true},
		{"mydb.c0abc123xyz.us-west-2.rds.amazonaws.com", "us-west-2", true},
		{"mydb.c0abc123xyz.us-gov-west-1.rds.amazonaws.com", "us-gov-west-1", true},
		{"myproxy.proxy-c0abc123xyz.cn-north-1.rds.amazonaws.com.cn", "cn-north-1", true},
		{"mydb.c0abc123xyz.cn-northwest-1.rds.amazonaws.com.cn", "cn-northwest-1", true},
		{"MyProxy.Proxy-C0ABC.US-EAST-1.RDS.AMAZONAWS.COM.", "us-east-1", true},
		{"myproxy.proxy-c0abc.us-east-1.rds.amazonaws.com:5432", "us-east-1", true},

		{"localhost", "", false},
		{"127.0.0.1", "", false},
		{"::1", "", false},
		{"", "", false},
		{"db.example.com", "", false},
		{"rds.amazonaws.com", "", false},
		{"us-east-1.rds.amazonaws.com", "", false},
		{"c0abc.us-east-1.rds.amazonaws.com", "", false},               // too few labels
		{"a.b.c.d.us-east-1.rds.amazonaws.com", "", false},             // too many labels
		{"x.other.proxy-c0abc.us-east-1.rds.amazonaws.com", "", false}, // 4 labels but not a proxy endpoint
		{"mydb.c0abc.notaregion.rds.amazonaws.com", "", false},
		{"mydb.c0abc.us-east-x.rds.amazonaws.com", "", false},
		{"mydb.c0abc.us-east-1.rds.amazonaws.com.evil.example", "", false},
		{"mydb.c0abc.us-east-1.redshift.amazonaws.com", "", false},
		{".c0abc.us-east-1.rds.amazonaws.com", "", false},
	} {
		t.Run(tc.host, func(t *testing.T) {
			region, ok := RegionFromHost(tc.host)
			assert.Equal(t, tc.ok, ok)
			assert.Equal(t, tc.region, region)
		})
	}
}

func TestIsAuthFailure(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"28P01", &pgconn.PgError{Severity: "FATAL", Code: "28P01", Message: "password authentication failed"}, true},
		{"28000 wrapped", fmt.Errorf("connect: %w", &pgconn.PgError{Code: "28000", Message: "x"}), true},
		{"proxy text", errors.New(`FATAL: IAM authentication failed for user app. Check the IAM token for this user and try again.`), true},
		{"throttled", errors.New("The IAM authentication failed because of too many competing requests."), false},
		{"throttled with code", &pgconn.PgError{Code: "28000", Message: "The IAM authentication failed because of too many competing requests."}, false},
		{"other pg error", &pgconn.PgError{Code: "57P01"}, false},
		{"borrow timeout", errors.New("Timed-out waiting to acquire database connection."), false},
		{"network", errors.New("dial tcp: connection refused"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, IsAuthFailure(tc.err))
		})
	}
	assert.True(t, IsThrottled(errors.New("The IAM authentication failed because of too many competing requests.")))
}
