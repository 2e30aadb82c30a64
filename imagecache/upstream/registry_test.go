package upstream

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/berthhq/berth/imagecache/cas"
	"github.com/berthhq/berth/imagecache/imagetest"

	"github.com/berthhq/berth/internal/testenv/registry"
)

// TestDebianRegistry runs the client against Debian's docker-registry
// with each kind of auth, on an image seeded through the push API.
func TestDebianRegistry(t *testing.T) {
	creds := &registry.Credentials{User: "berth", Password: "s3cret-Pass"}
	for _, tc := range []struct {
		name  string
		start func(t *testing.T) (*registry.Server, *registry.TokenServer)
		cfg   func(t *testing.T, r *registry.Server) Config
	}{
		{
			name: "anonymous",
			start: func(t *testing.T) (*registry.Server, *registry.TokenServer) {
				return registry.Start(t, registry.Options{}), nil
			},
			// No endpoint: a loopback registry name means http://name.
			cfg: func(t *testing.T, r *registry.Server) Config { return Config{} },
		},
		{
			name: "basic",
			start: func(t *testing.T) (*registry.Server, *registry.TokenServer) {
				return registry.Start(t, registry.Options{BasicAuth: creds}), nil
			},
			cfg: func(t *testing.T, r *registry.Server) Config {
				return basicConfig(t, r.URL, creds.User, creds.Password)
			},
		},
		{
			name: "token with credentials",
			start: func(t *testing.T) (*registry.Server, *registry.TokenServer) {
				ts := registry.StartTokenServer(t, registry.TokenServerOptions{Credentials: creds})
				return registry.Start(t, registry.Options{TokenAuth: ts}), ts
			},
			cfg: func(t *testing.T, r *registry.Server) Config {
				return basicConfig(t, r.URL, creds.User, creds.Password)
			},
		},
		{
			name: "anonymous token",
			start: func(t *testing.T) (*registry.Server, *registry.TokenServer) {
				ts := registry.StartTokenServer(t, registry.TokenServerOptions{Credentials: creds, AnonymousPull: true})
				return registry.Start(t, registry.Options{TokenAuth: ts}), ts
			},
			cfg: func(t *testing.T, r *registry.Server) Config {
				return Config{Endpoint: r.URL}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg, ts := tc.start(t)
			big := imagetest.RandomLayer(3<<20 + 17)
			im := imagetest.Seed(t, reg.AuthURL(), "team/app", "v1", []byte("small layer"), big)
			c, logs := newTestClient(t, reg.Addr, tc.cfg(t, reg))
			ctx := context.Background()
			if err := c.Ping(ctx); err != nil {
				t.Fatalf("ping: %v", err)
			}

			body, mt, d, err := c.GetManifest(ctx, "team/app", "v1", nil)
			if err != nil {
				t.Fatalf("manifest by tag: %v", err)
			}
			if !bytes.Equal(body, im.Manifest) || mt != imagetest.MediaTypeDockerManifest || d != im.ManifestDigest {
				t.Fatalf("manifest by tag: %s %s, want %s %s", mt, d, imagetest.MediaTypeDockerManifest, im.ManifestDigest)
			}
			body, _, d, err = c.GetManifest(ctx, "team/app", string(im.ManifestDigest), []string{imagetest.MediaTypeDockerManifest})
			if err != nil || !bytes.Equal(body, im.Manifest) || d != im.ManifestDigest {
				t.Fatalf("manifest by digest: %v", err)
			}
			desc, err := c.HeadManifest(ctx, "team/app", "v1", nil)
			want := Descriptor{MediaType: imagetest.MediaTypeDockerManifest, Digest: im.ManifestDigest, Size: int64(len(im.Manifest))}
			if err != nil || desc != want {
				t.Fatalf("HEAD manifest: %+v, %v; want %+v", desc, err, want)
			}
			layer := im.Layers[1]
			if size, err := c.HeadBlob(ctx, "team/app", layer.Digest); err != nil || size != int64(len(big)) {
				t.Fatalf("HEAD blob: %d, %v", size, err)
			}
			for _, off := range []int64{0, 1, 1 << 20, int64(len(big)) - 1, int64(len(big))} {
				rc, size, err := c.OpenBlob(ctx, "team/app", layer.Digest, off)
				if err != nil {
					t.Fatalf("blob from %d: %v", off, err)
				}
				got, err := io.ReadAll(rc)
				rc.Close()
				if err != nil || size != int64(len(big)) || !bytes.Equal(got, big[off:]) {
					t.Fatalf("blob from %d: %d bytes of %d, %v", off, len(got), size, err)
				}
			}

			_, _, _, err = c.GetManifest(ctx, "team/app", "nope", nil)
			assertClass(t, "missing tag", err, ErrNotFound, cas.ErrNotFound)
			_, _, _, err = c.GetManifest(ctx, "team/other", "v1", nil)
			assertClass(t, "missing repo", err, ErrNotFound)
			_, _, err = c.OpenBlob(ctx, "team/app", cas.FromBytes([]byte("absent")), 0)
			assertClass(t, "missing blob", err, ErrNotFound)
			var re *RegistryError
			if !errors.As(err, &re) || re.Status != 404 || len(re.Errors) == 0 || re.Errors[0].Code != "BLOB_UNKNOWN" {
				t.Errorf("missing blob: %#v", re)
			}

			if ts != nil {
				// One token per scope, however many requests.
				n := 0
				for _, r := range ts.Requests() {
					if r.Status == 200 && cmp.Equal(r.Scopes, []string{"repository:team/app:pull"}) {
						n++
					}
				}
				if n != 1 {
					t.Errorf("%d tokens fetched for repository:team/app:pull, want 1: %+v", n, ts.Requests())
				}
			}
			if strings.Contains(logs.String(), creds.Password) {
				t.Errorf("the password is in the logs:\n%s", logs.String())
			}
		})
	}
}

