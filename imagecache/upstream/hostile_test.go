package upstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berthhq/berth/imagecache/cas"
	"github.com/berthhq/berth/internal/secret"
)

// serve starts an httptest server and returns a client for it, named as a
// loopback registry.
func serve(t *testing.T, h http.HandlerFunc, edit ...func(*Options)) (*Client, *httptest.Server, *logSink) {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c, logs := newTestClient(t, "fake.example", Config{Endpoint: srv.URL}, edit...)
	return c, srv, logs
}

const manifestJSON = `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}`

func TestManifestChecks(t *testing.T) {
	good := []byte(manifestJSON)
	gd := cas.FromBytes(good)
	other := cas.FromBytes([]byte("other"))
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		ref    string
		header map[string]string
		body   []byte
		class  error // nil: success
	}{
		{"by tag", "v1", map[string]string{"Docker-Content-Digest": string(gd), "Content-Type": MediaTypeOCIManifest}, good, nil},
		{"by tag without digest header", "v1", nil, good, nil},
		{"by tag, sha512 header ignored", "v1", map[string]string{"Docker-Content-Digest": "sha512:abcd"}, good, nil},
		{"by digest", string(gd), nil, good, nil},
		{"by digest, other content", string(other), nil, good, cas.ErrDigestMismatch},
		{"by tag, lying digest header", "v1", map[string]string{"Docker-Content-Digest": string(other)}, good, cas.ErrDigestMismatch},
		{"by digest, lying digest header", string(gd), map[string]string{"Docker-Content-Digest": string(other)}, good, cas.ErrDigestMismatch},
		{"by tag, not JSON", "v1", nil, []byte("<html>"), ErrUpstreamUnavailable},
		{"by tag, JSON but not a manifest", "v1", nil, []byte(`{"status":"ok"}`), ErrUpstreamUnavailable},
		{"by tag, a JSON array", "v1", nil, []byte(`[{"schemaVersion":2}]`), ErrUpstreamUnavailable},
		{"by tag, schemaVersion 3", "v1", nil, []byte(`{"schemaVersion":3}`), ErrUpstreamUnavailable},
		{"by tag, empty", "v1", nil, nil, ErrUpstreamUnavailable},
		{"too large", "v1", nil, bytes.Repeat([]byte(" "), DefaultMaxManifestSize+1), ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tc.header {
					w.Header().Set(k, v)
				}
				w.Write(tc.body)
			})
			body, mt, d, err := c.GetManifest(ctx, "r", tc.ref, nil)
			if tc.class != nil {
				assertClass(t, tc.name, err, tc.class)
				return
			}
			if err != nil || !bytes.Equal(body, good) || d != gd || mt != MediaTypeOCIManifest {
				t.Fatalf("got %s %s, %v", mt, d, err)
			}
		})
	}
}

func TestHugeManifestUnannounced(t *testing.T) {
	// No Content-Length: the limit applies while reading.
	c, _, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
		for range 64 {
			w.Write(bytes.Repeat([]byte("x"), 1<<10))
			w.(http.Flusher).Flush()
		}
	}, func(o *Options) { o.MaxManifestSize = 16 << 10 })
	_, _, _, err := c.GetManifest(context.Background(), "r", "v1", nil)
	assertClass(t, "unannounced huge manifest", err, ErrTooLarge)
	_, err = c.HeadManifest(context.Background(), "r", "v1", nil)
	assertClass(t, "HEAD of an unannounced huge manifest", err, ErrTooLarge)
}

func TestHeadManifestFallsBackToGet(t *testing.T) {
	good := []byte(manifestJSON)
	var heads, gets atomic.Int32
	c, _, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead {
			heads.Add(1)
			return // no digest, no type
		}
		gets.Add(1)
		w.Header().Set("Content-Type", MediaTypeOCIManifest)
		w.Write(good)
	})
	d, err := c.HeadManifest(context.Background(), "r", "v1", nil)
	want := Descriptor{MediaType: MediaTypeOCIManifest, Digest: cas.FromBytes(good), Size: int64(len(good))}
	if err != nil || d != want || heads.Load() != 1 || gets.Load() != 1 {
		t.Fatalf("got %+v, %v (%d HEAD, %d GET)", d, err, heads.Load(), gets.Load())
	}
}

