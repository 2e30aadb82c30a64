//go:build linux

package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthhq/berth/imagecache/cas"
	"github.com/berthhq/berth/internal/measure"
	"github.com/berthhq/berth/internal/testenv"
	"github.com/berthhq/berth/internal/testenv/registry"
)

// pullLayerSizes are the sizes of the benchmark image's files, one per
// layer: 256 MiB in 4 layers, uneven as real images are. The content is
// random, so the gzip layers (stored, not compressed) are as large.
var pullLayerSizes = []int{112 << 20, 80 << 20, 48 << 20, 16 << 20}

// pullRuns is how many times each pull is timed: more than benchRuns, as
// a pull's time on this shared machine varies by a third from run to run.
const pullRuns = 7

// BenchmarkDockerPullThroughCache is issue 3's (b): `docker pull` end to
// end on a real dockerd that berth-agent installed, the image named as a
// Docker Hub image so that dockerd goes through the cache by the
// registry-mirrors entry the agent wrote into daemon.json, and the cache,
// served by `berth-agent run`, fetching from Debian's registry (the
// stand-in for Docker Hub through cache.upstreams["docker.io"].endpoint).
// Straight is the same dockerd pulling the same image from that registry by
// its own name. Targets: cold through the cache ÷ straight ≤ 1.15, warm ÷
// straight ≤ 1.05. The image is removed from dockerd after every pull; a
// cold run has a fresh disk tier (the agent restarted on an empty
// cache.local.dir) and no blob tier. distribution's own pull-through cache,
// fresh for each run, is measured the same way for reference.
func BenchmarkDockerPullThroughCache(b *testing.B) {
	r := newRig(b, verA)
	ctx := context.Background()
	reg := registry.Start(b, registry.Options{})
	img := pushPullableImage(b, reg.URL, "bench/app", "v1", pullLayerSizes)
	cacheDir := filepath.Join(b.TempDir(), "cache")
	listen := testenv.FreePort(b)
	r.cfg["cache"] = map[string]any{
		"enabled":   true,
		"listen":    listen,
		"local":     map[string]any{"dir": cacheDir, "maxSize": "4GiB"},
		"upstreams": map[string]any{"docker.io": map[string]any{"endpoint": reg.URL}},
	}
	r.writeConfig(verA)
	r.mustRun("engine", "install", verA)

	var logs *testenv.Buffer
	b.Cleanup(func() {
		if b.Failed() && logs != nil {
			b.Logf("agent log:\n%s", logs.String())
		}
	})
	startAgent := func() {
		logs = r.startDaemon()
		waitFor(b, 120*time.Second, "the engine and the cache", func() bool {
			st := r.status()
			return st.Healthy && st.Active == verA && reachable(listen)
		})
	}
	conf, err := os.ReadFile(filepath.Join(r.host.Dir, "engines", "docker", "config", "daemon.json"))
	if err != nil || !strings.Contains(string(conf), `"http://`+listen+`"`) {
		b.Fatalf("daemon.json does not name the cache as registry mirror (%v):\n%s", err, conf)
	}

	straight := reg.Addr + "/bench/app:v1"
	viaCache := "bench/app:v1" // docker.io/bench/app:v1, through registry-mirrors
	pull := func(ref string) time.Duration {
		b.Helper()
		start := time.Now()
		out, err := r.host.Docker(ctx, "pull", ref)
		took := time.Since(start)
		if err != nil {
			b.Fatalf("docker pull %s: %v\n%s", ref, err, out)
		}
		if out, err := r.host.Docker(ctx, "rmi", ref); err != nil {
			b.Fatalf("docker rmi %s: %v\n%s", ref, err, out)
		}
		if out, _ := r.host.Docker(ctx, "images", "-aq"); strings.TrimSpace(string(out)) != "" {
			b.Fatalf("images left in dockerd after rmi %s:\n%s", ref, out)
		}
		return took
	}
	onDisk := func() bool {
		for _, d := range img.blobs {
			if _, err := os.Stat(filepath.Join(cacheDir, "blobs", "sha256", d.Hex()[:2], d.Hex())); err != nil {
				return false
			}
		}
		return true
	}
	// A fresh disk tier: the agent restarted on an empty folder.
	freshCache := func() {
		r.stopDaemon()
		if err := os.RemoveAll(cacheDir); err != nil {
			b.Fatal(err)
		}
		startAgent()
	}
	upGETs := func() int { return reg.CountRequests(b, "GET", "/blobs/") }

	startAgent()
	// One untimed round: warm the upstream's page cache, check the cache
	// path works and fills the disk tier.
	pull(straight)
	before := upGETs()
	pull(viaCache)
	if upGETs() == before {
		b.Fatal("the upstream saw no blob GET: the pull did not go through the cache")
	}
	waitFor(b, 60*time.Second, "the disk tier to hold the image", onDisk)

	b.ResetTimer()
	var direct, cold, warm, peer []time.Duration
	for range pullRuns {
		direct = append(direct, pull(straight))

		b.StopTimer()
		freshCache()
		b.StartTimer()
		cold = append(cold, pull(viaCache))

		b.StopTimer()
		waitFor(b, 60*time.Second, "the disk tier to hold the image", onDisk)
		b.StartTimer()
		before := upGETs()
		warm = append(warm, pull(viaCache))
		if n := upGETs() - before; n != 0 {
			b.Fatalf("a warm pull made %d upstream blob GETs", n)
		}

		b.StopTimer()
		proxy := registry.Start(b, registry.Options{ProxyRemoteURL: reg.URL})
		b.StartTimer()
		peer = append(peer, pull(proxy.Addr+"/bench/app:v1"))
	}
	b.StopTimer()
	md, mc, mw, mp := measure.Median(direct), measure.Median(cold), measure.Median(warm), measure.Median(peer)
	coldRatio, warmRatio, peerRatio := mc.Seconds()/md.Seconds(), mw.Seconds()/md.Seconds(), mp.Seconds()/md.Seconds()
	b.ReportMetric(md.Seconds(), "straight-s")
	b.ReportMetric(mc.Seconds(), "cold-s")
	b.ReportMetric(mw.Seconds(), "warm-s")
	b.ReportMetric(coldRatio, "cold-ratio")
	b.ReportMetric(warmRatio, "warm-ratio")
	b.ReportMetric(peerRatio, "distribution-cold-ratio")
	fmt.Printf("\n(b) docker pull of a %d MiB, %d-layer image (medians of %d), straight from the registry %.2fs (runs %v)\n",
		img.size>>20, len(pullLayerSizes), pullRuns, md.Seconds(), measure.Round(direct))
	fmt.Printf("    cold through the cache %.2fs (runs %v): ratio %.2f; target <= 1.15: %s\n",
		mc.Seconds(), measure.Round(cold), coldRatio, measure.Verdict(coldRatio <= 1.15))
	fmt.Printf("    warm through the cache %.2fs (runs %v): ratio %.2f; target <= 1.05: %s\n",
		mw.Seconds(), measure.Round(warm), warmRatio, measure.Verdict(warmRatio <= 1.05))
	fmt.Printf("    for reference, cold through distribution's proxy %.2fs (runs %v): ratio %.2f\n",
		mp.Seconds(), measure.Round(peer), peerRatio)
}