func assertClass(t *testing.T, what string, err error, classes ...error) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: no error, want %v", what, classes[0])
		return
	}
	for _, c := range classes {
		if !errors.Is(err, c) {
			t.Errorf("%s: %v is not %v", what, err, c)
		}
	}
}

// TestDebianRegistryRefusesWrongCredentials covers the failures of each
// kind of auth.
func TestDebianRegistryRefusesWrongCredentials(t *testing.T) {
	creds := &registry.Credentials{User: "berth", Password: "right"}
	ctx := context.Background()

	reg := registry.Start(t, registry.Options{BasicAuth: creds})
	imagetest.Seed(t, reg.AuthURL(), "app", "v1", []byte("x"))
	c, logs := newTestClient(t, reg.Addr, basicConfig(t, reg.URL, "berth", "wrong-password"))
	_, _, _, err := c.GetManifest(ctx, "app", "v1", nil)
	assertClass(t, "basic, wrong password", err, ErrUnauthorized)
	if strings.Contains(logs.String(), "wrong-password") {
		t.Errorf("the password is in the logs")
	}
	anon, _ := newTestClient(t, reg.Addr, Config{})
	_, _, _, err = anon.GetManifest(ctx, "app", "v1", nil)
	assertClass(t, "basic, anonymous", err, ErrUnauthorized)

	ts := registry.StartTokenServer(t, registry.TokenServerOptions{Credentials: creds})
	treg := registry.Start(t, registry.Options{TokenAuth: ts})
	imagetest.Seed(t, treg.AuthURL(), "app", "v1", []byte("x"))
	c, _ = newTestClient(t, treg.Addr, basicConfig(t, treg.URL, "berth", "wrong"))
	_, _, _, err = c.GetManifest(ctx, "app", "v1", nil)
	assertClass(t, "token, wrong password", err, ErrUnauthorized)
	anon, _ = newTestClient(t, treg.Addr, Config{})
	_, _, _, err = anon.GetManifest(ctx, "app", "v1", nil)
	assertClass(t, "token, anonymous", err, ErrUnauthorized)
}