// blobServer serves blob with Range support; cut, when it returns n >= 0
// for a request, makes the handler send n bytes of the answer and then
// break the connection.
func blobServer(t *testing.T, blob []byte, cut func(req int, r *http.Request) int) (*Client, *httptest.Server, *atomic.Int32, *logSink) {
	var n atomic.Int32
	c, srv, logs := serve(t, func(w http.ResponseWriter, r *http.Request) {
		i := int(n.Add(1))
		at := -1
		if cut != nil {
			at = cut(i, r)
		}
		if at < 0 {
			http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(blob))
			return
		}
		from := 0
		if rng := r.Header.Get("Range"); rng != "" {
			from, _ = strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(rng, "bytes="), "-"))
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", from, len(blob)-1, len(blob)))
			w.Header().Set("Content-Length", strconv.Itoa(len(blob)-from))
			w.WriteHeader(http.StatusPartialContent)
		} else {
			w.Header().Set("Content-Length", strconv.Itoa(len(blob)))
		}
		w.Write(blob[from : from+at])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	})
	return c, srv, &n, logs
}

func readBlob(c *Client, d cas.Digest, off int64) ([]byte, int64, error) {
	rc, size, err := c.OpenBlob(context.Background(), "r", d, off)
	if err != nil {
		return nil, 0, err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	return b, size, err
}

func TestBlobResumes(t *testing.T) {
	blob := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	d := cas.FromBytes(blob)
	var ranges []string
	var mu sync.Mutex
	c, _, n, _ := blobServer(t, blob, func(i int, r *http.Request) int {
		mu.Lock()
		ranges = append(ranges, r.Header.Get("Range"))
		mu.Unlock()
		switch i {
		case 1:
			return 100_000
		case 2:
			return 50_000 // cut again, within the ranged answer
		}
		return -1
	})
	got, size, err := readBlob(c, d, 0)
	if err != nil || size != int64(len(blob)) || !bytes.Equal(got, blob) {
		t.Fatalf("read %d of %d bytes: %v", len(got), size, err)
	}
	if n.Load() != 3 {
		t.Errorf("%d requests, want 3", n.Load())
	}
	if ranges[0] != "" || ranges[1] != "bytes=100000-" || ranges[2] != "bytes=150000-" {
		t.Errorf("ranges asked: %q", ranges)
	}
}

func TestBlobResumeWhenRangeIgnored(t *testing.T) {
	blob := bytes.Repeat([]byte("xyz"), 100_000)
	var n atomic.Int32
	c, _, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(blob)))
		if n.Add(1) == 1 {
			w.Write(blob[:1000])
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}
		w.Write(blob) // 200 with everything, whatever the Range
	})
	got, _, err := readBlob(c, cas.FromBytes(blob), 0)
	if err != nil || !bytes.Equal(got, blob) {
		t.Fatalf("read %d of %d bytes: %v", len(got), len(blob), err)
	}
}

