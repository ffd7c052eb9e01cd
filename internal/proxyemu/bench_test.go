package proxyemu

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rdsproxy/rdsproxy/internal/testdb"
)

// benchJoin is a statement of realistic length that does not pin: the
// relay's per-statement inspection must stay cheap for it.
const benchJoin = `SELECT o.id, o.created_at, c.name, sum(l.qty * l.price) AS total
FROM orders o JOIN customers c ON c.id = o.customer_id
JOIN order_lines l ON l.order_id = o.id
WHERE o.created_at > now() - interval '1 day' AND c.region = $1
GROUP BY o.id, o.created_at, c.name ORDER BY total DESC LIMIT 10`

// BenchmarkRelay measures a round trip through the emulator to the local
// PostgreSQL: simple protocol (Query), extended protocol with the unnamed
// statement (Parse/Bind/Execute), and a longer statement that is only
// described (so the backend does little work and the relay's share shows).
func BenchmarkRelay(b *testing.B) {
	testdb.Require(b)
	p, _ := startProxy(b)
	c, err := connect(b, p, "postgres", token(b, p.Addr(), region, "postgres", staticCreds))
	require.NoError(b, err)
	ctx := context.Background()

	b.Run("simple", func(b *testing.B) {
		for b.Loop() {
			if _, err := c.Exec(ctx, "SELECT 1").ReadAll(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("extended", func(b *testing.B) {
		args := [][]byte{[]byte("7")}
		for b.Loop() {
			if err := c.ExecParams(ctx, "SELECT $1::int", args, nil, nil, nil).Read().Err; err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("describe-join", func(b *testing.B) {
		for b.Loop() {
			// Parse + Describe + Sync of the unnamed statement; the tables do
			// not exist, so the backend answers with an error at once.
			_, _ = c.Prepare(ctx, "", benchJoin, nil)
		}
	})
}
