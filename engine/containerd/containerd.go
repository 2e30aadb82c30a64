package containerd

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"path"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"time"

	versionapi "github.com/containerd/containerd/api/services/version/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/berthhq/berth/engine"
)

// ConfigFile and CertsDir are the names, under the flavor's config folder,
// of what Berth writes for containerd.
const (
	ConfigFile = "config.toml"
	CertsDir   = "certs.d"
)

// criPlugin is the CRI plugin's name in a version 2 config.toml, whose
// registry table holds config_path. containerd 2.x migrates it to
// io.containerd.cri.v1.images when it loads the file.
const criPlugin = "io.containerd.grpc.v1.cri"

// Flavor is containerd, from a package in the layout of containerd's own
// release archive (bin/containerd, bin/containerd-shim-runc-v2, bin/ctr,
// and here bin/runc too; on Windows bin/containerd.exe with
// containerd-shim-runhcs-v1.exe).
type Flavor struct {
	// OS is the platform the daemon runs on; default runtime.GOOS.
	OS string
	// LogDir receives containerd's output when the agent supervises it.
	LogDir string
}

var _ engine.Flavor = (*Flavor)(nil)

// Name is "containerd".
func (*Flavor) Name() string { return "containerd" }

func (f *Flavor) goos() string {
	if f.OS == "" {
		return runtime.GOOS
	}
	return f.OS
}

// Daemon runs <dir>/bin/containerd with the config.toml Berth writes, its
// own bin folder first on PATH: containerd finds its shims there
// (containerd-shim-runc-v2, or containerd-shim-runhcs-v1 on Windows), and
// the runc shim finds the runc of the same package.
func (f *Flavor) Daemon(dir, confDir string) engine.Daemon {
	return engine.PackagedDaemon(f.goos(), "containerd", filepath.Join(dir, "bin"), "containerd",
		[]string{"--config", filepath.Join(confDir, ConfigFile)}, f.LogDir)
}

