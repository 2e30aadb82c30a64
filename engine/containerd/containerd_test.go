package containerd

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	versionapi "github.com/containerd/containerd/api/services/version/v1"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/berthhq/berth/engine"
	"github.com/berthhq/berth/internal/testenv"
)

// golden compares the rendered files, joined, with testdata/<name>.
func golden(t *testing.T, name string, files []engine.ConfigFile) {
	t.Helper()
	var all strings.Builder
	for _, f := range files {
		all.WriteString("--- " + f.Path)
		if f.Live {
			all.WriteString(" (live)")
		}
		all.WriteString("\n")
		all.Write(f.Data)
	}
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, []byte(all.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (go test -update writes it)", err)
	}
	if d := cmp.Diff(string(want), all.String()); d != "" {
		t.Errorf("%s (-want +got):\n%s", name, d)
	}
}

func TestRenderConfigGolden(t *testing.T) {
	upstreams := map[string]string{
		"docker.io":              "",
		"myregistry.azurecr.io":  "",
		"registry.internal:5000": "http://127.0.0.1:5000",
	}
	for _, tc := range []struct {
		name       string
		goos       string
		in         engine.ConfigInput
		overridden []string
	}{
		{
			name: "config-linux.golden", goos: "linux",
			in: engine.ConfigInput{
				Endpoint: "unix:///run/containerd/containerd.sock", DataRoot: "/mnt/containerd", Mirror: "127.0.0.1:5050",
				Upstreams: upstreams, ConfDir: "/var/lib/berth/engines/containerd/config",
				Settings: map[string]any{
					"state":     "/run/berth-containerd",
					"oom_score": float64(-999), // as JSON decodes it
					"debug":     map[string]any{"level": "info"},
					"plugins": map[string]any{
						"io.containerd.grpc.v1.cri": map[string]any{
							"sandbox_image": "mcr.microsoft.com/oss/kubernetes/pause:3.9",
							"containerd":    map[string]any{"snapshotter": "overlayfs"},
						},
					},
				},
			},
		},
		{
			name: "config-windows.golden", goos: "windows",
			in: engine.ConfigInput{
				Endpoint: "npipe:////./pipe/containerd-containerd", DataRoot: `D:\containerd`, Mirror: "127.0.0.1:5050",
				Upstreams: upstreams, ConfDir: `C:\ProgramData\Berth\engines\containerd\config`,
			},
		},
		{
			name: "config-no-cache.golden", goos: "linux",
			in: engine.ConfigInput{Endpoint: "unix:///run/containerd/containerd.sock", ConfDir: "/var/lib/berth/engines/containerd/config"},
		},
		{
			// Berth's keys win; mirrors and configs cannot stand beside
			// config_path and go.
			name: "config-overridden.golden", goos: "linux",
			in: engine.ConfigInput{
				Endpoint: "unix:///run/containerd/containerd.sock", Mirror: "127.0.0.1:5050", DataRoot: "/mnt/containerd",
				ConfDir: "/var/lib/berth/engines/containerd/config",
				Settings: map[string]any{
					"version": 3,
					"root":    "/var/lib/containerd",
					"grpc":    map[string]any{"address": "/run/other.sock", "max_recv_message_size": 16777216},
					"plugins": map[string]any{"io.containerd.grpc.v1.cri": map[string]any{"registry": map[string]any{
						"config_path": "/etc/containerd/certs.d",
						"mirrors":     map[string]any{"docker.io": map[string]any{"endpoint": []any{"https://mirror.example"}}},
					}}},
				},
			},
			overridden: []string{"grpc.address", `plugins."io.containerd.grpc.v1.cri".registry.config_path`, `plugins."io.containerd.grpc.v1.cri".registry.mirrors`, "root", "version"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := normalize(tc.in.Settings)
			files, err := (&Flavor{OS: tc.goos}).RenderConfig(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tc.name, files)
			if d := cmp.Diff(tc.overridden, files[0].Overridden); d != "" {
				t.Errorf("overridden (-want +got):\n%s", d)
			}
			if d := cmp.Diff(before, normalize(tc.in.Settings)); d != "" {
				t.Errorf("RenderConfig changed the operator's settings:\n%s", d)
			}
		})
	}
}

func TestRenderConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   engine.ConfigInput
		want string
	}{
		{"no conf dir", engine.ConfigInput{}, "config folder"},
		{"tcp endpoint", engine.ConfigInput{ConfDir: "/c", Endpoint: "tcp://127.0.0.1:2375"}, "not supported for containerd"},
		{"plugins not a table", engine.ConfigInput{ConfDir: "/c", Settings: map[string]any{"plugins": "x"}}, "engine.settings.plugins is a string"},
		{"null value", engine.ConfigInput{ConfDir: "/c", Settings: map[string]any{"debug": map[string]any{"level": nil}}}, "debug.level: TOML has no null"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := (&Flavor{OS: "linux"}).RenderConfig(tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to say %q", err, tc.want)
			}
		})
	}
}

