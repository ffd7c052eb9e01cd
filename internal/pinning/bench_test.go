package pinning

import (
	"testing"
)

var benchStatements = []struct{ name, sql string }{
	{"select", "SELECT id, email, created_at FROM users WHERE id = $1"},
	{"update", "UPDATE accounts SET balance = balance - $1 WHERE id = $2"},
	{"join", "SELECT o.id, o.note, u.email FROM orders o JOIN users u ON u.id = o.user_id WHERE o.created_at > now() - interval '1 day' AND u.status = 'active' ORDER BY o.id DESC LIMIT 50"},
	{"insert-returning", "INSERT INTO orders (note, tenant) VALUES ($1, $2) RETURNING id"},
}

// BenchmarkPrefilter is the cost every statement pays with cgo: it must not
// allocate.
func BenchmarkPrefilter(b *testing.B) {
	for _, s := range benchStatements {
		b.Run(s.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(s.sql)))
			for b.Loop() {
				if mayPin(s.sql) && s.name != "update" {
					b.Fatal("prefilter says may pin")
				}
			}
		})
	}
}

func TestPrefilterAllocs(t *testing.T) {
	for _, s := range benchStatements {
		require0 := testing.AllocsPerRun(100, func() { mayPin(s.sql) })
		if require0 != 0 {
			t.Fatalf("mayPin(%q) allocates %v times", s.sql, require0)
		}
	}
}

// BenchmarkParsePath is the full back-end (parser with cgo, lexical without)
// on statements that pass the prefilter.
func BenchmarkParsePath(b *testing.B) {
	for _, s := range []struct{ name, sql string }{
		{"update-set", "UPDATE accounts SET balance = balance - $1 WHERE id = $2"},
		{"set", "SET search_path TO app, public"},
	} {
		b.Run(s.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := analyze(s.sql); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkLexical(b *testing.B) {
	b.ReportAllocs()
	sql := "SELECT set_config('app.tenant', $1, true); INSERT INTO t VALUES (1)"
	for b.Loop() {
		analyzeLexical(sql)
	}
}

func BenchmarkAnalyze(b *testing.B) {
	for _, s := range []struct{ name, sql string }{
		{"clean", benchStatements[2].sql},
		{"pinning", "SELECT nextval('order_seq')"},
	} {
		b.Run(s.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Analyze(s.sql); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
