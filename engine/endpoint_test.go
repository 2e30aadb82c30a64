package engine

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseEndpoint(t *testing.T) {
	for _, tc := range []struct {
		endpoint      string
		allowed       []string
		network, addr string
		err           string
	}{
		{"unix:///run/docker.sock", nil, "unix", "/run/docker.sock", ""},
		{"npipe:////./pipe/docker_engine", nil, "npipe", `\\.\pipe\docker_engine`, ""},
		{"tcp://127.0.0.1:2375", nil, "tcp", "127.0.0.1:2375", ""},
		{"tcp://127.0.0.1:2375", []string{"unix", "npipe"}, "", "", `scheme "tcp" not supported for test; want unix, npipe`},
		{"/run/docker.sock", nil, "", "", "want a URL"},
		{"unix://", nil, "", "", "want a URL"},
		{"http://x", nil, "", "", `scheme "http" not supported`},
	} {
		network, addr, err := ParseEndpoint(tc.endpoint, "test", tc.allowed...)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseEndpoint(%q) err = %v, want %q", tc.endpoint, err, tc.err)
			}
			continue
		}
		if err != nil || network != tc.network || addr != tc.addr {
			t.Errorf("ParseEndpoint(%q) = %q, %q, %v; want %q, %q", tc.endpoint, network, addr, err, tc.network, tc.addr)
		}
	}
}

func TestPackagedDaemon(t *testing.T) {
	for _, tc := range []struct {
		goos   string
		logDir string
		want   Daemon
	}{
		{"linux", "/logs", Daemon{Name: "docker", Path: "/e/1/docker/dockerd", Args: []string{"-c"}, LogFile: "/logs/dockerd.log"}},
		{"windows", "", Daemon{Name: "docker", Path: "/e/1/docker/dockerd.exe", Args: []string{"-c"}}},
	} {
		got := PackagedDaemon(tc.goos, "docker", "/e/1/docker", "dockerd", []string{"-c"}, tc.logDir)
		if len(got.Env) != 1 || !strings.HasPrefix(got.Env[0], "PATH=/e/1/docker") {
			t.Errorf("%s: Env = %q, want the package's bin folder first on PATH", tc.goos, got.Env)
		}
		got.Env = nil
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("%s: PackagedDaemon (-want +got):\n%s", tc.goos, d)
		}
	}
}
