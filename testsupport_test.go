package rdsproxy_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// testSupport are the packages that exist for tests only. They start
// emulators and write files, so no library code may import them.
var testSupport = []string{
	"github.com/rdsproxy/rdsproxy/internal/testclock",
	"github.com/rdsproxy/rdsproxy/internal/testdb",
	"github.com/rdsproxy/rdsproxy/internal/testiam",
}

// TestLibraryDoesNotImportTestSupport lists the non-test imports of every
// package of the module and fails if one outside testSupport imports a
// test-support package.
func TestLibraryDoesNotImportTestSupport(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list imports: %v", err)
	}
	out, err := exec.Command(goTool, "list", "-deps", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "./...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	seen := 0
	for line := range strings.Lines(string(out)) {
		fields := strings.Fields(line)
		if len(fields) == 0 || slices.Contains(testSupport, fields[0]) {
			continue
		}
		seen++
		for _, imp := range fields[1:] {
			if slices.Contains(testSupport, imp) {
				t.Errorf("%s imports the test-support package %s", fields[0], imp)
			}
		}
	}
	if seen == 0 {
		t.Fatalf("go list named no package:\n%s", out)
	}
}
