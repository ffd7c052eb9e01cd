package rdsproxy

import (
	"errors"
	"net"
	"strconv"
	"testing"
)

// FuzzParseReadHost: any read_host text is either refused with a
// ConfigError naming the key, or read as a host (and port) that joins back
// into an endpoint pgx can dial.
func FuzzParseReadHost(f *testing.F) {
	for _, s := range []string{"reader.example", "reader.example:6432", "[::1]:5433", "::1", "[::1]", "a:b:c", "", ":", "[", "a:0", "a:65536"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		host, port, err := parseReadHost(v)
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Key != keyReadHost {
				t.Fatalf("parseReadHost(%q): %v is not a ConfigError for read_host", v, err)
			}
			return
		}
		if host == "" {
			t.Fatalf("parseReadHost(%q) accepted an empty host", v)
		}
		if port != 0 {
			h, p, err := net.SplitHostPort(net.JoinHostPort(host, strconv.Itoa(int(port))))
			if err != nil || h != host || p != strconv.Itoa(int(port)) {
				t.Fatalf("parseReadHost(%q) = %q, %d: does not join back", v, host, port)
			}
		}
	})
}
