//go:build linux

package main

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berthhq/berth/imagecache/cas"
	"github.com/berthhq/berth/imagecache/imagetest"

	"github.com/berthhq/berth/internal/azstore"
	"github.com/berthhq/berth/internal/testenv"
	"github.com/berthhq/berth/internal/testenv/azurite"
	"github.com/berthhq/berth/internal/testenv/dockerd"
	"github.com/berthhq/berth/internal/testenv/registry"
	"github.com/berthhq/berth/internal/testenv/secretlog"
	"github.com/berthhq/berth/packaging/enginebundle/enginebundletest"
	"github.com/berthhq/berth/packaging/tufrepo"
)

// Versions of the containerd test packages, both Debian's containerd.
const (
	ctrdA = "1.6.20-1"
	ctrdB = "1.6.20-2"
)

// newContainerdRig is newRig for the containerd flavor: an isolated
// containerd host (socket, root, state under a temporary folder), signed
// containerd packages in Azurite and an agent.yaml with engine.flavor
// containerd. The rig's Docker host is nil.
func newContainerdRig(t *testing.T, versions ...string) (*rig, *dockerd.ContainerdHost) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts containerd and Azurite")
	}
	host := dockerd.NewContainerdHost(t)
	az := azurite.Start(t)
	work := t.TempDir()
	repo := filepath.Join(work, "repo")
	if err := tufrepo.Init(repo); err != nil {
		t.Fatal(err)
	}
	for _, v := range versions {
		p := enginebundletest.Containerd(t, work, v, false)
		if _, err := tufrepo.Add(repo, tufrepo.Package{Kind: "engine", Flavor: "containerd", Version: v, OS: "linux", Arch: "amd64"}, p); err != nil {
			t.Fatal(err)
		}
		os.Remove(p)
	}
	keyFile := az.KeyFile(t)
	cred := azstore.Credential{Auth: "shared-key", KeyFile: keyFile}
	if err := tufrepo.Publish(context.Background(), repo, az.ContainerURL("releases"), cred); err != nil {
		t.Fatal(err)
	}
	b := &rig{t: t, az: az, repo: repo, keyFile: keyFile, config: filepath.Join(work, "agent.yaml")}
	secretlog.For(t).Logs(filepath.Join(host.Dir, "logs")) // Azurite registered its key
	b.cfg = map[string]any{
		"agent": map[string]any{"stateDir": host.Dir},
		"engine": map[string]any{
			"flavor":   "containerd",
			"endpoint": host.Endpoint,
			"dataRoot": host.DataRoot,
			"settings": host.Settings,
			"releases": map[string]any{
				"url":      az.ContainerURL("releases"),
				"auth":     "shared-key",
				"keyFile":  keyFile,
				"rootFile": filepath.Join(repo, "metadata", "root.json"),
			},
			"upgrade": map[string]any{"healthTimeout": "30s"},
		},
		"cache":  map[string]any{"enabled": false},
		"health": map[string]any{"listen": testenv.FreePort(t)},
	}
	b.writeConfig("")
	return b, host
}