func TestTOMLValues(t *testing.T) {
	got, err := encodeTOML(map[string]any{
		"s":     "a \"q\" \\ \x01 é",
		"f":     1.5,
		"i":     int64(-3),
		"list":  []any{"a", 1, true},
		"inl":   []any{map[string]any{"k": "v"}, "x"},
		"tbl":   []any{map[string]any{"n": 1}, map[string]any{"n": 2}},
		"a.b":   map[string]any{"c d": "e"},
		"empty": map[string]any{},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `f = 1.5
i = -3
inl = [{k = "v"}, "x"]
list = ["a", 1, true]
s = "a \"q\" \\ \u0001 é"

["a.b"]
"c d" = "e"

[empty]

[[tbl]]
n = 1

[[tbl]]
n = 2
`
	if d := cmp.Diff(want, string(got)); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}

func TestDaemon(t *testing.T) {
	d := (&Flavor{OS: "linux", LogDir: "/var/lib/berth/logs"}).Daemon("/e/1.7.0", "/e/config")
	if d.Name != "containerd" || d.Path != "/e/1.7.0/bin/containerd" || d.LogFile != "/var/lib/berth/logs/containerd.log" {
		t.Errorf("daemon = %+v", d)
	}
	if d := cmp.Diff([]string{"--config", "/e/config/config.toml"}, d.Args); d != "" {
		t.Errorf("args (-want +got):\n%s", d)
	}
	if len(d.Env) != 1 || !strings.HasPrefix(d.Env[0], "PATH=/e/1.7.0/bin:") {
		t.Errorf("env = %q: the package's bin folder must come first on PATH", d.Env)
	}
	if w := (&Flavor{OS: "windows"}).Daemon(`C:\e\1.7.0`, `C:\e\config`); !strings.HasSuffix(w.Path, "containerd.exe") {
		t.Errorf("windows daemon path = %q", w.Path)
	}
}

// fakeVersion is containerd's Version service as a test server.
type fakeVersion struct {
	versionapi.UnimplementedVersionServer
}

func (fakeVersion) Version(context.Context, *emptypb.Empty) (*versionapi.VersionResponse, error) {
	return &versionapi.VersionResponse{Version: "v9.9.9-test", Revision: "abc"}, nil
}

// TestProbe speaks the real gRPC protocol over a unix socket; the e2e test
// in cmd/agent probes a real containerd.
func TestProbe(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "c.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Skipf("unix sockets: %v", err)
	}
	srv := grpc.NewServer()
	versionapi.RegisterVersionServer(srv, fakeVersion{})
	go srv.Serve(l)
	defer srv.Stop()
	st, err := (&Flavor{}).Probe(context.Background(), "unix://"+sock)
	if err != nil {
		t.Fatal(err)
	}
	if st.Version != "v9.9.9-test" || st.APIVersion != "v1" {
		t.Errorf("probe = %+v", st)
	}
	srv.Stop()
	if _, err := (&Flavor{}).Probe(context.Background(), "unix://"+sock); err == nil || !strings.Contains(err.Error(), "containerd API") {
		t.Errorf("probe of a stopped server: %v", err)
	}
	if _, err := (&Flavor{}).Probe(context.Background(), "tcp://127.0.0.1:1"); err == nil {
		t.Error("probe of a tcp endpoint should fail: containerd has none")
	}
}

// TestContainerdReadsConfig hands the rendered config.toml to a real
// containerd (`containerd config dump` parses it and prints what it will
// run with), so that the TOML writer and the keys are containerd's.
func TestContainerdReadsConfig(t *testing.T) {
	bin := testenv.NeedBinary(t, "containerd")
	dir := t.TempDir()
	files, err := (&Flavor{}).RenderConfig(engine.ConfigInput{
		Endpoint: "unix://" + filepath.Join(dir, "c.sock"), DataRoot: filepath.Join(dir, "root"), Mirror: "127.0.0.1:5050", ConfDir: dir,
		Settings: map[string]any{"oom_score": float64(-999), "grpc": map[string]any{"max_recv_message_size": 16777216}},
	})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, ConfigFile)
	if err := os.WriteFile(p, files[0].Data, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "--config", p, "config", "dump").CombinedOutput()
	if err != nil {
		t.Fatalf("containerd config dump: %v\n%s", err, out)
	}
	for _, want := range []string{
		`config_path = "` + filepath.Join(dir, CertsDir) + `"`,
		`root = "` + filepath.Join(dir, "root") + `"`,
		`address = "` + filepath.Join(dir, "c.sock") + `"`,
		"oom_score = -999",
		"max_recv_message_size = 16777216",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("containerd's view of the config lacks %s:\n%s", want, out)
		}
	}
}
