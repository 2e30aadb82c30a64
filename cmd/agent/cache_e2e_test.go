//go:build linux

package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthhq/berth/imagecache/blobtier"
	"github.com/berthhq/berth/imagecache/cas"
	"github.com/berthhq/berth/imagecache/imagetest"

	"github.com/berthhq/berth/internal/azstore"
	"github.com/berthhq/berth/internal/testenv"
	"github.com/berthhq/berth/internal/testenv/registry"
)

// TestPullsThroughTheCache drives dockerd and berth-agent through the
// cache on Debian's registry and Azurite: a Docker Hub–named image pulled
// with `docker pull` (registry-mirrors in the daemon.json the agent writes)
// and another registry's image with `berth-agent pull`. The first pull
// fills Azurite and the disk tier; with the upstream gone and the disk
// wiped, Azurite serves the pulls; with Azurite wiped too, the disk does;
// and with the agent stopped, a pull still succeeds from the upstream.
func TestPullsThroughTheCache(t *testing.T) {
	b := newRig(t, verA)
	ctx := context.Background()
	reg := registry.Start(t, registry.Options{})
	hub := imagetest.SeedBusybox(t, reg.URL, "library/busybox", "berth") // stands in for Docker Hub
	other := imagetest.SeedBusybox(t, reg.URL, "team/tools", "v1")       // another registry's image
	otherRef := reg.Addr + "/team/tools:v1"
	cacheDir := filepath.Join(b.host.Dir, "cache")
	listen := testenv.FreePort(t)

	setCache := func(container, endpoint string) {
		b.cfg["cache"] = map[string]any{
			"enabled": true,
			"listen":  listen,
			"local":   map[string]any{"dir": cacheDir, "maxSize": "2GiB"},
			"storage": []any{map[string]any{"url": b.az.ContainerURL(container), "auth": "shared-key", "keyFile": b.keyFile}},
			"prewarm": []any{otherRef},
			"upstreams": map[string]any{
				"docker.io": map[string]any{"endpoint": endpoint},
				reg.Addr:    map[string]any{"endpoint": endpoint},
			},
		}
		b.writeConfig(verA)
	}
	docker := func(args ...string) string {
		t.Helper()
		out, err := b.host.Docker(ctx, args...)
		if err != nil {
			t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	wipeImages := func() {
		t.Helper()
		for _, ref := range []string{"busybox:berth", otherRef} {
			_, _ = b.host.Docker(ctx, "rmi", "-f", ref)
		}
	}
	blobs := func(c string) *blobtier.Tier {
		bt, err := blobtier.New(blobtier.Options{URL: b.az.ContainerURL(c), Credential: azstore.Credential{Auth: "shared-key", KeyFile: b.keyFile}})
		if err != nil {
			t.Fatal(err)
		}
		return bt
	}
	layers := []cas.Digest{hub.Image.Layers[0].Digest, hub.Image.ConfigDigest, hub.Image.ManifestDigest}
	var logs *testenv.Buffer
	t.Cleanup(func() {
		if t.Failed() && logs != nil {
			t.Logf("agent log:\n%s", logs.String())
		}
	})
	startAgent := func() {
		t.Helper()
		logs = b.startDaemon()
		waitFor(t, 120*time.Second, "the engine and the cache", func() bool {
			st := b.status()
			return st.Healthy && st.Active == verA && reachable(listen)
		})
	}
	pullBoth := func(phase string) {
		t.Helper()
		docker("pull", "busybox:berth")
		if out := docker("run", "--rm", "--network", "none", "busybox:berth", "echo", "hello "+phase); !strings.Contains(out, "hello "+phase) {
			t.Fatalf("%s: container output %q", phase, out)
		}
		if code, _, stderr := b.run("pull", otherRef); code != 0 {
			t.Fatalf("%s: berth-agent pull %s: exit %d\n%s", phase, otherRef, code, stderr)
		}
		if out := docker("image", "inspect", "-f", "{{.Id}}", otherRef); !strings.HasPrefix(out, "sha256:") {
			t.Fatalf("%s: %s is not in the engine under its own name: %q", phase, otherRef, out)
		}
		if out := docker("images", "--format", "{{.Repository}}"); strings.Contains(out, listen) {
			t.Errorf("%s: the cache's name of an image was left in the engine:\n%s", phase, out)
		}
	}

	// 1. Cold: through the cache from the upstream; Azurite and the disk fill.
	setCache("cache", reg.URL)
	startAgent()
	conf, err := os.ReadFile(filepath.Join(b.host.Dir, "engines", "docker", "config", "daemon.json"))
	if err != nil || !strings.Contains(string(conf), `"http://`+listen+`"`) {
		t.Fatalf("daemon.json does not name the cache as registry mirror:\n%s", conf)
	}
	waitFor(t, 60*time.Second, "the daemon to prewarm "+otherRef, func() bool {
		_, err := b.host.Docker(ctx, "image", "inspect", otherRef)
		return err == nil
	})
	pullBoth("cold")
	metrics := httpGet(t, "http://"+b.cfg["health"].(map[string]any)["listen"].(string)+"/metrics")
	for _, want := range []string{`berth_cache_upstream_fetches_total{registry="docker.io"}`, `berth_cache_misses_total{tier="disk"}`, "berth_cache_merged_requests_total"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// /healthz (what the Application Health extension probes) and the
	// health command agree the host is healthy, cache listener included.
	healthURL := "http://" + b.cfg["health"].(map[string]any)["listen"].(string) + "/healthz"
	waitFor(t, 30*time.Second, "/healthz to report Healthy", func() bool {
		resp, err := http.Get(healthURL)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var hz struct {
			State                  string
			ApplicationHealthState string
			Checks                 []struct{ Name, Status string }
		}
		if json.NewDecoder(resp.Body).Decode(&hz) != nil || resp.StatusCode != 200 {
			return false
		}
		names := ""
		for _, c := range hz.Checks {
			names += c.Name + " "
		}
		return hz.ApplicationHealthState == "Healthy" && strings.Contains(names, "cache-listener") && strings.Contains(names, "engine")
	})
	if out := b.mustRun("health"); !strings.Contains(out, "engine") || strings.Contains(out, "Unhealthy") {
		t.Errorf("berth-agent health:\n%s", out)
	}
	before := reg.CountRequests(t, "GET", "/blobs/")
	if before == 0 {
		t.Fatal("the upstream saw no blob GET: the pulls did not go through the cache to it")
	}
	wantIn(t, blobs("cache"), append(layers, other.Image.ManifestDigest))
	if _, err := blobs("cache").GetRef(ctx, "tags/docker.io/library/busybox/berth"); err != nil {
		t.Fatalf("Azurite does not know what busybox:berth resolved to: %v", err)
	}
	b.stopDaemon()
	for _, d := range layers {
		if _, err := os.Stat(filepath.Join(cacheDir, "blobs", "sha256", d.Hex()[:2], d.Hex())); err != nil {
			t.Fatalf("disk tier lacks %s: %v", d, err)
		}
	}

	// The cache commands on what the first pull left.
	var stats struct {
		Disk  struct{ Blobs int }
		Tiers []struct {
			Name    string
			Healthy bool
		}
	}
	if err := json.Unmarshal([]byte(b.mustRun("cache", "stats", "--output", "json")), &stats); err != nil {
		t.Fatal(err)
	}
	if stats.Disk.Blobs < 3 || len(stats.Tiers) != 2 || !stats.Tiers[1].Healthy {
		t.Fatalf("cache stats: %+v", stats)
	}
	rot := layers[0]
	rotPath := filepath.Join(cacheDir, "blobs", "sha256", rot.Hex()[:2], rot.Hex())
	if err := os.WriteFile(rotPath, []byte("rotten"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, _ := b.run("cache", "verify"); code != 1 || !strings.Contains(out, string(rot)) {
		t.Fatalf("cache verify of a rotten blob: exit %d, %q", code, out)
	}
	if _, err := os.Stat(rotPath); !os.IsNotExist(err) {
		t.Fatalf("verify left the rotten blob: %v", err)
	}
	if out := b.mustRun("cache", "prune", "--all"); !strings.HasPrefix(out, "pruned ") {
		t.Fatalf("cache prune: %q", out)
	}
	if err := json.Unmarshal([]byte(b.mustRun("cache", "stats", "--output", "json")), &stats); err != nil || stats.Disk.Blobs != 0 {
		t.Fatalf("after prune 0: %+v, %v", stats, err)
	}

	// 2. Upstream gone, disk wiped: Azurite serves.
	wipeImages()
	if err := os.RemoveAll(cacheDir); err != nil {
		t.Fatal(err)
	}
	setCache("cache", "http://"+testenv.FreePort(t))
	startAgent()
	pullBoth("from Azurite")
	b.stopDaemon()
	if n := reg.CountRequests(t, "GET", "/blobs/"); n != before {
		t.Fatalf("the upstream saw %d more blob GETs while it was out of the config", n-before)
	}

	// 3. Azurite wiped too (an empty container): the disk serves.
	wipeImages()
	setCache("empty", "http://"+testenv.FreePort(t))
	startAgent()
	pullBoth("from disk")
	b.stopDaemon()

	// 4. Agent stopped: berth-agent pull falls back to the upstream.
	wipeImages()
	setCache("cache", reg.URL)
	if code, _, stderr := b.run("pull", otherRef); code != 0 {
		t.Fatalf("pull with the agent stopped: exit %d\n%s", code, stderr)
	} else if !strings.Contains(stderr, "unreachable") {
		t.Errorf("the fallback to the upstream was not logged:\n%s", stderr)
	}
}

func wantIn(t *testing.T, tier cas.Tier, ds []cas.Digest) {
	t.Helper()
	waitFor(t, 30*time.Second, "Azurite to hold the image", func() bool {
		for _, d := range ds {
			if _, err := tier.Stat(context.Background(), d); err != nil {
				return false
			}
		}
		return true
	})
}

// reachable reports whether something listens at addr.
func reachable(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	return string(body)
}
