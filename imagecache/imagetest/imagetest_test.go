package imagetest

import (
	"bytes"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/berthhq/berth/imagecache/cas"
	"github.com/berthhq/berth/internal/testenv/registry"
)

func get(t *testing.T, url, accept string) ([]byte, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v: %.200s", url, resp.StatusCode, err, b)
	}
	return b, resp.Header
}

// TestPullThroughPeer seeds a registry in chunks, serves it through a
// second registry in distribution's proxy mode, and counts in the access
// log that the second pull of a blob stays in the proxy.
func TestPullThroughPeer(t *testing.T) {
	origin := registry.Start(t, registry.Options{})
	layer := RandomLayer(20<<20 + 5) // over the 8 MiB chunk: PATCH uploads
	im := Seed(t, origin.URL, "bench/app", "v1", layer)
	if n := origin.CountRequests(t, http.MethodPatch, "/v2/bench/app/blobs/uploads/"); n != 3 {
		t.Errorf("%d PATCH chunks, want 3", n)
	}
	proxy := registry.Start(t, registry.Options{ProxyRemoteURL: origin.URL})

	man, h := get(t, proxy.URL+"/v2/bench/app/manifests/v1", MediaTypeDockerManifest)
	if !bytes.Equal(man, im.Manifest) || cas.Digest(h.Get("Docker-Content-Digest")) != im.ManifestDigest {
		t.Fatalf("manifest through the proxy differs: %s", h.Get("Docker-Content-Digest"))
	}
	blobPath := "/v2/bench/app/blobs/" + string(im.Layers[0].Digest)
	if b, _ := get(t, proxy.URL+blobPath, ""); !bytes.Equal(b, layer) {
		t.Fatal("blob through the proxy differs")
	}
	// distribution 2.8 stores a cold blob with a second upstream fetch in
	// the background: wait until it is in the proxy's storage.
	if !proxy.WaitBlob(t, "bench/app", string(im.Layers[0].Digest), int64(len(layer)), 20*time.Second) {
		t.Fatal("the proxy never stored the blob")
	}
	cold := origin.CountRequests(t, http.MethodGet, blobPath)
	if b, _ := get(t, proxy.URL+blobPath, ""); !bytes.Equal(b, layer) {
		t.Fatal("blob through the proxy differs")
	}
	if n := origin.CountRequests(t, http.MethodGet, blobPath); n != cold || cold < 1 || cold > 2 {
		t.Errorf("origin served the blob %d times cold and %d warm, want 1 or 2 and no more", cold, n-cold)
	}
}

// TestTokenAuthRegistry: pushing needs the token server's credentials;
// anonymous pulls get pull-only tokens.
func TestTokenAuthRegistry(t *testing.T) {
	ts := registry.StartTokenServer(t, registry.TokenServerOptions{Credentials: &registry.Credentials{User: "u", Password: "p"}, AnonymousPull: true})
	reg := registry.Start(t, registry.Options{TokenAuth: ts})
	bb := SeedBusybox(t, reg.AuthURL(), "tools/busybox", "1")
	if bb.ListTag != "1-list" || bb.Image.MediaType != MediaTypeDockerManifest || len(bb.Image.Layers) != 1 {
		t.Fatalf("busybox: %+v", bb)
	}
	granted := false
	for _, r := range ts.Requests() {
		if r.User == "u" && r.Status == http.StatusOK {
			granted = true
		}
	}
	if !granted {
		t.Errorf("no token was issued to the pusher: %+v", ts.Requests())
	}
	// A second push of the same blobs skips them (HEAD finds them).
	before := reg.CountRequests(t, http.MethodPost, "/blobs/uploads/")
	SeedBusybox(t, reg.AuthURL(), "tools/busybox", "2")
	if n := reg.CountRequests(t, http.MethodPost, "/blobs/uploads/") - before; n != 0 {
		t.Errorf("%d uploads for blobs already there", n)
	}
}
