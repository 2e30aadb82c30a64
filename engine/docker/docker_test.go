package docker

import (
	"flag"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/berthhq/berth/engine"
)

var update = flag.Bool("update", false, "rewrite golden files")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if d := cmp.Diff(string(want), string(got)); d != "" {
		t.Errorf("%s differs (-want +got):\n%s", name, d)
	}
}

func TestRenderConfig(t *testing.T) {
	for _, tc := range []struct {
		name       string
		in         engine.ConfigInput
		overridden []string
	}{
		{"daemon-linux.json", engine.ConfigInput{
			Endpoint: "unix:///var/run/docker.sock", Mirror: "127.0.0.1:5050", LiveRestore: true,
			Settings: map[string]any{"log-driver": "local", "max-concurrent-downloads": float64(6)},
		}, nil},
		{"daemon-windows.json", engine.ConfigInput{
			Endpoint: "npipe:////./pipe/docker_engine", DataRoot: `D:\docker`, Mirror: "127.0.0.1:5050",
		}, nil},
		{"daemon-overridden.json", engine.ConfigInput{
			Endpoint: "unix:///run/b.sock", LiveRestore: true,
			Settings: map[string]any{"hosts": []any{"tcp://0.0.0.0:2375"}, "live-restore": true, "debug": true},
		}, []string{"hosts"}},
		{"daemon-no-cache.json", engine.ConfigInput{Endpoint: "unix:///run/b.sock"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files, err := (&Flavor{}).RenderConfig(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if len(files) != 1 || files[0].Path != "daemon.json" {
				t.Fatalf("files = %+v", files)
			}
			golden(t, tc.name, files[0].Data)
			if !slices.Equal(files[0].Overridden, tc.overridden) {
				t.Errorf("overridden = %v, want %v", files[0].Overridden, tc.overridden)
			}
			again, _ := (&Flavor{}).RenderConfig(tc.in)
			if string(again[0].Data) != string(files[0].Data) {
				t.Error("rendering the same input twice gave different bytes; drift detection needs stable output")
			}
		})
	}
}

func TestDaemonUsesItsOwnFolder(t *testing.T) {
	d := (&Flavor{OS: "linux", LogDir: "/var/lib/berth/logs"}).Daemon("/s/engines/docker/24.0.7", "/s/engines/docker/config")
	if d.Path != "/s/engines/docker/24.0.7/docker/dockerd" {
		t.Errorf("path = %s", d.Path)
	}
	if !slices.Equal(d.Args, []string{"--config-file", "/s/engines/docker/config/daemon.json"}) {
		t.Errorf("args = %v", d.Args)
	}
	if len(d.Env) != 1 || d.Env[0][:len("PATH=/s/engines/docker/24.0.7/docker:")] != "PATH=/s/engines/docker/24.0.7/docker:" {
		t.Errorf("env = %v; PATH must start with the version's own folder", d.Env)
	}
	w := (&Flavor{OS: "windows"}).Daemon(`C:\b\24.0.7`, `C:\b\config`)
	if filepath.Base(w.Path) != "dockerd.exe" {
		t.Errorf("windows daemon = %s", w.Path)
	}
}

func TestPIDFile(t *testing.T) {
	tests := []struct {
		name     string
		os       string
		settings map[string]any
		want     string
	}{
		{"dockerd's default", "linux", nil, "/var/run/docker.pid"},
		{"engine.settings names it", "linux", map[string]any{"pidfile": "/tmp/b/docker.pid"}, "/tmp/b/docker.pid"},
		{"empty means the default", "linux", map[string]any{"pidfile": ""}, "/var/run/docker.pid"},
		{"not a string means the default", "linux", map[string]any{"pidfile": 7}, "/var/run/docker.pid"},
		{"relative, from the daemon's folder /", "linux", map[string]any{"pidfile": "run/docker.pid"}, "/run/docker.pid"},
		{"climbing out stays under /", "linux", map[string]any{"pidfile": "../../x.pid"}, "/x.pid"},
		{"cleaned", "linux", map[string]any{"pidfile": "/run//a/../docker.pid"}, "/run/docker.pid"},
		{"windows: the service manager's business", "windows", map[string]any{"pidfile": "/x.pid"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := (&Flavor{OS: tc.os}).PIDFile(engine.ConfigInput{Settings: tc.settings}); got != tc.want {
				t.Errorf("PIDFile = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestParseEndpoint(t *testing.T) {
	for _, tc := range []struct {
		in, network, addr string
		bad               bool
	}{
		{in: "unix:///var/run/docker.sock", network: "unix", addr: "/var/run/docker.sock"},
		{in: "npipe:////./pipe/docker_engine", network: "npipe", addr: `\\.\pipe\docker_engine`},
		{in: "tcp://127.0.0.1:2375", network: "tcp", addr: "127.0.0.1:2375"},
		{in: "/var/run/docker.sock", bad: true},
		{in: "http://x", bad: true},
		{in: "unix://", bad: true},
	} {
		n, a, err := ParseEndpoint(tc.in)
		if (err != nil) != tc.bad || n != tc.network || a != tc.addr {
			t.Errorf("ParseEndpoint(%q) = %q, %q, %v", tc.in, n, a, err)
		}
	}
}
