package iamauth

import (
	"errors"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// RDS host name suffixes, commercial and China partitions. GovCloud uses the
// commercial suffix with us-gov-* regions. ISO partitions (c2s.ic.gov,
// sc2s.sgov.gov) are not recognised: their users configure the region.
var rdsSuffixes = []string{".rds.amazonaws.com", ".rds.amazonaws.com.cn"}

// RegionFromHost derives the AWS region from an RDS host name:
//
//	<proxy>.proxy-<id>.<region>.rds.amazonaws.com                 RDS Proxy default endpoint
//	<endpoint>.endpoint.proxy-<id>.<region>.rds.amazonaws.com     RDS Proxy custom endpoint
//	<cluster>.cluster-<id>.<region>.rds.amazonaws.com             Aurora writer (also cluster-ro-, cluster-custom-)
//	<instance>.<id>.<region>.rds.amazonaws.com                    DB instance
//
// and the same under .rds.amazonaws.com.cn. A port (host:port), a trailing dot
// and upper case are tolerated. Anything else (IP addresses, localhost, CNAMEs
// of your own) returns false: the token must then be signed with an explicitly
// configured region.
func RegionFromHost(host string) (string, bool) {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	var rest string
	for _, suf := range rdsSuffixes {
		if r, ok := strings.CutSuffix(host, suf); ok {
			rest = r
			break
		}
	}
	if rest == "" {
		return "", false
	}
	labels := strings.Split(rest, ".")
	region := labels[len(labels)-1]
	if !ValidRegion(region) {
		return "", false
	}
	switch {
	case len(labels) == 3:
		// <name>.<id or proxy-/cluster-...id>.<region>
		if labels[0] == "" || labels[1] == "" {
			return "", false
		}
	case len(labels) == 4:
		// <endpoint>.endpoint.proxy-<id>.<region>
		if labels[0] == "" || labels[1] != "endpoint" || !strings.HasPrefix(labels[2], "proxy-") {
			return "", false
		}
	default:
		return "", false
	}
	return region, true
}

// ValidRegion accepts region names such as us-east-1, eu-central-2,
// us-gov-west-1, cn-northwest-1, ap-southeast-7: lower-case letter groups
// separated by '-', ending with a number.
func ValidRegion(r string) bool {
	parts := strings.Split(r, "-")
	if len(parts) < 3 {
		return false
	}
	for i, p := range parts {
		if p == "" {
			return false
		}
		last := i == len(parts)-1
		for _, c := range p {
			if last && (c < '0' || c > '9') {
				return false
			}
			if !last && (c < 'a' || c > 'z') {
				return false
			}
		}
	}
	return true
}

// Server messages that identify IAM problems at RDS Proxy.
const (
	msgAuthFailed = "IAM authentication failed"
	msgThrottled  = "too many competing requests"
)

// IsAuthFailure reports whether err is the server rejecting the password (the
// token): SQLSTATE 28P01 (invalid_password) or 28000
// (invalid_authorization_specification), or RDS Proxy's "IAM authentication
// failed for user ..." text. The connector answers it by invalidating the
// cached token and dialing once more with a fresh one.
//
// RDS Proxy's throttling message ("The IAM authentication failed because of too
// many competing requests.") is deliberately NOT an auth failure even though it
// contains the same words: re-signing and redialing at once would add load to
// the throttle. See IsThrottled.
func IsAuthFailure(err error) bool {
	if err == nil || IsThrottled(err) {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (pgErr.Code == "28P01" || pgErr.Code == "28000") {
		return true
	}
	return strings.Contains(err.Error(), msgAuthFailed)
}

// IsThrottled reports RDS Proxy's IAM throttling error.
func IsThrottled(err error) bool {
	return err != nil && strings.Contains(err.Error(), msgThrottled)
}
