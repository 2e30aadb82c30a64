package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

// A config file that does not exist is a config error: exit 2, with the
// path and what to do, whichever command needed it.
func TestMissingConfigExitsTwo(t *testing.T) {
	nope := filepath.Join(t.TempDir(), "nope.yaml")
	for _, args := range [][]string{
		{"health", "--config", nope},
		{"config", "show", "--config", nope},
		{"config", "validate", nope},
	} {
		var stdout, stderr bytes.Buffer
		got := run(args, &stdout, &stderr)
		if got != exitConfig {
			t.Errorf("%v: exit %d, want %d; stderr: %s", args, got, exitConfig, stderr.String())
		}
		if want := nope + ": the config file does not exist"; !strings.Contains(stderr.String(), want) {
			t.Errorf("%v: stderr %q does not say %q", args, stderr.String(), want)
		}
	}
}
