package imagecache_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berthhq/berth/imagecache"
	"github.com/berthhq/berth/imagecache/cas"
	"github.com/berthhq/berth/imagecache/disk"
	"github.com/berthhq/berth/imagecache/imagetest"
	"github.com/berthhq/berth/imagecache/upstream"

	"github.com/berthhq/berth/internal/testenv/registry"
)

// specCodes are the error codes a client may meet: the OCI
// distribution spec's table, and those of distribution's errcode package
// that registries in the field send (UNAVAILABLE, TAG_INVALID, …).
var specCodes = []string{
	"BLOB_UNKNOWN", "BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN", "DIGEST_INVALID",
	"MANIFEST_BLOB_UNKNOWN", "MANIFEST_INVALID", "MANIFEST_UNKNOWN", "NAME_INVALID",
	"NAME_UNKNOWN", "SIZE_INVALID", "UNAUTHORIZED", "DENIED", "UNSUPPORTED", "TOOMANYREQUESTS",
	"UNAVAILABLE", "UNKNOWN", "TAG_INVALID", "RANGE_INVALID", "MANIFEST_UNVERIFIED", "PAGINATION_NUMBER_INVALID",
}

// rawResponse is what the cache answered to a request sent byte for byte.
type rawResponse struct {
	status  int
	header  http.Header
	body    []byte
	bodyErr error // the body broke off: the cache aborted the response
	// noResponse: the connection closed before a status line came.
	noResponse error
}

