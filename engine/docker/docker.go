// Package docker is the Docker Engine flavor: how dockerd of an unpacked
// static release runs, the daemon.json Berth owns, and the Docker API probe.
package docker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"path"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"time"

	"github.com/berthhq/berth/engine"
)

// Flavor is the Docker Engine.
type Flavor struct {
	// OS is the platform the daemon runs on; default runtime.GOOS.
	OS string
	// LogDir receives dockerd's output when the agent supervises it.
	LogDir string
}

var _ engine.Flavor = (*Flavor)(nil)

// Name is "docker".
func (*Flavor) Name() string { return "docker" }

func (f *Flavor) goos() string {
	if f.OS == "" {
		return runtime.GOOS
	}
	return f.OS
}

// Daemon runs <dir>/docker/dockerd, the layout of Docker's static archives,
// with its own folder first on PATH so that it starts the containerd, runc
// and docker-init of the same release.
func (f *Flavor) Daemon(dir, confDir string) engine.Daemon {
	return engine.PackagedDaemon(f.goos(), "docker", filepath.Join(dir, "docker"), "dockerd",
		[]string{"--config-file", filepath.Join(confDir, "daemon.json")}, f.LogDir)
}

// defaultPIDFile is where dockerd running as root on Linux keeps its pid
// file when daemon.json names none.
const defaultPIDFile = "/var/run/docker.pid"

var _ engine.PIDFiler = (*Flavor)(nil)

// PIDFile is dockerd's pid file: engine.settings' "pidfile" (Berth leaves
// that key to the operator), else dockerd's default. dockerd refuses to
// start while the file names a pid that /proc has, even a zombie's. A
// relative path is taken from "/", the folder the daemon runs in. Empty on
// Windows, where the service manager, not the agent, restarts dockerd.
func (f *Flavor) PIDFile(in engine.ConfigInput) string {
	if f.goos() == "windows" {
		return ""
	}
	p, _ := in.Settings["pidfile"].(string)
	if p == "" {
		return defaultPIDFile
	}
	return path.Join("/", p)
}

// RenderConfig writes daemon.json: the operator's engine.settings with
// Berth's own keys on top (API hosts, data root, live-restore, the cache as
// registry mirror). Keys come out sorted, so equal input gives equal bytes
// and drift shows as a byte difference.
func (f *Flavor) RenderConfig(in engine.ConfigInput) ([]engine.ConfigFile, error) {
	conf := maps.Clone(in.Settings)
	if conf == nil {
		conf = map[string]any{}
	}
	own := map[string]any{}
	if in.Endpoint != "" {
		own["hosts"] = []any{in.Endpoint}
	}
	if in.DataRoot != "" {
		own["data-root"] = in.DataRoot
	}
	if in.LiveRestore {
		own["live-restore"] = true
	}
	if in.Mirror != "" {
		own["registry-mirrors"] = []any{"http://" + in.Mirror}
	}
	var overridden []string
	for k, v := range own {
		if old, ok := conf[k]; ok && !reflect.DeepEqual(normalize(old), normalize(v)) {
			overridden = append(overridden, k)
		}
		conf[k] = v
	}
	slices.Sort(overridden)
	data, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("daemon.json: %w", err)
	}
	return []engine.ConfigFile{{Path: "daemon.json", Data: append(data, '\n'), Overridden: overridden}}, nil
}

// normalize makes settings decoded from YAML and Berth's own values
// comparable ([]string vs []any).
func normalize(v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		return v
	}
	var out any
	_ = json.Unmarshal(b, &out)
	return out
}

// Probe calls /_ping and /version on the Docker API at endpoint.
func (f *Flavor) Probe(ctx context.Context, endpoint string) (engine.APIStatus, error) {
	c, err := NewClient(endpoint)
	if err != nil {
		return engine.APIStatus{}, err
	}
	defer c.Close()
	return c.Version(ctx)
}

// Client is a minimal Docker API client: the agent needs a handful of calls
// and no dependency on the Docker SDK.
type Client struct {
	hc   *http.Client
	base string
}

// NewClient returns a client for endpoint (unix://, npipe:// or tcp://).
func NewClient(endpoint string) (*Client, error) {
	network, addr, err := ParseEndpoint(endpoint)
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return engine.DialEndpoint(ctx, network, addr)
		},
		MaxIdleConns:    2,
		IdleConnTimeout: 30 * time.Second,
	}
	return &Client{hc: &http.Client{Transport: tr}, base: "http://docker"}, nil
}

// Close releases idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// Ping asks the engine whether its API is up.
func (c *Client) Ping(ctx context.Context) error {
	_, err := c.get(ctx, "/_ping")
	return err
}

// Version pings the engine and returns its version.
func (c *Client) Version(ctx context.Context) (engine.APIStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := c.get(ctx, "/_ping"); err != nil {
		return engine.APIStatus{}, err
	}
	body, err := c.get(ctx, "/version")
	if err != nil {
		return engine.APIStatus{}, err
	}
	var v struct {
		Version    string
		APIVersion string `json:"ApiVersion"`
		Os         string
		Arch       string
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return engine.APIStatus{}, fmt.Errorf("docker API /version: %w", err)
	}
	return engine.APIStatus{Version: v.Version, APIVersion: v.APIVersion, OS: v.Os, Arch: v.Arch}, nil
}

// maxBody bounds what the agent reads of an API answer.
const maxBody = 4 << 20

func (c *Client) get(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("docker API %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, fmt.Errorf("docker API %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("docker API %s: %s: %s", path, resp.Status, bytes.TrimSpace(body))
	}
	return body, nil
}

// ParseEndpoint splits a Docker API endpoint: unix, npipe or tcp.
func ParseEndpoint(endpoint string) (network, addr string, err error) {
	return engine.ParseEndpoint(endpoint, "docker")
}
