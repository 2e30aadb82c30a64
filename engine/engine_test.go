package engine

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestCheckVersion(t *testing.T) {
	for v, ok := range map[string]bool{
		"24.0.7": true, "20.10.24+dfsg1": true, "1.7.0-rc.1": true,
		"": false, ".": false, "..": false, "../x": false, "a/b": false, `1\2`: false,
		"config": false, "downloads": false, ".lock": false, "24 0": false,
	} {
		if err := CheckVersion(v); (err == nil) != ok {
			t.Errorf("CheckVersion(%q) = %v, want ok=%v", v, err, ok)
		}
	}
}

func TestVersionOf(t *testing.T) {
	m := &Manager{dir: filepath.FromSlash("/s/engines/docker")}
	for exe, want := range map[string]string{
		"/s/engines/docker/24.0.7/docker/dockerd": "24.0.7",
		"/usr/bin/dockerd":                        "",
		"/s/engines/dockerx/1/docker/dockerd":     "",
	} {
		if got := m.versionOf(filepath.FromSlash(exe)); got != want {
			t.Errorf("versionOf(%s) = %q, want %q", exe, got, want)
		}
	}
}

func TestSystemdUnitGolden(t *testing.T) {
	got := SystemdUnit(Daemon{
		Name: "docker",
		Path: "/var/lib/berth/engines/docker/24.0.7/docker/dockerd",
		Args: []string{"--config-file", "/var/lib/berth/engines/docker/config/daemon.json"},
		Env:  []string{"PATH=/var/lib/berth/engines/docker/24.0.7/docker:/usr/bin:/bin"},
	})
	p := filepath.Join("testdata", "berth-docker.service")
	if *update {
		if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(string(want), got); d != "" {
		t.Errorf("unit differs (-want +got):\n%s", d)
	}
}