// rawRequest sends method and target exactly as given (no cleaning, no
// escaping) on a fresh connection.
func rawRequest(t *testing.T, addr, method, target string, header map[string]string) rawResponse {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\nUser-Agent: berth-hostile-test\r\n", method, target, addr)
	for k, v := range header {
		fmt.Fprintf(&b, "%s: %s\r\n", k, v)
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(conn, b.String()); err != nil {
		t.Fatalf("send %s %.80s: %v", method, target, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		return rawResponse{noResponse: err}
	}
	defer resp.Body.Close()
	body, berr := io.ReadAll(resp.Body)
	return rawResponse{status: resp.StatusCode, header: resp.Header, body: body, bodyErr: berr}
}

// checkErrorBody checks an error answer: JSON, {"errors":[{code,message}]}
// with codes a client knows, no digest header, a bounded size (the cache
// must not echo a hostile megabyte back).
func checkErrorBody(t *testing.T, r rawResponse, head bool) []string {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("error answer %d: Content-Type %q, want application/json", r.status, ct)
	}
	if d := r.header.Get("Docker-Content-Digest"); d != "" {
		t.Errorf("error answer %d carries Docker-Content-Digest %s", r.status, d)
	}
	if v := r.header.Get("Docker-Distribution-Api-Version"); v != "registry/2.0" {
		t.Errorf("error answer %d: Docker-Distribution-API-Version %q", r.status, v)
	}
	if head {
		return nil
	}
	if len(r.body) > 8<<10 {
		t.Errorf("error answer %d: a body of %d bytes; want a bounded one", r.status, len(r.body))
	}
	var doc struct {
		Errors []struct {
			Code    string          `json:"code"`
			Message string          `json:"message"`
			Detail  json.RawMessage `json:"detail"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(r.body, &doc); err != nil || len(doc.Errors) == 0 {
		t.Errorf("error answer %d: body %.200q is not the spec's error body (%v)", r.status, r.body, err)
		return nil
	}
	var codes []string
	for _, e := range doc.Errors {
		if !slices.Contains(specCodes, e.Code) {
			t.Errorf("error answer %d: code %q is not a distribution-spec code", r.status, e.Code)
		}
		if e.Message == "" {
			t.Errorf("error answer %d: code %s without a message", r.status, e.Code)
		}
		codes = append(codes, e.Code)
	}
	return codes
}

// hostileCase is one request and what the cache must answer.
type hostileCase struct {
	name   string
	method string // GET when ""
	target string // the request-target, sent as is
	header map[string]string
	status int      // the status wanted
	codes  []string // errors[0].code must be one of these (error answers); nil: any spec code
	// body, for a 200 or 206: the exact bytes wanted (nil: not checked).
	body []byte
	// check looks further at the answer (headers) and says what is wrong.
	check func(r rawResponse) []string
	// broken: the cache must not answer 200 with the whole of a body that
	// is wrong; it may answer an error before the body, or break the body
	// off. status and codes apply when it answered an error.
	broken []byte
	// knownBug, when the cache answers otherwise than wanted, names the
	// bug reported and skips the case once the safety checks pass (a
	// spec error body, no crash); when the cache answers as wanted, the
	// case passes and says the note can go.
	knownBug string
}

func (tc hostileCase) run(t *testing.T, addr string) {
	t.Helper()
	method := tc.method
	if method == "" {
		method = http.MethodGet
	}
	r := rawRequest(t, addr, method, tc.target, tc.header)
	head := method == http.MethodHead
	if r.noResponse != nil {
		// Safe (no body at all) but no answer either: a client cannot
		// tell a lying upstream from a cache that died.
		msg := fmt.Sprintf("%s %.120s: the connection closed without a response (%v)", method, tc.target, r.noResponse)
		t.Fatal(msg)
	}
	var codes []string
	if r.status >= 400 {
		codes = checkErrorBody(t, r, head)
	}
	if r.status >= 500 && r.status != http.StatusBadGateway && r.status != http.StatusServiceUnavailable {
		t.Errorf("status %d: a hostile request made the cache fail itself", r.status)
	}
	if tc.broken != nil {
		if r.status == http.StatusOK && r.bodyErr == nil && len(r.body) == len(tc.broken) {
			t.Fatalf("answered 200 with the whole of a body the upstream lied about (%d bytes, %s)", len(r.body), cas.FromBytes(r.body))
		}
		if r.status == http.StatusOK {
			t.Logf("200, then the body broke off after %d of %d bytes (%v): the client cannot take it for whole", len(r.body), len(tc.broken), r.bodyErr)
			return
		}
	}
	var bad []string
	if r.status != tc.status {
		bad = append(bad, fmt.Sprintf("status %d, want %d", r.status, tc.status))
	}
	if tc.codes != nil && r.status >= 400 && !head && (len(codes) == 0 || !slices.Contains(tc.codes, codes[0])) {
		bad = append(bad, fmt.Sprintf("codes %v, want one of %v", codes, tc.codes))
	}
	if r.status < 300 && r.bodyErr != nil {
		bad = append(bad, fmt.Sprintf("the body broke off: %v", r.bodyErr))
	}
	if tc.body != nil && r.status < 300 && !head && !bytes.Equal(r.body, tc.body) {
		bad = append(bad, fmt.Sprintf("a body of %d bytes (%s), want %d bytes (%s)", len(r.body), cas.FromBytes(r.body), len(tc.body), cas.FromBytes(tc.body)))
	}
	if len(bad) == 0 && tc.check != nil {
		bad = append(bad, tc.check(r)...)
	}
	switch {
	case len(bad) > 0 && tc.knownBug != "":
		t.Skipf("known bug (reported): %s\ngot: %s; body %.300q", tc.knownBug, strings.Join(bad, "; "), r.body)
	case len(bad) > 0:
		t.Errorf("%s %.120s: %s; body %.300q", method, tc.target, strings.Join(bad, "; "), r.body)
	case tc.knownBug != "":
		t.Logf("answered as wanted: the known bug %q seems fixed; drop the note", tc.knownBug)
	}
}

// hostileWorld is a cache over a disk tier in front of Debian's registry
// (a seeded image) and of a fake registry that lies.
type hostileWorld struct {
	reg    *registry.Server
	img    imagetest.Image
	layer  []byte
	fake   *httptest.Server
	fakeUp string // the fake's registry name (host:port)
	lie    lies
}

// lies is the content the fake registry serves badly.
type lies struct {
	blob      []byte // 256 KiB: more than the cache holds back for the check
	small     []byte // under the held-back size
	maxMan    []byte // a manifest of exactly 4 MiB: the largest accepted
	hugeMan   []byte // 5 MiB
	goodMan   []byte
	otherMan  []byte
	blobD     cas.Digest
	smallD    cas.Digest
	maxManD   cas.Digest
	hugeManD  cas.Digest
	goodManD  cas.Digest
	otherManD cas.Digest
}

func newLies() lies {
	var l lies
	l.blob = imagetest.RandomLayer(256 << 10)
	l.small = imagetest.RandomLayer(1000)
	l.goodMan = []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","size":2,"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},"layers":[]}`)
	l.otherMan = []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","size":2,"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},"layers":[],"annotations":{"x":"other"}}`)
	pad := func(size int) []byte {
		head := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","size":2,"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},"layers":[],"annotations":{"pad":"`
		tail := `"}}`
		return []byte(head + strings.Repeat("x", size-len(head)-len(tail)) + tail)
	}
	l.maxMan = pad(upstream.DefaultMaxManifestSize)
	l.hugeMan = pad(5 << 20)
	l.blobD, l.smallD = cas.FromBytes(l.blob), cas.FromBytes(l.small)
	l.maxManD, l.hugeManD = cas.FromBytes(l.maxMan), cas.FromBytes(l.hugeMan)
	l.goodManD, l.otherManD = cas.FromBytes(l.goodMan), cas.FromBytes(l.otherMan)
	return l
}