// join joins path elements with the daemon platform's separator, so that
// a Windows config rendered elsewhere (in tests) reads as on Windows.
func (f *Flavor) join(elem ...string) string {
	if f.goos() == "windows" {
		return strings.Join(elem, `\`)
	}
	return path.Join(elem...)
}

// HostsDir is the certs.d folder of the config rendered into confDir:
// what config.toml's registry config_path names, and what `ctr images pull
// --hosts-dir` takes.
func HostsDir(confDir string) string { return filepath.Join(confDir, CertsDir) }

// RenderConfig writes config.toml and certs.d/<registry>/hosts.toml.
//
// config.toml is the operator's engine.settings with Berth's own keys on
// top: version 2 of the format (which containerd 1.x reads and 2.x
// migrates on load), the gRPC address from engine.endpoint, root from
// engine.dataRoot, and the CRI registry's config_path pointing at the
// certs.d folder beside it. A registry table's `mirrors` and `configs`
// cannot stand beside config_path (containerd refuses to start), so Berth
// removes them and reports them as overridden. Everything else, state
// included, is the operator's to set.
//
// With the cache enabled, each hosts.toml names the cache as a mirror and
// the registry itself as the server, so containerd falls back to the
// registry when the cache is down. The hosts files are written even with
// the cache disabled, without a mirror, so that a cache turned off stops
// being used without stale files.
func (f *Flavor) RenderConfig(in engine.ConfigInput) ([]engine.ConfigFile, error) {
	if in.ConfDir == "" {
		return nil, fmt.Errorf("containerd config: the config folder is not set (engine.ConfigInput.ConfDir)")
	}
	conf := deepClone(in.Settings)
	r := &merger{conf: conf}
	r.set([]string{"version"}, 2)
	if in.Endpoint != "" {
		network, addr, err := parseEndpoint(in.Endpoint)
		if err != nil {
			return nil, err
		}
		if network != "unix" && network != "npipe" {
			return nil, fmt.Errorf("containerd config: engine.endpoint %q: containerd listens on a unix socket or a named pipe; write unix:///run/containerd/containerd.sock or npipe:////./pipe/containerd-containerd", in.Endpoint)
		}
		r.set([]string{"grpc", "address"}, addr)
	}
	if in.DataRoot != "" {
		r.set([]string{"root"}, in.DataRoot)
	}
	registry := []string{"plugins", criPlugin, "registry"}
	r.set(append(slices.Clone(registry), "config_path"), f.join(in.ConfDir, CertsDir))
	r.remove(append(slices.Clone(registry), "mirrors"))
	r.remove(append(slices.Clone(registry), "configs"))
	if r.err != nil {
		return nil, r.err
	}
	data, err := encodeTOML(conf)
	if err != nil {
		return nil, fmt.Errorf("containerd config.toml: %w", err)
	}
	header := "# Written by berth-agent; changes are overwritten. Set engine.settings instead.\n"
	slices.Sort(r.overridden)
	files := []engine.ConfigFile{{Path: ConfigFile, Data: append([]byte(header), data...), Overridden: r.overridden}}

	names := slices.Sorted(maps.Keys(in.Upstreams))
	for _, h := range RenderHosts(f.goos(), in.Mirror, names, in.Upstreams) {
		files = append(files, engine.ConfigFile{Path: path.Join(CertsDir, h.Path), Data: h.Data, Live: true})
	}
	return files, nil
}

// merger sets Berth's keys into the operator's settings and notes each
// operator value it replaced, by its TOML dotted key
// (plugins."io.containerd.grpc.v1.cri".registry.mirrors).
type merger struct {
	conf       map[string]any
	overridden []string
	err        error
}

// set puts v at path, making the tables on the way.
func (m *merger) set(path []string, v any) {
	t, ok := m.table(path[:len(path)-1])
	if !ok {
		return
	}
	k := path[len(path)-1]
	if old, ok := t[k]; ok && !reflect.DeepEqual(normalize(old), normalize(v)) {
		m.overridden = append(m.overridden, dotted(path))
	}
	t[k] = v
}

// remove deletes the key at path if the operator set it.
func (m *merger) remove(path []string) {
	t, ok := m.table(path[:len(path)-1])
	if !ok {
		return
	}
	k := path[len(path)-1]
	if _, ok := t[k]; ok {
		m.overridden = append(m.overridden, dotted(path))
		delete(t, k)
	}
}

func (m *merger) table(path []string) (map[string]any, bool) {
	if m.err != nil {
		return nil, false
	}
	t := m.conf
	for i, k := range path {
		switch next := t[k].(type) {
		case map[string]any:
			t = next
		case nil:
			n := map[string]any{}
			t[k] = n
			t = n
		default:
			m.err = fmt.Errorf("containerd config: engine.settings.%s is a %T, but berth writes a table there; make it a table or remove it", dotted(path[:i+1]), next)
			return nil, false
		}
	}
	return t, true
}

// deepClone copies the settings' tables, so that merging never changes the
// operator's config in memory.
func deepClone(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if t, ok := v.(map[string]any); ok {
			v = deepClone(t)
		}
		out[k] = v
	}
	return out
}

// normalize makes settings decoded from YAML or JSON and Berth's own values
// comparable (int vs float64, []string vs []any).
func normalize(v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		return v
	}
	var out any
	_ = json.Unmarshal(b, &out)
	return out
}

// Probe calls containerd's gRPC Version service at endpoint: the same API
// ctr and the kubelet use, so an answer means containerd serves clients.
func (f *Flavor) Probe(ctx context.Context, endpoint string) (engine.APIStatus, error) {
	network, addr, err := parseEndpoint(endpoint)
	if err != nil {
		return engine.APIStatus{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	// passthrough: the address is handed to the dialer as it is, which
	// then speaks unix sockets and, on Windows, named pipes.
	conn, err := grpc.NewClient("passthrough:///containerd",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return engine.DialEndpoint(ctx, network, addr)
		}),
		grpc.WithAuthority("localhost"),
	)
	if err != nil {
		return engine.APIStatus{}, fmt.Errorf("containerd API %s: %w", endpoint, err)
	}
	defer conn.Close()
	resp, err := versionapi.NewVersionClient(conn).Version(ctx, &emptypb.Empty{})
	if err != nil {
		return engine.APIStatus{}, fmt.Errorf("containerd API %s: version: %w", endpoint, err)
	}
	// containerd's gRPC services are all version v1 (containerd.services.*.v1).
	return engine.APIStatus{Version: resp.GetVersion(), APIVersion: "v1", OS: f.goos(), Arch: runtime.GOARCH}, nil
}

// parseEndpoint splits a containerd endpoint: containerd listens on a
// unix socket or a named pipe, never TCP.
func parseEndpoint(endpoint string) (network, addr string, err error) {
	return engine.ParseEndpoint(endpoint, "containerd", "unix", "npipe")
}