func TestBlobNeverShort(t *testing.T) {
	blob := bytes.Repeat([]byte("a"), 10_000)
	d := cas.FromBytes(blob)
	t.Run("lying Content-Length", func(t *testing.T) {
		var n atomic.Int32
		c, _, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
			n.Add(1)
			w.Header().Set("Content-Length", strconv.Itoa(2*len(blob)))
			w.Write(blob) // and the handler ends: the server closes the connection
		})
		got, size, err := readBlob(c, d, 0)
		assertClass(t, "lying length", err, ErrUpstreamUnavailable)
		if int64(len(got)) >= size {
			t.Errorf("read %d bytes of %d without an error", len(got), size)
		}
		if got := n.Load(); got < 2 || got > 1+defaultMaxResumes {
			t.Errorf("%d requests: want a bounded number of resumptions", got)
		}
	})
	t.Run("size changes on resuming", func(t *testing.T) {
		var n atomic.Int32
		c, _, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
			if n.Add(1) == 1 {
				w.Header().Set("Content-Length", strconv.Itoa(len(blob)))
				w.Write(blob[:10])
				w.(http.Flusher).Flush()
				panic(http.ErrAbortHandler)
			}
			w.Header().Set("Content-Range", fmt.Sprintf("bytes 10-%d/%d", 2*len(blob)-1, 2*len(blob)))
			w.WriteHeader(http.StatusPartialContent)
			w.Write(bytes.Repeat([]byte("b"), 2*len(blob)-10))
		})
		_, _, err := readBlob(c, d, 0)
		assertClass(t, "size changed", err, cas.ErrDigestMismatch)
	})
	t.Run("range from elsewhere", func(t *testing.T) {
		c, _, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes 0-%d/%d", len(blob)-1, len(blob)))
			w.WriteHeader(http.StatusPartialContent)
			w.Write(blob)
		})
		_, _, err := readBlob(c, d, 5)
		assertClass(t, "wrong Content-Range", err, ErrUpstreamUnavailable)
	})
	t.Run("announced digest", func(t *testing.T) {
		c, _, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Docker-Content-Digest", string(cas.FromBytes([]byte("else"))))
			w.Write(blob)
		})
		_, _, err := readBlob(c, d, 0)
		assertClass(t, "other digest announced", err, cas.ErrDigestMismatch)
	})
	t.Run("offset at the end", func(t *testing.T) {
		c, _, _, _ := blobServer(t, blob, nil)
		got, size, err := readBlob(c, d, int64(len(blob)))
		if err != nil || len(got) != 0 || size != int64(len(blob)) {
			t.Fatalf("got %d bytes of %d: %v", len(got), size, err)
		}
		_, _, err = readBlob(c, d, int64(len(blob))+1)
		assertClass(t, "offset beyond the end", err, ErrInvalid)
	})
	t.Run("context ends while resuming", func(t *testing.T) {
		c, _, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(len(blob)))
			w.Write(blob[:10])
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}, func(o *Options) { o.ResumeWait = time.Hour })
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		rc, _, err := c.OpenBlob(ctx, "r", d, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		_, err = io.ReadAll(rc)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %v, want the context's error", err)
		}
	})
}

// bearerRegistry is a fake registry that wants a bearer token from its own
// /token endpoint; blob GETs redirect to redirectTo.
type bearerRegistry struct {
	srv        *httptest.Server
	token      string
	redirectTo string // URL prefix of the storage, "" for none
	mu         sync.Mutex
	authzSeen  []string
	tokenCalls int
}