// fakeRegistry answers /v2/lie/<how>/… as its name says: with bodies
// shorter or longer than announced, content that does not hash to the
// digest asked for, lying digest headers, huge manifests.
func fakeRegistry(l lies) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
		if r.URL.Path == "/v2/" {
			w.Write([]byte("{}"))
			return
		}
		rest, ok := strings.CutPrefix(r.URL.Path, "/v2/lie/")
		how, _, _ := strings.Cut(rest, "/")
		if !ok {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		full := func(ct string, body []byte) {
			h.Set("Content-Type", ct)
			h.Set("Content-Length", strconv.Itoa(len(body)))
			if r.Method != http.MethodHead {
				w.Write(body)
			}
		}
		const oci = "application/vnd.oci.image.manifest.v1+json"
		switch how {
		case "huge-manifest":
			full(oci, l.hugeMan)
		case "huge-manifest-chunked": // no Content-Length: the limit applies while reading
			h.Set("Content-Type", oci)
			for off := 0; off < len(l.hugeMan); off += 64 << 10 {
				w.Write(l.hugeMan[off:min(off+64<<10, len(l.hugeMan))])
				w.(http.Flusher).Flush()
			}
		case "max-manifest":
			h.Set("Docker-Content-Digest", string(l.maxManD))
			full(oci, l.maxMan)
		case "manifest-digest-header": // announces another digest
			h.Set("Docker-Content-Digest", string(l.otherManD))
			full(oci, l.goodMan)
		case "manifest-other-content": // asked by one digest, sends other content
			full(oci, l.otherMan)
		case "manifest-short": // announces more than it sends
			h.Set("Content-Type", oci)
			h.Set("Content-Length", strconv.Itoa(len(l.goodMan)+100))
			w.Write(l.goodMan)
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		case "manifest-html":
			full("text/html", []byte("<html><body>sign in to the Wi-Fi</body></html>"))
		case "blob-short": // every answer breaks off half way
			h.Set("Content-Type", "application/octet-stream")
			h.Set("Content-Length", strconv.Itoa(len(l.blob)))
			if r.Method == http.MethodHead {
				return
			}
			w.Write(l.blob[:len(l.blob)/2])
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		case "blob-announces-less": // Content-Length half the blob, and that half
			full("application/octet-stream", l.blob[:len(l.blob)/2])
		case "blob-announces-more": // Content-Length of the blob plus 1000, the blob, then it closes
			h.Set("Content-Type", "application/octet-stream")
			h.Set("Content-Length", strconv.Itoa(len(l.blob)+1000))
			if r.Method == http.MethodHead {
				return
			}
			w.Write(l.blob)
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		case "blob-other-content": // the right length, other bytes
			other := bytes.Clone(l.blob)
			other[len(other)-1] ^= 1
			full("application/octet-stream", other)
		case "blob-small-other-content":
			other := bytes.Clone(l.small)
			other[0] ^= 1
			full("application/octet-stream", other)
		case "blob-digest-header":
			h.Set("Docker-Content-Digest", string(l.smallD))
			full("application/octet-stream", l.blob)
		case "blob-html":
			full("text/html", []byte("<html><body>sign in to the Wi-Fi</body></html>"))
		case "blob-no-length": // chunked, and HEAD says no length either
			h.Set("Content-Type", "application/octet-stream")
			if r.Method == http.MethodHead {
				w.WriteHeader(http.StatusOK)
				return
			}
			w.Write(l.blob[:1000])
			w.(http.Flusher).Flush()
			w.Write(l.blob[1000:])
		case "status-500":
			w.WriteHeader(http.StatusInternalServerError)
		case "status-429":
			h.Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusTooManyRequests)
			w.Write([]byte(`{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}`))
		case "redirect-local": // a redirect to a service on this host
			http.Redirect(w, r, "http://127.0.0.1:1/healthz", http.StatusFound)
		case "redirect-imds": // to the instance metadata service
			http.Redirect(w, r, "https://169.254.169.254/metadata/instance", http.StatusTemporaryRedirect)
		case "error-body-forged": // a 404 whose body tries to forge log lines
			h.Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"errors":[{"code":"BLOB_UNKNOWN\n level=ERROR forged","message":"` + strings.Repeat("m", 100<<10) + `"}]}`))
		default:
			http.NotFound(w, r)
		}
	}
}

func newHostileWorld(t *testing.T) *hostileWorld {
	t.Helper()
	reg := registry.Start(t, registry.Options{})
	layer := imagetest.RandomLayer(300 << 10)
	img := imagetest.Seed(t, reg.URL, "team/app", "v1", layer)
	l := newLies()
	fake := httptest.NewServer(fakeRegistry(l))
	t.Cleanup(fake.Close)
	return &hostileWorld{reg: reg, img: img, layer: layer, fake: fake, fakeUp: strings.TrimPrefix(fake.URL, "http://"), lie: l}
}

// start serves a cache over a fresh disk tier, allowed to reach both
// registries.
func (w *hostileWorld) start(t *testing.T) (*httptest.Server, *disk.Disk) {
	t.Helper()
	d := newDiskTier(t)
	realUp, err := upstream.New(upstream.Options{Registry: w.reg.Addr, Config: upstream.Config{Endpoint: w.reg.URL}})
	if err != nil {
		t.Fatal(err)
	}
	liar, err := upstream.New(upstream.Options{Registry: w.fakeUp, Config: upstream.Config{Endpoint: w.fake.URL},
		MaxResumes: 2, ResumeWait: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	c, err := imagecache.New(imagecache.Options{
		Tiers: []cas.Tier{d},
		Upstream: func(name string) (imagecache.Upstream, error) {
			switch name {
			case w.reg.Addr:
				return realUp, nil
			case w.fakeUp:
				return liar, nil
			}
			return nil, fmt.Errorf("no upstream %q in this test", name)
		},
		SpoolDir: filepath.Join(t.TempDir(), "spool"),
		Allow:    []string{w.reg.Addr, w.fakeUp},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c)
	t.Cleanup(func() { srv.Close(); c.Close() })
	return srv, d
}

// TestHostileRequests sends the cache, in front of Debian's registry and
// a lying fake registry, malformed and hostile requests, and upstream
// answers that lie. Every answer must be the spec's: the right status, a
// JSON error body with a spec code, never a 200 with the whole of a wrong
// body, and the cache stays up.
func TestHostileRequests(t *testing.T) {
	w := newHostileWorld(t)
	srv, d := w.start(t)
	addr := strings.TrimPrefix(srv.URL, "http://")
	p := "/v2/" + w.reg.Addr + "/team/app"
	layerD := w.img.Layers[0].Digest
	missing := cas.FromBytes([]byte("never pushed"))
	hex64 := missing.Hex()

	// The layer and config are on disk before the cases run.
	for _, dg := range []cas.Digest{layerD, w.img.ConfigDigest} {
		if r := rawRequest(t, addr, "GET", p+"/blobs/"+string(dg), nil); r.status != 200 || r.bodyErr != nil {
			t.Fatalf("warm %s: %d %v", dg, r.status, r.bodyErr)
		}
	}
	wantIn(t, d, []cas.Digest{layerD, w.img.ConfigDigest})

	long := func(n int) string { return strings.Repeat("a", n) }
	allowHeader := func(r rawResponse) []string {
		if got := r.header.Get("Allow"); got != "GET, HEAD" {
			return []string{fmt.Sprintf("405 with Allow %q, want \"GET, HEAD\" (RFC 9110: a 405 MUST carry Allow)", got)}
		}
		return nil
	}
	cases := []hostileCase{
		// Sanity.
		{name: "ping", target: "/v2/", status: 200},
		{name: "manifest by tag", target: p + "/manifests/v1", status: 200, body: w.img.Manifest},
		{name: "layer", target: p + "/blobs/" + string(layerD), status: 200, body: w.layer},

		// Bad digests.
		{name: "blob digest too short", target: p + "/blobs/sha256:abc", status: 400, codes: []string{"DIGEST_INVALID"}},
		{name: "blob digest upper-case hex", target: p + "/blobs/sha256:" + strings.ToUpper(hex64), status: 400, codes: []string{"DIGEST_INVALID"}},
		{name: "blob digest too long", target: p + "/blobs/sha256:" + hex64 + "00", status: 400, codes: []string{"DIGEST_INVALID"}},
		{name: "blob digest sha512", target: p + "/blobs/sha512:" + hex64 + hex64, status: 400, codes: []string{"DIGEST_INVALID", "UNSUPPORTED"}},
		{name: "blob digest md5", target: p + "/blobs/md5:" + hex64[:32], status: 400, codes: []string{"DIGEST_INVALID", "UNSUPPORTED"}},
		{name: "blob digest without algorithm", target: p + "/blobs/" + hex64, status: 400, codes: []string{"DIGEST_INVALID"}},
		{name: "blob digest empty", target: p + "/blobs/", status: 400, codes: []string{"DIGEST_INVALID"}},
		{name: "blob digest with NUL", target: p + "/blobs/sha256:" + hex64[:63] + "%00", status: 400, codes: []string{"DIGEST_INVALID"}},
		{name: "blob digest with a path", target: p + "/blobs/sha256:" + hex64 + "/x", status: 400, codes: []string{"DIGEST_INVALID"}},
		{name: "manifest digest malformed", target: p + "/manifests/sha256:zz", status: 400, codes: []string{"MANIFEST_INVALID", "DIGEST_INVALID"}},
		{name: "manifest digest upper-case hex", target: p + "/manifests/sha256:" + strings.ToUpper(hex64), status: 400, codes: []string{"MANIFEST_INVALID", "DIGEST_INVALID"}},
		{name: "blob unknown", target: p + "/blobs/" + string(missing), status: 404, codes: []string{"BLOB_UNKNOWN"}},
		{name: "blob unknown HEAD", method: "HEAD", target: p + "/blobs/" + string(missing), status: 404},
		{name: "manifest digest unknown", target: p + "/manifests/" + string(missing), status: 404, codes: []string{"MANIFEST_UNKNOWN"}},
		{name: "manifest tag unknown", target: p + "/manifests/nope", status: 404, codes: []string{"MANIFEST_UNKNOWN"}},
		{name: "repository unknown", target: "/v2/" + w.reg.Addr + "/team/nope/manifests/v1", status: 404, codes: []string{"MANIFEST_UNKNOWN", "NAME_UNKNOWN"}},
		// Blobs held in the tiers are never served as manifests: the cache
		// asks the upstream, and Debian's registry 2.8 answers 500 for a
		// blob asked as a manifest, which the cache passes on as 502.
		{name: "a layer asked for as a manifest", target: p + "/manifests/" + string(layerD), status: 502, codes: []string{"UNAVAILABLE"}},
		{name: "a config asked for as a manifest", target: p + "/manifests/" + string(w.img.ConfigDigest), status: 502, codes: []string{"UNAVAILABLE"}},

		// Path tricks in names.
		{name: "dot-dot name", target: "/v2/../../etc/manifests/v1", status: 400, codes: []string{"NAME_INVALID"}},
		{name: "dot-dot in repo", target: p + "/../../x/manifests/v1", status: 400, codes: []string{"NAME_INVALID"}},
		{name: "encoded dot-dot", target: "/v2/%2e%2e/%2e%2e/etc/manifests/v1", status: 400, codes: []string{"NAME_INVALID"}},
		{name: "encoded dot-dot after registry", target: "/v2/" + w.reg.Addr + "/%2E%2E/%2e%2e/team/app/manifests/v1", status: 400, codes: []string{"NAME_INVALID"}},
		{name: "encoded slashes are slashes", target: "/v2/" + w.reg.Addr + "%2fteam%2Fapp/manifests/v1", status: 200, body: w.img.Manifest},
		{name: "tag smuggling a path", target: p + "/manifests/v1%2f..%2f..%2fblobs%2f" + string(layerD), status: 400, codes: []string{"NAME_INVALID", "TAG_INVALID"}},
		{name: "dot-dot registry", target: "/v2/../" + w.reg.Addr + "/team/app/manifests/v1", status: 400, codes: []string{"NAME_INVALID"}},
		{name: "empty component", target: "/v2/" + w.reg.Addr + "/team//app/manifests/v1", status: 404},
		{name: "empty name", target: "/v2//manifests/v1", status: 400, codes: []string{"NAME_INVALID"}},
		{name: "upper-case repo", target: "/v2/" + w.reg.Addr + "/Team/app/manifests/v1", status: 400, codes: []string{"NAME_INVALID"}},
		{name: "NUL in repo", target: "/v2/" + w.reg.Addr + "/team%00/app/manifests/v1", status: 400, codes: []string{"NAME_INVALID"}},
		{name: "unicode repo", target: "/v2/" + w.reg.Addr + "/t%C3%A9am/app/manifests/v1", status: 400, codes: []string{"NAME_INVALID"}},
		{name: "CRLF in tag", target: p + "/manifests/v1%0d%0aX-Injected:%20yes", status: 400, codes: []string{"TAG_INVALID", "MANIFEST_INVALID"},
			check: func(r rawResponse) []string {
				if r.header.Get("X-Injected") != "" {
					return []string{"a header was injected through the tag"}
				}
				return nil
			}},
		{name: "tag starting with a dot", target: p + "/manifests/.v1", status: 400, codes: []string{"TAG_INVALID", "MANIFEST_INVALID"}},
		{name: "tag of 129 characters", target: p + "/manifests/" + long(129), status: 400, codes: []string{"TAG_INVALID", "MANIFEST_INVALID"}},
		{name: "tag of 64 KiB", target: p + "/manifests/" + long(64<<10), status: 400, codes: []string{"TAG_INVALID", "MANIFEST_INVALID"}},
		{name: "repo of 256 characters", target: "/v2/" + w.reg.Addr + "/" + long(256) + "/manifests/v1", status: 400, codes: []string{"NAME_INVALID"}},
		{name: "repo of 64 KiB", target: "/v2/" + w.reg.Addr + "/" + strings.Repeat("a/", 32<<10) + "b/manifests/v1", status: 400, codes: []string{"NAME_INVALID"}},
		{name: "registry of 64 KiB", target: "/v2/" + long(64<<10) + ".io/a/manifests/v1", status: 403, codes: []string{"DENIED"}},
		{name: "registry not allowed", target: "/v2/evil.example/team/app/manifests/v1", status: 403, codes: []string{"DENIED"}},
		{name: "docker hub not allowed", target: "/v2/library/busybox/manifests/latest", status: 403, codes: []string{"DENIED"}},
		{name: "ns not allowed", target: "/v2/team/app/manifests/v1?ns=evil.example", status: 403, codes: []string{"DENIED"}},
		{name: "ns with a path", target: "/v2/team/app/manifests/v1?ns=" + w.reg.Addr + "/../x", status: 400, codes: []string{"NAME_INVALID"}},
		{name: "ns with userinfo", target: "/v2/team/app/manifests/v1?ns=user@" + w.reg.Addr, status: 400, codes: []string{"NAME_INVALID"}},
		{name: "ns of 64 KiB", target: "/v2/team/app/manifests/v1?ns=" + long(64<<10), status: 403, codes: []string{"DENIED"}},
		{name: "ns form works", target: "/v2/team/app/manifests/v1?ns=" + w.reg.Addr, status: 200, body: w.img.Manifest},
		{name: "ns port 0", target: "/v2/team/app/manifests/v1?ns=127.0.0.1:0", status: 400, codes: []string{"NAME_INVALID"}},
		{name: "ns port past 65535", target: "/v2/team/app/manifests/v1?ns=127.0.0.1:65536", status: 400, codes: []string{"NAME_INVALID"}},
		{name: "not under /v2/", target: "/etc/passwd", status: 404},
		{name: "catalog", target: "/v2/_catalog", status: 404, codes: []string{"UNSUPPORTED", "NAME_INVALID"}},
		{name: "tags list", target: p + "/tags/list", status: 404, codes: []string{"UNSUPPORTED"}},
		{name: "referrers", target: p + "/referrers/" + string(w.img.ManifestDigest), status: 404, codes: []string{"UNSUPPORTED"}},
		{name: "upload status", target: p + "/blobs/uploads/1234", status: 400, codes: []string{"DIGEST_INVALID", "UNSUPPORTED", "BLOB_UPLOAD_UNKNOWN"}},
	}
	// Unknown and writing methods.
	for _, m := range []string{"PUT", "POST", "DELETE", "PATCH", "OPTIONS", "TRACE", "PROPFIND", "FOO"} {
		for _, target := range []string{"/v2/", p + "/manifests/v1", p + "/blobs/" + string(layerD), p + "/blobs/uploads/", "/v2/../../x"} {
			cases = append(cases, hostileCase{name: m + " " + target, method: m, target: target, status: 405, codes: []string{"UNSUPPORTED"}, check: allowHeader})
		}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, addr) })
	}

	t.Run("lying upstream", func(t *testing.T) {
		w.lyingUpstream(t, srv, d)
	})
	t.Run("range", func(t *testing.T) {
		w.rangeAbuse(t)
	})

	// The cache is still up and still right.
	if r := rawRequest(t, addr, "GET", "/v2/", nil); r.status != 200 {
		t.Fatalf("after the hostile requests, /v2/ answers %d", r.status)
	}
	for _, dg := range []cas.Digest{w.img.ManifestDigest, layerD} {
		kind := "/blobs/"
		if dg == w.img.ManifestDigest {
			kind = "/manifests/"
		}
		if r := rawRequest(t, addr, "GET", p+kind+string(dg), nil); r.status != 200 || cas.FromBytes(r.body) != dg {
			t.Fatalf("after the hostile requests, %s%s answers %d with %s", kind, dg, r.status, cas.FromBytes(r.body))
		}
	}
}

// lyingUpstream: the fake registry lies about lengths and digests and
// sends huge manifests. The cache answers with spec errors or breaks the
// body off, never hands over a whole wrong body, and keeps none of it.
func (w *hostileWorld) lyingUpstream(t *testing.T, srv *httptest.Server, d *disk.Disk) {
	addr := strings.TrimPrefix(srv.URL, "http://")
	l := w.lie
	p := func(how string) string { return "/v2/" + w.fakeUp + "/lie/" + how }
	cases := []hostileCase{
		{name: "manifest of 5 MiB", target: p("huge-manifest") + "/manifests/v1", status: 502, codes: []string{"UNAVAILABLE", "MANIFEST_INVALID", "SIZE_INVALID"}},
		{name: "manifest of 5 MiB by digest", target: p("huge-manifest") + "/manifests/" + string(l.hugeManD), status: 502, codes: []string{"UNAVAILABLE", "MANIFEST_INVALID", "SIZE_INVALID"}},
		{name: "manifest of 5 MiB without length", target: p("huge-manifest-chunked") + "/manifests/v1", status: 502, codes: []string{"UNAVAILABLE", "MANIFEST_INVALID", "SIZE_INVALID"}},
		{name: "manifest of 5 MiB HEAD", method: "HEAD", target: p("huge-manifest") + "/manifests/v1", status: 502},
		{name: "manifest of exactly 4 MiB", target: p("max-manifest") + "/manifests/v1", status: 200, body: l.maxMan},
		{name: "manifest of exactly 4 MiB by digest, from the tier", target: p("max-manifest") + "/manifests/" + string(l.maxManD), status: 200, body: l.maxMan},
		{name: "manifest with a lying digest header", target: p("manifest-digest-header") + "/manifests/v1", status: 502, codes: []string{"DIGEST_INVALID"}},
		{name: "manifest by digest, other content", target: p("manifest-other-content") + "/manifests/" + string(l.goodManD), status: 502, codes: []string{"DIGEST_INVALID"}},
		{name: "manifest shorter than announced", target: p("manifest-short") + "/manifests/v1", status: 502, codes: []string{"UNAVAILABLE"}},
		{name: "manifest that is HTML", target: p("manifest-html") + "/manifests/v1", status: 502, codes: []string{"UNAVAILABLE", "MANIFEST_INVALID"}},
		{name: "blob that breaks off every time", target: p("blob-short") + "/blobs/" + string(l.blobD), status: 502, codes: []string{"UNAVAILABLE"}, broken: l.blob},
		{name: "blob announcing half its length", target: p("blob-announces-less") + "/blobs/" + string(l.blobD), status: 502, codes: []string{"DIGEST_INVALID"}, broken: l.blob[:len(l.blob)/2]},
		{name: "blob announcing more than its length", target: p("blob-announces-more") + "/blobs/" + string(l.blobD), status: 502, codes: []string{"UNAVAILABLE", "DIGEST_INVALID"}, broken: append(bytes.Clone(l.blob), make([]byte, 1000)...)},
		{name: "blob with other content", target: p("blob-other-content") + "/blobs/" + string(l.blobD), status: 502, codes: []string{"DIGEST_INVALID"}, broken: l.blob},
		{name: "small blob with other content", target: p("blob-small-other-content") + "/blobs/" + string(l.smallD), status: 502, codes: []string{"DIGEST_INVALID"}, broken: l.small},
		{name: "blob with a lying digest header", target: p("blob-digest-header") + "/blobs/" + string(l.blobD), status: 502, codes: []string{"DIGEST_INVALID"}},
		{name: "blob that is HTML", target: p("blob-html") + "/blobs/" + string(l.blobD), status: 502, codes: []string{"DIGEST_INVALID"}, broken: []byte("<html><body>sign in to the Wi-Fi</body></html>")},
		{name: "blob without any length", target: p("blob-no-length") + "/blobs/" + string(l.blobD), status: 502, codes: []string{"UNAVAILABLE"}},
		{name: "upstream 500", target: p("status-500") + "/blobs/" + string(l.blobD), status: 502, codes: []string{"UNAVAILABLE"}},
		{name: "upstream 429", target: p("status-429") + "/manifests/v1", status: 502, codes: []string{"UNAVAILABLE", "TOOMANYREQUESTS"}},
		{name: "manifest redirected to this host", target: p("redirect-local") + "/manifests/v1", status: 502, codes: []string{"UNAVAILABLE"}},
		{name: "blob redirected to this host", target: p("redirect-local") + "/blobs/" + string(l.blobD), status: 502, codes: []string{"UNAVAILABLE"}},
		{name: "blob HEAD redirected to this host", method: "HEAD", target: p("redirect-local") + "/blobs/" + string(l.blobD), status: 502},
		{name: "blob redirected to IMDS", target: p("redirect-imds") + "/blobs/" + string(l.blobD), status: 502, codes: []string{"UNAVAILABLE"}},
		{name: "upstream error body forging log lines", target: p("error-body-forged") + "/blobs/" + string(l.blobD), status: 404, codes: []string{"BLOB_UNKNOWN"}},
		{name: "blob HEAD of a lying upstream", method: "HEAD", target: p("blob-other-content") + "/blobs/" + string(l.blobD), status: 200,
			check: func(r rawResponse) []string {
				// HEAD cannot check content; it may say what the upstream
				// announced. The GET after it must still not serve it.
				if got := r.header.Get("Content-Length"); got != strconv.Itoa(len(l.blob)) {
					return []string{fmt.Sprintf("HEAD Content-Length %q, want %d", got, len(l.blob))}
				}
				return nil
			}},
		{name: "blob GET after that HEAD", target: p("blob-other-content") + "/blobs/" + string(l.blobD), status: 502, codes: []string{"DIGEST_INVALID"}, broken: l.blob},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, addr) })
	}

	// Concurrent clients of a lying blob: all see an error or a broken
	// body, none a whole one.
	t.Run("32 clients of a lying blob", func(t *testing.T) {
		outcomes := make(chan string, 32)
		for range 32 {
			go func() {
				r := rawRequest(t, addr, "GET", p("blob-other-content")+"/blobs/"+string(l.blobD), nil)
				switch {
				case r.noResponse != nil:
					outcomes <- "no answer"
				case r.status == 200 && r.bodyErr == nil:
					outcomes <- fmt.Sprintf("WHOLE WRONG BODY of %d bytes", len(r.body))
				case r.status == 200:
					outcomes <- "200, body broken off"
				default:
					outcomes <- fmt.Sprintf("%d %s", r.status, r.body)
				}
			}()
		}
		tally := map[string]int{}
		for range 32 {
			o := <-outcomes
			tally[o]++
			if strings.HasPrefix(o, "WHOLE") {
				t.Error(o)
			}
		}
		t.Logf("32 concurrent clients of a blob the upstream lies about: %v", tally)
	})

	// Nothing the liar sent is kept; what checked out is.
	time.Sleep(200 * time.Millisecond) // commits run after the answers
	for _, dg := range []cas.Digest{l.blobD, l.smallD, l.hugeManD, l.goodManD, l.otherManD} {
		if _, err := d.Stat(context.Background(), dg); !errors.Is(err, cas.ErrNotFound) {
			t.Errorf("the disk tier holds %s from the lying upstream (%v)", dg, err)
		}
	}
	if _, err := d.Stat(context.Background(), l.maxManD); err != nil {
		t.Errorf("the 4 MiB manifest that checked out is not on disk: %v", err)
	}
}

// rangeAbuse sends hostile Range headers for a blob, served cold (a
// flight from the upstream, fresh cache each time) and warm (the disk).
func (w *hostileWorld) rangeAbuse(t *testing.T) {
	layerD := w.img.Layers[0].Digest
	b := w.layer
	n := len(b)
	target := "/v2/" + w.reg.Addr + "/team/app/blobs/" + string(layerD)
	part := func(start, end int) func(r rawResponse) []string { // end exclusive
		return func(r rawResponse) []string {
			var bad []string
			if got, want := r.header.Get("Content-Range"), fmt.Sprintf("bytes %d-%d/%d", start, end-1, n); got != want {
				bad = append(bad, fmt.Sprintf("Content-Range %q, want %q", got, want))
			}
			if got := r.header.Get("Content-Length"); got != strconv.Itoa(end-start) {
				bad = append(bad, fmt.Sprintf("Content-Length %q, want %d", got, end-start))
			}
			if got := r.header.Get("Docker-Content-Digest"); got != string(layerD) {
				bad = append(bad, fmt.Sprintf("Docker-Content-Digest %q", got))
			}
			return bad
		}
	}
	unsatisfiable := func(r rawResponse) []string {
		if got, want := r.header.Get("Content-Range"), fmt.Sprintf("bytes */%d", n); got != want {
			return []string{fmt.Sprintf("416 with Content-Range %q, want %q (RFC 9110 §15.5.17)", got, want)}
		}
		return nil
	}
	many := make([]string, 2000)
	for i := range many {
		many[i] = fmt.Sprintf("%d-%d", i*2, i*2)
	}
	cases := []hostileCase{
		{name: "first byte", header: map[string]string{"Range": "bytes=0-0"}, status: 206, body: b[:1], check: part(0, 1)},
		{name: "last byte", header: map[string]string{"Range": "bytes=-1"}, status: 206, body: b[n-1:], check: part(n-1, n)},
		{name: "open end", header: map[string]string{"Range": fmt.Sprintf("bytes=%d-", n-100)}, status: 206, body: b[n-100:], check: part(n-100, n)},
		{name: "end beyond size", header: map[string]string{"Range": fmt.Sprintf("bytes=10-%d", n*10)}, status: 206, body: b[10:], check: part(10, n)},
		{name: "suffix beyond size", header: map[string]string{"Range": fmt.Sprintf("bytes=-%d", n*10)}, status: 206, body: b, check: part(0, n)},
		{name: "start at size", header: map[string]string{"Range": fmt.Sprintf("bytes=%d-", n)}, status: 416,
			check: unsatisfiable},
		{name: "start beyond size", header: map[string]string{"Range": "bytes=9223372036854775806-"}, status: 416,
			check: unsatisfiable},
		{name: "empty suffix", header: map[string]string{"Range": "bytes=-0"}, status: 416},
		// A range the server cannot read is ignored: the whole blob (RFC 9110 §14.2).
		{name: "reversed", header: map[string]string{"Range": "bytes=10-5"}, status: 200, body: b},
		{name: "negative start", header: map[string]string{"Range": "bytes=-5-10"}, status: 200, body: b},
		{name: "no numbers", header: map[string]string{"Range": "bytes=-"}, status: 200, body: b},
		{name: "not numbers", header: map[string]string{"Range": "bytes=abc-def"}, status: 200, body: b},
		{name: "end past int64", header: map[string]string{"Range": "bytes=0-99999999999999999999999"}, status: 206, body: b, check: part(0, n)},
		{name: "two ranges", header: map[string]string{"Range": "bytes=0-1,5-6"}, status: 200, body: b},
		{name: "2000 ranges", header: map[string]string{"Range": "bytes=" + strings.Join(many, ",")}, status: 200, body: b},
		{name: "unknown unit", header: map[string]string{"Range": "items=0-5"}, status: 200, body: b},
		{name: "HEAD with a range", method: "HEAD", header: map[string]string{"Range": "bytes=0-9"}, status: 206, check: part(0, 10)},
	}
	for _, mode := range []string{"cold", "warm"} {
		t.Run(mode, func(t *testing.T) {
			var warm *httptest.Server
			if mode == "warm" {
				var d *disk.Disk
				warm, d = w.start(t)
				if r := rawRequest(t, strings.TrimPrefix(warm.URL, "http://"), "GET", target, nil); r.status != 200 {
					t.Fatalf("warm: %d", r.status)
				}
				wantIn(t, d, []cas.Digest{layerD})
			}
			for _, tc := range cases {
				tc.target = target
				t.Run(tc.name, func(t *testing.T) {
					srv := warm
					if srv == nil {
						srv, _ = w.start(t) // a fresh cache: the range is cut from a flight
					}
					tc.run(t, strings.TrimPrefix(srv.URL, "http://"))
				})
			}
		})
	}
}
