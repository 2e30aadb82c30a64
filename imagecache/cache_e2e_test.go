package imagecache_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/berthhq/berth/imagecache"
	"github.com/berthhq/berth/imagecache/blobtier"
	"github.com/berthhq/berth/imagecache/cas"
	"github.com/berthhq/berth/imagecache/disk"
	"github.com/berthhq/berth/imagecache/imagetest"
	"github.com/berthhq/berth/imagecache/upstream"

	"github.com/berthhq/berth/internal/azstore"
	"github.com/berthhq/berth/internal/testenv"
	"github.com/berthhq/berth/internal/testenv/azurite"
	"github.com/berthhq/berth/internal/testenv/registry"
)

// world is one test's real components: Debian's registry as the upstream
// with a seeded image, Azurite as the blob tier.
type world struct {
	t    *testing.T
	reg  *registry.Server
	img  imagetest.Image
	blob *blobtier.Tier
	raw  *azstore.Container // the same container, around the tier's checks
}

func newWorld(t *testing.T, layers ...[]byte) *world {
	t.Helper()
	reg := registry.Start(t, registry.Options{})
	img := imagetest.Seed(t, reg.URL, "team/app", "v1", layers...)
	az := azurite.Start(t)
	bt, err := blobtier.New(blobtier.Options{URL: az.ContainerURL("cache"), Credential: azstore.Credential{Auth: "shared-key", KeyFile: az.KeyFile(t)}})
	if err != nil {
		t.Fatal(err)
	}
	if err := bt.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	cred := azstore.Credential{Auth: "shared-key", KeyFile: az.KeyFile(t)}
	raw, err := azstore.New(az.ContainerURL("cache"), cred, azstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return &world{t: t, reg: reg, img: img, blob: bt, raw: raw}
}

// cache starts a cache over a fresh disk tier (or the given one) and the
// blob tier, fetching from endpoint as the registry named reg.Addr.
func (w *world) cache(d *disk.Disk, endpoint string) (*httptest.Server, *disk.Disk) {
	t := w.t
	t.Helper()
	ctx := context.Background()
	if d == nil {
		var err error
		d, err = disk.New(disk.Options{Dir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
	}
	up, err := upstream.New(upstream.Options{Registry: w.reg.Addr, Config: upstream.Config{Endpoint: endpoint}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := imagecache.New(imagecache.Options{
		Tiers:    []cas.Tier{d, w.blob},
		Upstream: func(string) (imagecache.Upstream, error) { return up, nil },
		SpoolDir: filepath.Join(t.TempDir(), "spool"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c)
	t.Cleanup(func() { srv.Close(); c.Close() })
	return srv, d
}

func get(t *testing.T, url string) (int, []byte, http.Header) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return -1, body, resp.Header // a broken body: the cache aborted it
	}
	return resp.StatusCode, body, resp.Header
}

// pullAll fetches the manifest by tag and every blob through the cache in
// the path-prefix form and checks each byte against what was pushed.
func (w *world) pullAll(srv *httptest.Server) {
	t := w.t
	t.Helper()
	base := srv.URL + "/v2/" + w.reg.Addr + "/team/app"
	code, body, h := get(t, base+"/manifests/v1")
	if code != 200 || !bytes.Equal(body, w.img.Manifest) || h.Get("Docker-Content-Digest") != string(w.img.ManifestDigest) {
		t.Fatalf("manifest: %d %q digest %s", code, body, h.Get("Docker-Content-Digest"))
	}
	if ct := h.Get("Content-Type"); ct != w.img.MediaType {
		t.Errorf("manifest Content-Type %q, want %q", ct, w.img.MediaType)
	}
	blobs := []imagetest.Blob{{Digest: w.img.ConfigDigest, Size: int64(len(w.img.Config))}}
	blobs = append(blobs, w.img.Layers...)
	for _, b := range blobs {
		code, body, h := get(t, base+"/blobs/"+string(b.Digest))
		if code != 200 || int64(len(body)) != b.Size || cas.FromBytes(body) != b.Digest {
			t.Fatalf("blob %s: status %d, %d bytes", b.Digest, code, len(body))
		}
		if h.Get("Docker-Content-Digest") != string(b.Digest) {
			t.Errorf("blob %s: Docker-Content-Digest %q", b.Digest, h.Get("Docker-Content-Digest"))
		}
	}
}

func (w *world) digests() []cas.Digest {
	ds := []cas.Digest{w.img.ManifestDigest, w.img.ConfigDigest}
	for _, l := range w.img.Layers {
		ds = append(ds, l.Digest)
	}
	return ds
}

// wantIn waits for the tier to hold every digest: the cache commits to the
// tiers above once a blob is verified, after its clients have it.
func wantIn(t *testing.T, tier cas.Tier, ds []cas.Digest) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for _, d := range ds {
		for {
			_, err := tier.Stat(context.Background(), d)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s lacks %s: %v", tier.Name(), d, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// deadEndpoint is an upstream address nobody listens on.
func deadEndpoint(t *testing.T) string { return "http://" + testenv.FreePort(t) }

// TestTiersServeWhenUpstreamIsGone: the first pull fills the disk and
// Azurite; with the upstream gone and the disk wiped, Azurite serves the
// pull (the tag from its last resolution); with Azurite wiped too, the disk
// serves it.
func TestTiersServeWhenUpstreamIsGone(t *testing.T) {
	w := newWorld(t, imagetest.RandomLayer(3<<20), imagetest.RandomLayer(20<<20))
	srv, d := w.cache(nil, w.reg.URL)
	w.pullAll(srv)
	wantIn(t, d, w.digests())
	wantIn(t, w.blob, w.digests())

	srv2, d2 := w.cache(nil, deadEndpoint(t)) // fresh disk, no upstream
	w.pullAll(srv2)
	wantIn(t, d2, w.digests()) // refilled from Azurite

	for _, dg := range w.digests() {
		if err := w.blob.Delete(context.Background(), dg); err != nil {
			t.Fatal(err)
		}
	}
	srv3, _ := w.cache(d2, deadEndpoint(t))
	w.pullAll(srv3)
}

// TestConcurrentColdPullsFetchOnce: 32 clients ask for the same cold blob
// at once; the upstream sees one GET of it.
func TestConcurrentColdPullsFetchOnce(t *testing.T) {
	w := newWorld(t, imagetest.RandomLayer(16<<20))
	srv, _ := w.cache(nil, w.reg.URL)
	layer := w.img.Layers[0]
	url := srv.URL + "/v2/" + w.reg.Addr + "/team/app/blobs/" + string(layer.Digest)
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(url)
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil || cas.FromBytes(body) != layer.Digest {
				errs <- fmt.Errorf("status %d, %d bytes, %v", resp.StatusCode, len(body), err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := w.reg.CountRequests(t, "GET", "/blobs/"+string(layer.Digest)); n != 1 {
		t.Fatalf("upstream saw %d GETs of the blob for 32 concurrent cold requests, want 1", n)
	}
}

// TestCorruptBlobIsNeverServed: a blob corrupted on disk or in Azurite is
// detected, not served whole, removed, and fetched again.
func TestCorruptBlobIsNeverServed(t *testing.T) {
	w := newWorld(t, imagetest.RandomLayer(1<<20))
	srv, d := w.cache(nil, w.reg.URL)
	w.pullAll(srv)
	wantIn(t, d, w.digests())
	wantIn(t, w.blob, w.digests())
	layer := w.img.Layers[0]
	url := srv.URL + "/v2/" + w.reg.Addr + "/team/app/blobs/" + string(layer.Digest)

	// On disk: flip a byte of the stored file.
	p := filepath.Join(d.Dir(), "blobs", "sha256", layer.Digest.Hex()[:2], layer.Digest.Hex())
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	code, body, _ := get(t, url)
	if code == 200 && cas.FromBytes(body) != layer.Digest {
		t.Fatal("served the whole of a corrupt blob with 200")
	}
	if _, err := d.Stat(context.Background(), layer.Digest); !errors.Is(err, cas.ErrNotFound) {
		t.Fatalf("corrupt blob still on disk: %v", err)
	}
	if code, body, _ := get(t, url); code != 200 || cas.FromBytes(body) != layer.Digest {
		t.Fatalf("after removing the corrupt copy: status %d, digest %s", code, cas.FromBytes(body))
	}

	// In Azurite: replace the blob with other bytes of the same length,
	// wipe the disk, and pull from a cache whose upstream is gone.
	bad := bytes.Repeat([]byte{'x'}, int(layer.Size))
	if err := w.blob.Delete(context.Background(), layer.Digest); err != nil {
		t.Fatal(err)
	}
	badFile := filepath.Join(t.TempDir(), "bad")
	if err := os.WriteFile(badFile, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := w.raw.UploadFile(context.Background(), "blobs/sha256/"+layer.Digest.Hex(), badFile, azstore.UploadOptions{Overwrite: true}); err != nil {
		t.Fatal(err)
	}
	srv2, _ := w.cache(nil, w.reg.URL)
	url2 := srv2.URL + "/v2/" + w.reg.Addr + "/team/app/blobs/" + string(layer.Digest)
	code, body, _ = get(t, url2)
	if code == 200 && cas.FromBytes(body) != layer.Digest {
		t.Fatal("served the whole of a blob corrupt in Azurite with 200")
	}
	if code, body, _ := get(t, url2); code != 200 || cas.FromBytes(body) != layer.Digest {
		t.Fatalf("after the corrupt Azurite copy: status %d, digest %s", code, cas.FromBytes(body))
	}
}

// TestCorruptDiskCopyServedFromBelow: a small blob corrupt on disk is found
// before any byte goes out, and the same request is answered from Azurite
// (the upstream being gone), which then refills the disk.
func TestCorruptDiskCopyServedFromBelow(t *testing.T) {
	w := newWorld(t, imagetest.RandomLayer(8<<10))
	srv, d := w.cache(nil, w.reg.URL)
	w.pullAll(srv)
	wantIn(t, d, w.digests())
	wantIn(t, w.blob, w.digests())
	layer := w.img.Layers[0]
	p := filepath.Join(d.Dir(), "blobs", "sha256", layer.Digest.Hex()[:2], layer.Digest.Hex())
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	srv2, _ := w.cache(d, deadEndpoint(t))
	code, body, _ := get(t, srv2.URL+"/v2/"+w.reg.Addr+"/team/app/blobs/"+string(layer.Digest))
	if code != 200 || cas.FromBytes(body) != layer.Digest {
		t.Fatalf("status %d, digest %s: the corrupt disk copy should have been replaced from Azurite in the same request", code, cas.FromBytes(body))
	}
	wantIn(t, d, []cas.Digest{layer.Digest})
	if got, _ := os.ReadFile(p); cas.FromBytes(got) != layer.Digest {
		t.Fatal("the disk copy was not refilled with good content")
	}
}