func startBearerRegistry(t *testing.T, blob []byte) *bearerRegistry {
	b := &bearerRegistry{token: "tok-" + strconv.Itoa(int(time.Now().UnixNano()%1e6)) + "-x"}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		token, redirectTo := b.token, b.redirectTo
		if r.URL.Path == "/token" {
			b.tokenCalls++
		} else {
			b.authzSeen = append(b.authzSeen, r.URL.Path+" "+r.Header.Get("Authorization"))
		}
		b.mu.Unlock()
		if r.URL.Path == "/token" {
			fmt.Fprintf(w, `{"token":%q,"expires_in":300}`, token)
			return
		}
		if r.Header.Get("Authorization") != "Bearer "+token {
			w.Header().Set("WWW-Authenticate", `Bearer realm="`+b.srv.URL+`/token",service="fake"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		switch {
		case strings.HasPrefix(r.URL.Path, "/v2/r/blobs/") && redirectTo != "":
			http.Redirect(w, r, redirectTo+"/storage/x?sig=SECRETSIG", http.StatusTemporaryRedirect)
		case strings.HasPrefix(r.URL.Path, "/v2/r/blobs/"):
			http.Redirect(w, r, "/same-host/blob", http.StatusTemporaryRedirect)
		case r.URL.Path == "/same-host/blob":
			w.Write(blob)
		case strings.HasPrefix(r.URL.Path, "/v2/loop/"):
			http.Redirect(w, r, r.URL.Path+"x", http.StatusFound)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *bearerRegistry) set(f func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f()
}

func (b *bearerRegistry) calls() (tokens, others int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.tokenCalls, len(b.authzSeen)
}

func TestRedirects(t *testing.T) {
	blob := []byte("the blob's bytes")
	d := cas.FromBytes(blob)
	ctx := context.Background()

	var storageAuthz []string
	var smu sync.Mutex
	storage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		smu.Lock()
		storageAuthz = append(storageAuthz, r.Header.Get("Authorization"))
		smu.Unlock()
		w.Write(blob)
	}))
	defer storage.Close()

	reg := startBearerRegistry(t, blob)
	c, logs := newTestClient(t, "fake.example", Config{Endpoint: reg.srv.URL})
	allowLoopbackRedirects(t) // the storage is another loopback server

	// Same host: the token goes along.
	got, _, err := readBlob(c, d, 0)
	if err != nil || !bytes.Equal(got, blob) {
		t.Fatalf("same-host redirect: %q, %v", got, err)
	}
	// Another host (another port is another origin): no Authorization.
	reg.set(func() { reg.redirectTo = storage.URL })
	got, _, err = readBlob(c, d, 0)
	if err != nil || !bytes.Equal(got, blob) {
		t.Fatalf("cross-host redirect: %q, %v", got, err)
	}
	if len(storageAuthz) != 1 || storageAuthz[0] != "" {
		t.Errorf("storage saw Authorization %q", storageAuthz)
	}
	if strings.Contains(logs.String(), "SECRETSIG") || strings.Contains(logs.String(), "tok-") {
		t.Errorf("a signature or token is in the logs:\n%s", logs.String())
	}

	// A loop ends.
	_, before := reg.calls()
	_, _, _, err = c.GetManifest(ctx, "loop", "v1", nil)
	assertClass(t, "redirect loop", err, ErrUpstreamUnavailable)
	if _, after := reg.calls(); after-before > maxRedirects+1 {
		t.Errorf("%d requests for a redirect loop", after-before)
	}
}

func TestRedirectRefusals(t *testing.T) {
	for _, tc := range []struct {
		name     string
		location string
	}{
		{"https to plain http", "http://berth.invalid/x"},
		{"not http", "file:///etc/passwd"},
		{"empty", ""},
		{"garbage", "http://[::1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Location", tc.location)
				w.WriteHeader(http.StatusFound)
			}))
			defer srv.Close()
			c, _ := newTestClient(t, "tls.example", Config{Endpoint: srv.URL}, func(o *Options) {
				o.HTTPClient = srv.Client()
			})
			_, _, err := readBlob(c, cas.FromBytes([]byte("x")), 0)
			assertClass(t, tc.name, err, ErrUpstreamUnavailable)
		})
	}
}

func TestBadChallenges(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		header []string
	}{
		{"garbage", []string{"@@@ ,,, ==="}},
		{"none", nil},
		{"bearer without realm", []string{`Bearer service="x"`}},
		{"realm not http", []string{`Bearer realm="file:///etc/passwd"`}},
		{"realm plain http elsewhere", []string{`Bearer realm="http://berth.invalid/token"`}},
		{"realm with user info", []string{`Bearer realm="https://u:p@berth.invalid/token"`}},
		{"huge", []string{"Bearer realm=\"" + strings.Repeat("x", 1<<20) + "\""}},
		{"basic without credentials", []string{`Basic realm="r"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var n atomic.Int32
			c, _, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
				n.Add(1)
				for _, h := range tc.header {
					w.Header().Add("WWW-Authenticate", h)
				}
				w.WriteHeader(http.StatusUnauthorized)
			})
			_, _, _, err := c.GetManifest(ctx, "r", "v1", nil)
			assertClass(t, tc.name, err, ErrUnauthorized)
			if n.Load() > 2 {
				t.Errorf("%d requests", n.Load())
			}
		})
	}
}