// pullableImage is an image dockerd can pull and unpack: gzip tar layers
// whose diff_ids are right.
type pullableImage struct {
	blobs []cas.Digest // config and layers
	size  int64        // their bytes
}

// pushPullableImage pushes an image of one random file per layer through
// the registry's push API (anonymous registry, monolithic uploads).
func pushPullableImage(b *testing.B, registryURL, repo, tag string, sizes []int) pullableImage {
	b.Helper()
	var img pullableImage
	type desc struct {
		MediaType string     `json:"mediaType"`
		Size      int64      `json:"size"`
		Digest    cas.Digest `json:"digest"`
	}
	var layers []desc
	var diffIDs []cas.Digest
	for i, size := range sizes {
		gz, diffID := randomLayer(b, fmt.Sprintf("data/layer%d.bin", i), size)
		d := pushBlob(b, registryURL, repo, gz)
		layers = append(layers, desc{"application/vnd.docker.image.rootfs.diff.tar.gzip", int64(len(gz)), d})
		diffIDs = append(diffIDs, diffID)
		img.blobs = append(img.blobs, d)
		img.size += int64(len(gz))
	}
	cfg, err := json.Marshal(map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"created":      "2026-01-01T00:00:00Z",
		"config":       map[string]any{"Env": []string{"PATH=/bin"}},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": diffIDs},
		"history":      []map[string]any{{"created": "2026-01-01T00:00:00Z", "created_by": "berth bench"}},
	})
	if err != nil {
		b.Fatal(err)
	}
	cd := pushBlob(b, registryURL, repo, cfg)
	img.blobs = append(img.blobs, cd)
	img.size += int64(len(cfg))
	man, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.docker.distribution.manifest.v2+json",
		"config":        desc{"application/vnd.docker.container.image.v1+json", int64(len(cfg)), cd},
		"layers":        layers,
	})
	if err != nil {
		b.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPut, registryURL+"/v2/"+repo+"/manifests/"+tag, bytes.NewReader(man))
	req.Header.Set("Content-Type", "application/vnd.docker.distribution.manifest.v2+json")
	expect(b, req, http.StatusCreated)
	return img
}

