// Package examples_test checks that the README's Integrations snippets are
// the code CI runs: each fenced block preceded by
// <!-- snippet: examples/<file> --> must appear in that file line for line,
// up to one common indentation.
package examples_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var snippetRE = regexp.MustCompile("(?s)<!-- snippet: (\\S+) -->\n```[a-z]*\n(.*?)```")

func TestReadmeSnippets(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	matches := snippetRE.FindAllStringSubmatch(string(readme), -1)
	if len(matches) < 8 {
		t.Fatalf("found %d snippets in README.md, want the Integrations section's (at least 8)", len(matches))
	}
	files := map[string]bool{}
	for _, m := range matches {
		path, snippet := m[1], m[2]
		files[path] = true
		src, err := os.ReadFile(filepath.Join("..", filepath.FromSlash(path)))
		if err != nil {
			t.Errorf("README snippet names %s: %v", path, err)
			continue
		}
		if !containsIndented(string(src), snippet) {
			t.Errorf("README snippet is not in %s (copy it verbatim):\n%s", path, snippet)
		}
	}
	for _, want := range []string{"examples/lambda/main.go", "examples/service/main.go", "examples/gorm/main.go",
		"examples/sqlc/main.go", "examples/sqlc/sqlc.yaml", "examples/pgxpool/main.go"} {
		if !files[want] {
			t.Errorf("README has no snippet from %s", want)
		}
	}
}

// containsIndented reports whether the lines of snippet appear consecutively
// in src, each prefixed with the same indentation (blank lines match blank
// lines).
func containsIndented(src, snippet string) bool {
	sn := strings.Split(strings.TrimRight(snippet, "\n"), "\n")
	lines := strings.Split(src, "\n")
	for i := 0; i+len(sn) <= len(lines); i++ {
		first := lines[i]
		if !strings.HasSuffix(first, sn[0]) {
			continue
		}
		indent := first[:len(first)-len(sn[0])]
		if strings.TrimLeft(indent, " \t") != "" {
			continue
		}
		ok := true
		for j, l := range sn {
			want := indent + l
			if l == "" {
				want = ""
			}
			if strings.TrimRight(lines[i+j], " \t") != want {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

func TestContainsIndented(t *testing.T) {
	src := "func f() {\n\tif x {\n\t\treturn\n\t}\n}\n"
	for snippet, want := range map[string]bool{
		"if x {\n\treturn\n}\n": true,
		"if x {\n\treturn\n":    true,
		"if x {\n\t\treturn\n":  false, // wrong relative indentation
		"if y {\n\treturn\n}\n": false,
		"return\n}\n":           false, // the closing brace is less indented
	} {
		if got := containsIndented(src, snippet); got != want {
			t.Errorf("containsIndented(%q) = %v, want %v", snippet, got, want)
		}
	}
}
