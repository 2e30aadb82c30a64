package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berthhq/berth/internal/cli"
)

// A config file that does not exist is a config error: exit 2, with the
// path and what to do, whichever command needed it.
func TestMissingConfigExitsTwo(t *testing.T) {
	nope := filepath.Join(t.TempDir(), "nope.yaml")
	for _, args := range [][]string{
		{"health", "--config", nope},
		{"--config", nope, "health"}, // flags before the command too
		{"config", "show", "--config", nope},
		{"config", "validate", nope},
	} {
		var stdout, stderr bytes.Buffer
		got := run(args, &stdout, &stderr)
		if got != cli.ExitUsage {
			t.Errorf("%v: exit %d, want %d; stderr: %s", args, got, cli.ExitUsage, stderr.String())
		}
		if want := nope + ": the config file does not exist"; !strings.Contains(stderr.String(), want) {
			t.Errorf("%v: stderr %q does not say %q", args, stderr.String(), want)
		}
	}
}