// TestCredentialsStayOnSite: basic credentials are not sent to a token
// realm on another site; the token is asked for anonymously.
func TestCredentialsStayOnSite(t *testing.T) {
	var tokenAuthz atomic.Value
	tokens := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tokenAuthz.Store(r.Header.Get("Authorization"))
		w.Write([]byte(`{"token":"anon"}`))
	}))
	defer tokens.Close()
	reg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer anon" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="`+tokens.URL+`/token",service="s"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Write([]byte(manifestJSON))
	}))
	defer reg.Close()
	// The registry as localhost, the realm as 127.0.0.1: two sites.
	endpoint := strings.Replace(reg.URL, "127.0.0.1", "localhost", 1)
	c, logs := newTestClient(t, "fake.example", basicConfig(t, endpoint, "user", "hunter2"))
	if _, _, _, err := c.GetManifest(context.Background(), "r", "v1", nil); err != nil {
		t.Fatal(err)
	}
	if got := tokenAuthz.Load(); got != "" {
		t.Errorf("token realm on another site got Authorization %q", got)
	}
	if !strings.Contains(logs.String(), "anonymous token") {
		t.Errorf("no warning logged:\n%s", logs.String())
	}
}

func TestErrorMapping(t *testing.T) {
	for _, tc := range errorBodyCases {
		if tc.status < 400 {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			c, _, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			})
			_, _, _, err := c.GetManifest(context.Background(), "r", "v1", nil)
			assertClass(t, tc.name, err, tc.class)
			var re *RegistryError
			if !errors.As(err, &re) || re.Status != tc.status || len(re.Errors) != len(tc.want) {
				t.Errorf("got %#v", err)
			}
		})
	}
}

// TestTokenLifetime: a cached token is used until shortly before it
// expires, and a refused token is replaced once.
func TestTokenLifetime(t *testing.T) {
	reg := startBearerRegistry(t, []byte("b"))
	c, _ := newTestClient(t, "fake.example", Config{Endpoint: reg.srv.URL})
	now := time.Now()
	c.now = func() time.Time { return now }
	ctx := context.Background()
	get := func() {
		t.Helper()
		if _, _, _, err := c.GetManifest(ctx, "r", "v1", nil); !errors.Is(err, ErrNotFound) {
			t.Fatalf("want not found, got %v", err)
		}
	}
	tokens := func() int { n, _ := reg.calls(); return n }
	get()
	get()
	if n := tokens(); n != 1 {
		t.Fatalf("%d token calls, want 1", n)
	}
	now = now.Add(280 * time.Second) // within the last tenth of 300s
	get()
	if n := tokens(); n != 2 {
		t.Fatalf("%d token calls after expiry, want 2", n)
	}
	reg.set(func() { reg.token = "rotated" })
	get() // the cached token is refused: a fresh one is fetched
	if n := tokens(); n != 3 {
		t.Fatalf("%d token calls after rotation, want 3", n)
	}
}