// randomLayer returns a gzip tar (stored blocks: the content is random)
// holding one file of size random bytes, and the tar's digest (diff_id).
func randomLayer(b *testing.B, name string, size int) ([]byte, cas.Digest) {
	b.Helper()
	data := make([]byte, size)
	var seed [32]byte
	for i := range seed {
		seed[i] = byte(rand.Uint32())
	}
	_, _ = rand.NewChaCha8(seed).Read(data)
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	epoch := time.Unix(1767225600, 0)
	for _, h := range []*tar.Header{
		{Name: "data/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: epoch},
		{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(size), ModTime: epoch},
	} {
		if err := tw.WriteHeader(h); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := tw.Write(data); err != nil {
		b.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		b.Fatal(err)
	}
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.NoCompression)
	if _, err := zw.Write(raw.Bytes()); err != nil {
		b.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		b.Fatal(err)
	}
	return gz.Bytes(), cas.FromBytes(raw.Bytes())
}

// pushBlob uploads data in one PUT and returns its digest.
func pushBlob(b *testing.B, registryURL, repo string, data []byte) cas.Digest {
	b.Helper()
	d := cas.FromBytes(data)
	req, _ := http.NewRequest(http.MethodPost, registryURL+"/v2/"+repo+"/blobs/uploads/", nil)
	resp := expect(b, req, http.StatusAccepted)
	loc, err := resp.Request.URL.Parse(resp.Header.Get("Location"))
	if err != nil {
		b.Fatal(err)
	}
	q := loc.Query()
	q.Set("digest", string(d))
	loc.RawQuery = q.Encode()
	req, _ = http.NewRequest(http.MethodPut, loc.String(), bytes.NewReader(data))
	req.Header.Set("Content-Type", "application/octet-stream")
	expect(b, req, http.StatusCreated)
	return d
}

func expect(b *testing.B, req *http.Request, want int) *http.Response {
	b.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatalf("%s %s: %v", req.Method, (&url.URL{Path: req.URL.Path}).String(), err)
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	if resp.StatusCode != want {
		b.Fatalf("%s %s: %s, want %d: %s", req.Method, req.URL.Path, resp.Status, want, msg)
	}
	return resp
}