// TestContainerdEndToEnd: the agent installs containerd from a signed
// package, runs it supervised on its own socket and reports it healthy with
// the version containerd's gRPC API gives; upgrade and rollback work as for
// Docker. With the cache on, `ctr images pull --hosts-dir` through the
// certs.d the agent writes goes through the cache, and with the upstream
// registry killed a deleted image is pulled again from the cache alone.
// cache.prewarm and `berth-agent pull` pull through the cache into
// containerd's k8s.io namespace with the engine's own ctr.
func TestContainerdEndToEnd(t *testing.T) {
	b, host := newContainerdRig(t, ctrdA, ctrdB)
	ctx := context.Background()
	confDir := filepath.Join(host.Dir, "engines", "containerd", "config")
	hostsDir := filepath.Join(confDir, "certs.d")

	b.mustRun("engine", "install", ctrdA)
	st := b.status()
	wantHealthyOn(t, st, ctrdA)
	if st.Flavor != "containerd" || !strings.HasPrefix(strings.TrimPrefix(st.API.Version, "v"), "1.") || st.API.APIVersion != "v1" {
		t.Errorf("status: flavor %q, API %+v; want containerd's own version from its gRPC API", st.Flavor, st.API)
	}
	t.Logf("containerd %s healthy, API %s, runner %s, endpoint %s", st.API.Version, st.API.APIVersion, st.Runner, st.Endpoint)
	if _, err := os.Stat(filepath.Join(host.DataRoot, "io.containerd.content.v1.content")); err != nil {
		t.Errorf("containerd does not use engine.dataRoot as its root: %v", err)
	}
	conf, err := os.ReadFile(filepath.Join(confDir, "config.toml"))
	if err != nil || !strings.Contains(string(conf), `config_path = "`+hostsDir+`"`) {
		t.Fatalf("config.toml does not point the registry config_path at %s: %v\n%s", hostsDir, err, conf)
	}
	if out := b.mustRun("engine", "status"); !strings.Contains(out, "containerd") {
		t.Errorf("engine status:\n%s", out)
	}

	// The lifecycle is the flavor-neutral one: upgrade, then roll back.
	b.mustRun("engine", "upgrade", ctrdB)
	st = b.status()
	wantHealthyOn(t, st, ctrdB)
	if st.Previous != ctrdA {
		t.Errorf("previous = %q, want %s", st.Previous, ctrdA)
	}
	b.mustRun("engine", "rollback")
	wantHealthyOn(t, b.status(), ctrdA)

	// The cache on, the upstream a real registry.
	reg := registry.Start(t, registry.Options{})
	img := imagetest.SeedBusybox(t, reg.URL, "team/tools", "v1")
	ref := reg.Addr + "/team/tools:v1"
	// Images of their own content (the busybox layer is shared), so that
	// their layers in the disk tier show which pull went through the cache.
	warm := imagetest.Seed(t, reg.URL, "team/warm", "v1", tarLayer(t, "prewarmed"))
	warmRef := reg.Addr + "/team/warm:v1"
	listen := testenv.FreePort(t)
	cacheDir := filepath.Join(host.Dir, "cache")
	b.cfg["cache"] = map[string]any{
		"enabled":   true,
		"listen":    listen,
		"local":     map[string]any{"dir": cacheDir, "maxSize": "1GiB"},
		"upstreams": map[string]any{reg.Addr: map[string]any{"endpoint": reg.URL}},
		"prewarm":   []any{warmRef},
	}
	b.writeConfig(ctrdA)
	logs := b.startDaemon()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agent log:\n%s", logs.String())
		}
	})
	regHosts := filepath.Join(hostsDir, reg.Addr, "hosts.toml")
	waitFor(t, 30*time.Second, "the daemon to serve the cache and write "+regHosts, func() bool {
		h, _ := os.ReadFile(regHosts)
		return reachable(listen) && strings.Contains(string(h), `[host."http://`+listen+`"]`)
	})
	if h, _ := os.ReadFile(regHosts); !strings.Contains(string(h), `server = "`+reg.URL+`"`) {
		t.Errorf("%s does not fall back to the registry:\n%s", regHosts, h)
	}
	if h, _ := os.ReadFile(filepath.Join(hostsDir, "docker.io", "hosts.toml")); !strings.Contains(string(h), listen) {
		t.Errorf("docker.io's hosts.toml does not name the cache:\n%s", h)
	}
	wantHealthyOn(t, b.status(), ctrdA)

	ctr := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		out, err := host.Ctr(ctx, args...)
		if err != nil {
			t.Fatalf("ctr %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	inCache := func(d cas.Digest) bool {
		_, err := os.Stat(filepath.Join(cacheDir, "blobs", "sha256", d.Hex()[:2], d.Hex()))
		return err == nil
	}

	// cache.prewarm: the daemon pulls with the engine's own ctr into
	// k8s.io, the kubelet's namespace (the CRI plugin is not disabled).
	waitFor(t, 30*time.Second, "prewarm to pull "+warmRef+" into containerd's k8s.io namespace", func() bool {
		out, _ := host.Ctr(ctx, "--namespace", "k8s.io", "images", "ls", "-q")
		return strings.Contains(string(out), warmRef)
	})
	if !inCache(warm.Layers[0].Digest) {
		t.Errorf("the disk tier lacks %s's layer: prewarm did not pull through the cache", warmRef)
	}
	waitFor(t, 10*time.Second, "the daemon to log the prewarm", func() bool {
		return strings.Contains(logs.String(), "prewarmed images")
	})
	if l := logs.String(); !strings.Contains(l, "pulled into containerd") || !strings.Contains(l, filepath.Join(host.Dir, "engines", "containerd", ctrdA, "bin", "ctr")) {
		t.Errorf("the daemon's log does not show the pull with the active version's ctr:\n%s", l)
	}

	// hosts.toml names the cache as http://, so no --plain-http is needed.
	ctr("images", "pull", "--hosts-dir", hostsDir, ref)
	if out := ctr("images", "ls", "-q"); !strings.Contains(out, ref) {
		t.Fatalf("containerd does not list %s after the pull:\n%s", ref, out)
	}
	layer := img.Image.Layers[0].Digest
	if _, err := os.Stat(filepath.Join(cacheDir, "blobs", "sha256", layer.Hex()[:2], layer.Hex())); err != nil {
		t.Fatalf("the cache's disk tier lacks the layer %s: the pull did not go through the cache: %v", layer, err)
	}
	metricsURL := "http://" + b.cfg["health"].(map[string]any)["listen"].(string) + "/metrics"
	if m := httpGet(t, metricsURL); !strings.Contains(m, `berth_cache_upstream_fetches_total{registry="`+reg.Addr+`"}`) {
		t.Errorf("/metrics does not count fetches from %s", reg.Addr)
	}
	if reg.CountRequests(t, "GET", "/blobs/") == 0 {
		t.Fatal("the upstream saw no blob GET")
	}

	// berth-agent pull: through the cache into k8s.io, the layer stored on
	// the way; not a terminal, so progress is logged.
	agentImg := imagetest.Seed(t, reg.URL, "team/agentpull", "v1", tarLayer(t, "berth-agent pull"))
	agentRef := reg.Addr + "/team/agentpull:v1"
	fetches := metricValue(t, httpGet(t, metricsURL), `berth_cache_upstream_fetches_total{registry="`+reg.Addr+`"}`)
	code, out, stderr := b.run("pull", agentRef)
	if code != 0 || !strings.Contains(out, "pulled "+agentRef+" (containerd namespace k8s.io)") {
		t.Fatalf("berth-agent pull %s: exit %d\n%s\n%s", agentRef, code, out, stderr)
	}
	t.Logf("berth-agent pull's log:\n%s", stderr)
	for _, want := range []string{"pulling into containerd", "status=done", "pulled into containerd", "size="} {
		if !strings.Contains(stderr, want) {
			t.Errorf("berth-agent pull's log lacks %q", want)
		}
	}
	if out := ctr("--namespace", "k8s.io", "images", "ls", "-q"); !strings.Contains(out, agentRef) {
		t.Errorf("containerd's k8s.io namespace lacks %s after berth-agent pull:\n%s", agentRef, out)
	}
	if !inCache(agentImg.Layers[0].Digest) {
		t.Errorf("the disk tier lacks %s's layer: berth-agent pull did not go through the cache", agentRef)
	}
	if n := metricValue(t, httpGet(t, metricsURL), `berth_cache_upstream_fetches_total{registry="`+reg.Addr+`"}`); n <= fetches {
		t.Errorf("upstream fetches through the cache %v → %v: berth-agent pull did not use the cache", fetches, n)
	}
	// An image the registry does not have: exit 1, and an error that names
	// it, ctr's exit status and what ctr said, and what to check.
	nope := reg.Addr + "/team/nope:v1"
	code, _, stderr = b.run("pull", nope)
	if code != 1 || !strings.Contains(stderr, "pull "+nope+" into containerd: ctr exit status 1") ||
		!strings.Contains(stderr, "not found") || !strings.Contains(stderr, "berth-agent engine status") {
		t.Errorf("berth-agent pull %s: exit %d, want 1 and a clear error:\n%s", nope, code, stderr)
	}
	t.Logf("berth-agent pull %s: %s", nope, stderr[strings.LastIndex(stderr, "berth-agent pull:"):])
	if code, _, stderr := b.run("pull", "--namespace", "-x", ref); code != 2 {
		t.Errorf("berth-agent pull --namespace -x: exit %d, want 2:\n%s", code, stderr)
	}

	hitsBefore := metricValue(t, httpGet(t, metricsURL), `berth_cache_hits_total{tier="disk"}`)

	// The upstream dies; containerd forgets the image and its content.
	killRegistry(t, reg)
	blobGets := reg.CountRequests(t, "GET", "/blobs/")
	ctr("images", "rm", "--sync", ref)
	if out := ctr("content", "ls", "-q"); strings.Contains(out, string(layer)) {
		t.Fatalf("containerd still holds the layer after images rm --sync:\n%s", out)
	}
	ctr("images", "pull", "--hosts-dir", hostsDir, ref)
	if out := ctr("content", "ls", "-q"); !strings.Contains(out, string(layer)) {
		t.Fatalf("containerd lacks the layer after the pull from the cache:\n%s", out)
	}
	hits := metricValue(t, httpGet(t, metricsURL), `berth_cache_hits_total{tier="disk"}`)
	t.Logf("disk tier hits: %v after the first pull, %v after the second with the upstream dead", hitsBefore, hits)
	if hits <= hitsBefore {
		t.Errorf("disk hits %v → %v: the second pull was not served by the cache", hitsBefore, hits)
	}
	if n := reg.CountRequests(t, "GET", "/blobs/"); n != blobGets {
		t.Errorf("the dead upstream logged %d more blob GETs", n-blobGets)
	}
	b.stopDaemon()
	wantHealthyOn(t, b.status(), ctrdA) // containerd outlives the agent
}

// tarLayer is an uncompressed tar holding one file of content, pushed as a
// layer: containerd detects the compression from the bytes, so the layer's
// digest is its diff_id, as imagetest.Seed writes it, and the image unpacks.
func tarLayer(t *testing.T, content string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdr := &tar.Header{Name: "berth.txt", Mode: 0o644, Size: int64(len(content)), ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg}
	if err := tw.WriteHeader(hdr); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write([]byte(content)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// killRegistry stops the test's docker-registry: the process whose command
// line names its config file, which only this test started.
func killRegistry(t *testing.T, reg *registry.Server) {
	t.Helper()
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.Contains(string(cmdline), reg.ConfigPath) {
			continue
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill docker-registry %d: %v", pid, err)
		}
		waitFor(t, 10*time.Second, "docker-registry to exit", func() bool { return !reachable(reg.Addr) })
		return
	}
	t.Fatalf("no docker-registry process runs with %s", reg.ConfigPath)
}

// metricValue returns the value of one series in a /metrics text, 0 when
// it is absent.
func metricValue(t *testing.T, metrics, series string) float64 {
	t.Helper()
	for _, line := range strings.Split(metrics, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("metric %s: %v", line, err)
			}
			return f
		}
	}
	return 0
}