func TestInvalidNamesNeverSent(t *testing.T) {
	var n atomic.Int32
	c, _, _ := serve(t, func(w http.ResponseWriter, r *http.Request) { n.Add(1) })
	ctx := context.Background()
	for _, repo := range []string{"", "../etc", "a/../b", "UPPER", "a//b", "/a", "a/", "a b", "a?x=1", "a%2fb", strings.Repeat("a", 256)} {
		_, _, _, err := c.GetManifest(ctx, repo, "v1", nil)
		assertClass(t, "repo "+repo, err, ErrInvalid)
	}
	for _, ref := range []string{"", "../x", ".hidden", "sha256:abc", "md5:" + strings.Repeat("0", 32), "a/b", strings.Repeat("t", 129), "v1?x"} {
		_, _, _, err := c.GetManifest(ctx, "r", ref, nil)
		assertClass(t, "reference "+ref, err, ErrInvalid)
	}
	_, _, err := c.OpenBlob(ctx, "r", "sha256:nothex", 0)
	assertClass(t, "bad digest", err, ErrInvalid)
	_, _, err = c.OpenBlob(ctx, "r", cas.FromBytes(nil), -1)
	assertClass(t, "negative offset", err, ErrInvalid)
	if n.Load() != 0 {
		t.Errorf("%d requests sent for invalid names", n.Load())
	}
}

func TestNew(t *testing.T) {
	for _, tc := range []struct {
		name     string
		registry string
		cfg      Config
		endpoint string // "" when New must fail
	}{
		{"docker hub", "docker.io", Config{}, "https://registry-1.docker.io"},
		{"docker hub alias", "index.docker.io", Config{}, "https://registry-1.docker.io"},
		{"mcr", "mcr.microsoft.com", Config{}, "https://mcr.microsoft.com"},
		{"loopback name", "127.0.0.1:5000", Config{}, "http://127.0.0.1:5000"},
		{"configured", "docker.io", Config{Endpoint: "https://mirror.example/"}, "https://mirror.example"},
		{"loopback http", "r.internal", Config{Endpoint: "http://localhost:5000"}, "http://localhost:5000"},
		{"http elsewhere", "r.internal", Config{Endpoint: "http://10.0.0.5:5000"}, ""},
		{"user info", "r", Config{Endpoint: "https://u:p@r.example"}, ""},
		{"query", "r", Config{Endpoint: "https://r.example/?x=1"}, ""},
		{"ftp", "r", Config{Endpoint: "ftp://r.example"}, ""},
		{"bad name", "a/b", Config{}, ""},
		{"no name", "", Config{}, ""},
		{"unknown auth", "r.example", Config{Auth: "kerberos"}, ""},
		{"basic without files", "r.example", Config{Auth: "basic"}, ""},
		{"managed identity without a token source", "r.azurecr.io", Config{Auth: "managed-identity"}, ""},
	} {
		c, err := New(Options{Registry: tc.registry, Config: tc.cfg})
		switch {
		case tc.endpoint == "" && err == nil:
			t.Errorf("%s: New accepted %+v", tc.name, tc.cfg)
		case tc.endpoint != "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.endpoint != "" && c.Endpoint() != tc.endpoint:
			t.Errorf("%s: endpoint %s, want %s", tc.name, c.Endpoint(), tc.endpoint)
		}
	}
	hub, _ := New(Options{Registry: "docker.io"})
	for in, want := range map[string]string{"busybox": "library/busybox", "library/busybox": "library/busybox", "me/app": "me/app"} {
		if got, err := hub.repoName(in); err != nil || got != want {
			t.Errorf("docker.io %s → %s, %v; want %s", in, got, err, want)
		}
	}
	other, _ := New(Options{Registry: "mcr.microsoft.com"})
	if got, _ := other.repoName("busybox"); got != "busybox" {
		t.Errorf("mcr busybox → %s", got)
	}
}

func TestSecretsRedacted(t *testing.T) {
	s := secret.Value("hunter2")
	for _, f := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d"} {
		if out := fmt.Sprintf(f, s); strings.Contains(out, "hunter2") || strings.Contains(out, "68756e74657232") {
			t.Errorf("%s printed %s", f, out)
		}
	}
	logs := &logSink{}
	logs.logger().Info("x", "s", s, "struct", struct{ S secret.Value }{s})
	if strings.Contains(logs.String(), "hunter2") {
		t.Errorf("logged: %s", logs.String())
	}
}
