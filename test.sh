#!/usr/bin/env bash
# The project's test command (README "Run the tests"): formatting, vet,
# staticcheck, the race-enabled tests of both modules, the CGO_ENABLED=0
# build and pinning tests, and bounded fuzzing of the parsers.
set -euo pipefail
cd "$(dirname "$0")"
export PATH="/usr/local/go/bin:${GOBIN:-$HOME/go/bin}:$PATH"

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then echo "gofmt needed:"; echo "$unformatted"; exit 1; fi

go vet ./...
if command -v staticcheck >/dev/null 2>&1; then staticcheck ./...; else echo "staticcheck not installed: skipped (CI installs it)"; fi
go test -race -count=1 ./...
# The fault suite's PostgreSQL restart (internal/faults, RELIABILITY.md): it
# restarts the local cluster, so it runs alone, after the parallel package tests.
# The rest of the fault suite runs bounded in ./... above (RDSPROXY_SOAK=1: long mode).
RDSPROXY_FAULTS_RESTART_PG=1 go test -race -count=1 -run '^TestPostgresRestart$' ./internal/faults/
CGO_ENABLED=0 go build ./...
CGO_ENABLED=0 go vet ./...
CGO_ENABLED=0 go test -count=1 ./internal/pinning/
CGO_ENABLED=0 go test -count=1 -run 'Pin|Analyze|ParseConfig' .

# Bounded fuzzing with the committed corpora.
go test -run '^$' -fuzz '^FuzzParseConfig$' -fuzztime "${FUZZTIME:-20s}" .
go test -run '^$' -fuzz '^FuzzAnalyze$' -fuzztime "${FUZZTIME:-20s}" ./internal/pinning/

# The examples module: build and run its tests (the quickstart among them).
(cd examples && go vet ./... && go test -race -count=1 ./...)
# The Lambda example cross-compiled as it is deployed (provided.al2023, arm64).
(cd examples && CGO_ENABLED=0 GOOS=linux GOARCH=arm64 go build -tags lambda.norpc -o /dev/null ./lambda/)

# rdsproxy-lint, the pre-cutover pinning audit (README "Before cutover"), over the
# repository itself. Root module: its *_test.go files pin on purpose (they are the
# pinning check's fixtures), so they are excluded; the rest must be clean.
# Examples module: its deliberate pins carry allow-pin comments; sqlc/dbprepared
# is generated from sqlc.yaml's emit_prepared_queries block (which carries one)
# and cannot keep comments across regeneration, so it is excluded.
# The linter is built with and without cgo: both must give the same verdicts.
lintdir=$(mktemp -d)
go build -o "$lintdir/rdsproxy-lint" ./cmd/rdsproxy-lint
CGO_ENABLED=0 go build -o "$lintdir/rdsproxy-lint-nocgo" ./cmd/rdsproxy-lint
CGO_ENABLED=0 go test -count=1 ./pinlint/
"$lintdir/rdsproxy-lint" -exclude '*_test.go'
(cd examples && "$lintdir/rdsproxy-lint" -exclude 'sqlc/dbprepared')
for bin in rdsproxy-lint rdsproxy-lint-nocgo; do
	(cd examples && "$lintdir/$bin" -format json >"$lintdir/$bin.json") || [ $? -eq 1 ]
	"$lintdir/$bin" -format json ./pinlint/testdata/sql/... >"$lintdir/$bin-sql.json" || [ $? -eq 1 ]
done
cmp "$lintdir/rdsproxy-lint.json" "$lintdir/rdsproxy-lint-nocgo.json"
cmp "$lintdir/rdsproxy-lint-sql.json" "$lintdir/rdsproxy-lint-nocgo-sql.json"
rm -rf "$lintdir"
