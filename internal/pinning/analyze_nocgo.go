//go:build !cgo

package pinning

// Without cgo there is no PostgreSQL parser (pg_query_go needs cgo), so the
// lexical classifier gives the whole verdict. It never reports a parse error.
func analyze(sql string) (Report, error) {
	return analyzeLexical(sql), nil
}

// parserAvailable tells tests which back-end is compiled in.
const parserAvailable = false