// TestResumeAfterCut reads a blob through a proxy that cuts the connection
// a megabyte into the body: the reader resumes with Range and hands on
// every byte exactly once.
func TestResumeAfterCut(t *testing.T) {
	reg := registry.Start(t, registry.Options{})
	big := imagetest.RandomLayer(8 << 20)
	im := imagetest.Seed(t, reg.URL, "cut/me", "v1", big)
	proxy := startCutProxy(t, reg.Addr, 1<<20)
	c, logs := newTestClient(t, "cut.example", Config{Endpoint: "http://" + proxy.Addr})

	rc, size, err := c.OpenBlob(context.Background(), "cut/me", im.Layers[0].Digest, 0)
	if err != nil {
		t.Fatal(err)
	}
	v := cas.NewVerifier(im.Layers[0].Digest, size)
	n, err := io.Copy(v, rc)
	rc.Close()
	if err != nil || n != int64(len(big)) {
		t.Fatalf("read %d of %d bytes: %v", n, len(big), err)
	}
	if err := v.Check(); err != nil {
		t.Fatal(err)
	}
	if !proxy.cut.Load() {
		t.Fatal("the proxy never cut the connection")
	}
	if !strings.Contains(logs.String(), "resuming") {
		t.Errorf("no resumption logged:\n%s", logs.String())
	}
	// The registry logs the cut request when it notices the cut, which
	// may be after the resumed one: wait a little for both lines.
	var gets, partial int
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		gets, partial = 0, 0
		for _, r := range reg.Requests(t) {
			if r.Method == "GET" && strings.Contains(r.Path, "/blobs/"+string(im.Layers[0].Digest)) {
				gets++
				if r.Status == 206 {
					partial++
				}
			}
		}
		if gets >= 2 || time.Now().After(deadline) {
			break
		}
	}
	if gets != 2 || partial != 1 {
		t.Errorf("registry saw %d blob GETs (%d ranged), want 2 (1 ranged)", gets, partial)
	}
}

// TestBusybox checks SeedBusybox's image and manifest list from the
// client's side: a runnable layer and two platforms.
func TestBusybox(t *testing.T) {
	reg := registry.Start(t, registry.Options{})
	bb := imagetest.SeedBusybox(t, reg.URL, "library/busybox", "latest")
	c, _ := newTestClient(t, "docker.io", Config{Endpoint: reg.URL})
	ctx := context.Background()

	// docker.io names get library/.
	list, mt, d, err := c.GetManifest(ctx, "busybox", bb.ListTag, nil)
	if err != nil || mt != imagetest.MediaTypeDockerManifestList || d != bb.List.ManifestDigest {
		t.Fatalf("list: %s %s %v", mt, d, err)
	}
	var doc struct {
		Manifests []struct {
			Digest   cas.Digest
			Platform struct {
				OS        string
				OSVersion string `json:"os.version"`
			}
		}
	}
	if err := json.Unmarshal(list, &doc); err != nil || len(doc.Manifests) != 2 {
		t.Fatalf("list: %v %s", err, list)
	}
	if doc.Manifests[1].Platform.OS != "windows" || doc.Manifests[1].Platform.OSVersion != imagetest.WindowsOSVersion {
		t.Errorf("windows platform: %+v", doc.Manifests[1].Platform)
	}
	for _, m := range doc.Manifests {
		if _, _, _, err := c.GetManifest(ctx, "busybox", string(m.Digest), nil); err != nil {
			t.Errorf("child %s: %v", m.Digest, err)
		}
	}
	rc, _, err := c.OpenBlob(ctx, "busybox", bb.Image.Layers[0].Digest, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	zr, err := gzip.NewReader(rc)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]string{}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names[h.Name] = h.Linkname
	}
	for _, want := range []string{"bin/busybox", "bin/sh", "bin/echo", "bin/sleep", "bin/true"} {
		if _, ok := names[want]; !ok {
			t.Errorf("layer lacks %s: %v", want, names)
		}
	}
}

// TestConcurrentTokenFetch: many cold requests for one scope make one
// token request.
func TestConcurrentTokenFetch(t *testing.T) {
	ts := registry.StartTokenServer(t, registry.TokenServerOptions{})
	reg := registry.Start(t, registry.Options{TokenAuth: ts})
	im := imagetest.Seed(t, reg.URL, "many", "v1", []byte("x"))
	c, _ := newTestClient(t, reg.Addr, Config{})
	// Learn the challenge with another repository, as an earlier pull
	// would have.
	if _, _, _, err := c.GetManifest(context.Background(), "warmup", "v1", nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("warmup: %v", err)
	}
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rc, _, err := c.OpenBlob(context.Background(), "many", im.Layers[0].Digest, 0)
			if err != nil {
				t.Error(err)
				return
			}
			rc.Close()
		}()
	}
	wg.Wait()
	n := 0
	for _, r := range ts.Requests() {
		if cmp.Equal(r.Scopes, []string{"repository:many:pull"}) {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d token requests for repository:many:pull, want 1: %+v", n, ts.Requests())
	}
}
