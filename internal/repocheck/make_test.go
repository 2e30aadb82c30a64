package repocheck

import (
	"os/exec"
	"strings"
	"testing"
)

// make package must not pretend: until it builds SPEC's packages it fails
// and says so, rather than exiting 0 having built nothing.
func TestMakePackageSaysWhatItDoes(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("no make on this machine")
	}
	cmd := exec.Command("make", "--no-print-directory", "package")
	cmd.Dir = "../.."
	out, err := cmd.CombinedOutput()
	if err == nil && !strings.Contains(string(out), "dist/") {
		t.Fatalf("make package exited 0 without naming what it built in dist/:\n%s", out)
	}
	if err != nil && !strings.Contains(string(out), "not built yet") {
		t.Fatalf("make package failed without saying why:\n%s", out)
	}
}
