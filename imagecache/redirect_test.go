package imagecache_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berthhq/berth/imagecache"
	"github.com/berthhq/berth/imagecache/cas"
	"github.com/berthhq/berth/imagecache/imagetest"
	"github.com/berthhq/berth/imagecache/upstream"

	"github.com/berthhq/berth/internal/testenv/azurite"
	"github.com/berthhq/berth/internal/testenv/registry"
)

// TestRedirectToLocalAddressRefused is issue 9's fourth attack: a
// registry answers 302 to http://127.0.0.1:<port>/healthz. That answer was
// followed and cached as a manifest in every tier, the shared Blob tier
// included. Now a manifest redirect is refused, a blob redirect to a
// loopback address too, the local service is never asked, and no tier
// keeps anything of it.
func TestRedirectToLocalAddressRefused(t *testing.T) {
	health := []byte(`{"status":"ok","schemaVersion":2}`)
	healthD := cas.FromBytes(health)
	var local atomic.Int32
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		local.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Write(health)
	}))
	t.Cleanup(svc.Close)
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
		if r.URL.Path == "/v2/" {
			return
		}
		http.Redirect(w, r, svc.URL+"/healthz", http.StatusFound)
	}))
	t.Cleanup(evil.Close)
	name := strings.TrimPrefix(evil.URL, "http://")

	az := azurite.Start(t)
	disk, blob := newDiskTier(t), newBlobTier(t, az, "redirects")
	up, err := upstream.New(upstream.Options{Registry: name, Config: upstream.Config{Endpoint: evil.URL}})
	if err != nil {
		t.Fatal(err)
	}
	srv := serveCache(t, imagecache.Options{
		Tiers:    []cas.Tier{disk, blob},
		Upstream: func(string) (imagecache.Upstream, error) { return up, nil },
		SpoolDir: filepath.Join(t.TempDir(), "spool"),
	})
	addr := strings.TrimPrefix(srv.URL, "http://")
	base := "/v2/" + name + "/team/app"
	for _, tc := range []hostileCase{
		{name: "manifest by tag", target: base + "/manifests/v1", status: 502, codes: []string{"UNAVAILABLE"}},
		{name: "manifest by tag, HEAD", method: "HEAD", target: base + "/manifests/v1", status: 502},
		{name: "manifest by the local answer's digest", target: base + "/manifests/" + string(healthD), status: 502, codes: []string{"UNAVAILABLE"}},
		{name: "blob by the local answer's digest", target: base + "/blobs/" + string(healthD), status: 502, codes: []string{"UNAVAILABLE"}},
		{name: "blob HEAD by the local answer's digest", method: "HEAD", target: base + "/blobs/" + string(healthD), status: 502},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, addr) })
	}
	time.Sleep(300 * time.Millisecond) // commits run after the answers
	if n := local.Load(); n != 0 {
		t.Errorf("the local service was asked %d times through the registry's redirects", n)
	}
	for _, tier := range []cas.Tier{disk, blob} {
		if _, err := tier.Stat(context.Background(), healthD); !errors.Is(err, cas.ErrNotFound) {
			t.Errorf("tier %s holds the local service's answer (%v)", tier.Name(), err)
		}
		if _, err := tier.GetRef(context.Background(), "tags/"+name+"/team/app/v1"); !errors.Is(err, cas.ErrNotFound) {
			t.Errorf("tier %s records the tag as resolved (%v)", tier.Name(), err)
		}
	}
}

// TestHeadOfUncachedBlobAsksWithHead: a HEAD of a blob no tier holds is
// answered from the upstream's HEAD; it used to start a full download.
func TestHeadOfUncachedBlobAsksWithHead(t *testing.T) {
	reg := registry.Start(t, registry.Options{})
	layer := imagetest.RandomLayer(2 << 20)
	img := imagetest.Seed(t, reg.URL, "team/app", "v1", layer)
	d := img.Layers[0].Digest
	srv := startCache(t, reg, []cas.Tier{newDiskTier(t)}, false)
	addr := strings.TrimPrefix(srv.URL, "http://")
	getsBefore := reg.CountRequests(t, "GET", "/blobs/"+string(d))
	headsBefore := reg.CountRequests(t, "HEAD", "/blobs/"+string(d)) // the push's own
	r := rawRequest(t, addr, "HEAD", "/v2/"+reg.Addr+"/team/app/blobs/"+string(d), nil)
	if r.status != 200 || r.header.Get("Content-Length") != "2097152" || r.header.Get("Docker-Content-Digest") != string(d) {
		t.Fatalf("HEAD: %d, Content-Length %q, digest %q", r.status, r.header.Get("Content-Length"), r.header.Get("Docker-Content-Digest"))
	}
	time.Sleep(500 * time.Millisecond) // a download started by the HEAD would be under way
	if n := reg.CountRequests(t, "GET", "/blobs/"+string(d)) - getsBefore; n != 0 {
		t.Errorf("a HEAD of an uncached blob made %d upstream GETs; want 0", n)
	}
	if n := reg.CountRequests(t, "HEAD", "/blobs/"+string(d)) - headsBefore; n != 1 {
		t.Errorf("a HEAD of an uncached blob made %d upstream HEADs; want 1", n)
	}
}
