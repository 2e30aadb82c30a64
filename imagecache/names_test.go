package imagecache

import (
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/berthhq/berth/imagecache/cas"
)

var dgst = string(cas.FromBytes([]byte("layer")))

func TestParseRequest(t *testing.T) {
	for _, tc := range []struct {
		path, query string
		want        request
		code        string
	}{
		// Docker Hub by default, with library/ for official images.
		{path: "busybox/manifests/latest", want: request{Registry: "docker.io", Repo: "library/busybox", Kind: "manifests", Reference: "latest"}},
		{path: "grafana/grafana/blobs/" + dgst, want: request{Registry: "docker.io", Repo: "grafana/grafana", Kind: "blobs", Reference: dgst, Digest: cas.Digest(dgst)}},
		// Path prefix form.
		{path: "myregistry.azurecr.io/team/app/manifests/v1.2", want: request{Registry: "myregistry.azurecr.io", Repo: "team/app", Kind: "manifests", Reference: "v1.2"}},
		{path: "127.0.0.1:5000/busybox/manifests/" + dgst, want: request{Registry: "127.0.0.1:5000", Repo: "busybox", Kind: "manifests", Reference: dgst, Digest: cas.Digest(dgst)}},
		{path: "127.0.0.1_5000/busybox/manifests/t", want: request{Registry: "127.0.0.1:5000", Repo: "busybox", Kind: "manifests", Reference: "t"}},
		{path: "registry.internal_443/a/manifests/t", want: request{Registry: "registry.internal:443", Repo: "a", Kind: "manifests", Reference: "t"}},
		{path: "my_org/app/manifests/t", want: request{Registry: "docker.io", Repo: "my_org/app", Kind: "manifests", Reference: "t"}},
		{path: "localhost/a/b/manifests/t", want: request{Registry: "localhost", Repo: "a/b", Kind: "manifests", Reference: "t"}},
		{path: "index.docker.io/busybox/manifests/1", want: request{Registry: "docker.io", Repo: "library/busybox", Kind: "manifests", Reference: "1"}},
		// Host names are case-insensitive, ports have one spelling.
		{path: "LocalHost_5000/a/manifests/t", want: request{Registry: "localhost:5000", Repo: "a", Kind: "manifests", Reference: "t"}},
		{path: "MyRegistry.AzureCR.io/a/manifests/t", want: request{Registry: "myregistry.azurecr.io", Repo: "a", Kind: "manifests", Reference: "t"}},
		{path: "a/manifests/t", query: "ns=LocalHost:5000", want: request{Registry: "localhost:5000", Repo: "a", Kind: "manifests", Reference: "t"}},
		{path: "a/manifests/t", query: "ns=localhost:05000", want: request{Registry: "localhost:5000", Repo: "a", Kind: "manifests", Reference: "t"}},
		{path: "a/manifests/t", query: "ns=Index.Docker.IO", want: request{Registry: "docker.io", Repo: "library/a", Kind: "manifests", Reference: "t"}},
		// containerd's mirror form.
		{path: "library/busybox/manifests/latest", query: "ns=docker.io", want: request{Registry: "docker.io", Repo: "library/busybox", Kind: "manifests", Reference: "latest"}},
		{path: "app/blobs/" + dgst, query: "ns=registry.internal:5000", want: request{Registry: "registry.internal:5000", Repo: "app", Kind: "blobs", Reference: dgst, Digest: cas.Digest(dgst)}},
		// A repository may itself contain "manifests" or "blobs".
		{path: "a/blobs/manifests/t", want: request{Registry: "docker.io", Repo: "a/blobs", Kind: "manifests", Reference: "t"}},
		// Hostile and malformed.
		{path: "../../etc/manifests/latest", code: "NAME_INVALID"},
		{path: "a/../b/manifests/latest", code: "NAME_INVALID"},
		{path: "UPPER/manifests/latest", code: "NAME_INVALID"},
		{path: "a//b/manifests/latest", code: "NAME_INVALID"},
		{path: "/manifests/latest", code: "NAME_INVALID"},
		{path: strings.Repeat("a/", 200) + "b/manifests/t", code: "NAME_INVALID"},
		{path: "a/blobs/latest", code: "DIGEST_INVALID"},
		{path: "a/blobs/sha256:abc", code: "DIGEST_INVALID"},
		{path: "a/blobs/md5:" + strings.Repeat("a", 32), code: "DIGEST_INVALID"},
		{path: "a/manifests/sha256:zz", code: "MANIFEST_INVALID"},
		{path: "a/manifests/.hidden", code: "MANIFEST_INVALID"},
		{path: "a/manifests/" + strings.Repeat("t", 129), code: "MANIFEST_INVALID"},
		{path: "a/tags/list", code: "UNSUPPORTED"},
		{path: "a/manifests/t", query: "ns=evil/../x", code: "NAME_INVALID"},
		{path: "a/manifests/t", query: "ns=localhost:0", code: "NAME_INVALID"},
		{path: "a/manifests/t", query: "ns=localhost:65536", code: "NAME_INVALID"},
		{path: "a/manifests/t", query: "ns=localhost:99999", code: "NAME_INVALID"},
		{path: "localhost_0/a/manifests/t", code: "NAME_INVALID"},
	} {
		q, _ := url.ParseQuery(tc.query)
		got, err := parseRequest(tc.path, q)
		if tc.code != "" {
			var ae *apiError
			if !errors.As(err, &ae) || ae.Code != tc.code {
				t.Errorf("parseRequest(%.60q, %q) = %+v, %v; want %s", tc.path, tc.query, got, err, tc.code)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseRequest(%q, %q): %v", tc.path, tc.query, err)
			continue
		}
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("parseRequest(%q, %q) (-want +got):\n%s", tc.path, tc.query, d)
		}
	}
}

func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{"busybox/manifests/latest", "a.b/c/blobs/" + dgst, "x/manifests/" + dgst, "../../x/blobs/y"} {
		f.Add(s, "")
	}
	f.Add("a/manifests/t", "ns=docker.io")
	f.Fuzz(func(t *testing.T, path, query string) {
		q, _ := url.ParseQuery(query)
		req, err := parseRequest(path, q)
		if err != nil {
			var ae *apiError
			if !errors.As(err, &ae) || ae.Status < 400 || ae.Code == "" {
				t.Fatalf("error without a spec code: %v", err)
			}
			return
		}
		for _, part := range strings.Split(req.Repo, "/") {
			if part == "" || part == "." || part == ".." {
				t.Fatalf("accepted repo %q", req.Repo)
			}
		}
		if norm, _ := NormalizeRegistry(req.Registry); norm != req.Registry {
			t.Fatalf("registry %q is not normalized (%q)", req.Registry, norm)
		}
		if strings.ContainsAny(req.Registry, "/\\ ") || strings.Contains(refName(req.Registry, req.Repo, req.Reference), "..") && req.Digest == "" {
			t.Fatalf("accepted %+v", req)
		}
	})
}

func TestNormalizeRegistry(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"localhost:5000", "localhost:5000", true},
		{"LocalHost:5000", "localhost:5000", true},
		{"LOCALHOST:05000", "localhost:5000", true},
		{" MCR.Microsoft.com ", "mcr.microsoft.com", true},
		{"registry-1.docker.io", "docker.io", true},
		{"Registry.Hub.Docker.com", "docker.io", true},
		{"docker.io:443", "docker.io:443", true},
		{"127.0.0.1:5000", "127.0.0.1:5000", true},
		{"host:0", "host:0", false},
		{"host:65536", "host:65536", false},
		{"host:", "host:", false},
		{"host:-1", "host:-1", false},
		{"host:+80", "host:+80", false},
	} {
		got, ok := NormalizeRegistry(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("NormalizeRegistry(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestParseRange(t *testing.T) {
	for _, tc := range []struct {
		h          string
		size       int64
		start, end int64
		partial    bool
		bad        bool
	}{
		{"", 10, 0, 10, false, false},
		{"bytes=0-", 10, 0, 10, true, false},
		{"bytes=3-5", 10, 3, 6, true, false},
		{"bytes=3-100", 10, 3, 10, true, false},
		{"bytes=3-99999999999999999999999", 10, 3, 10, true, false},
		{"bytes=-4", 10, 6, 10, true, false},
		{"bytes=-40", 10, 0, 10, true, false},
		// Past the end: 416.
		{"bytes=10-", 10, 0, 0, false, true},
		{"bytes=-0", 10, 0, 0, false, true},
		// Not understood: ignored, the whole blob (RFC 9110).
		{"bytes=5-3", 10, 0, 10, false, false},
		{"bytes=0-1,3-4", 10, 0, 10, false, false},
		{"items=0-1", 10, 0, 10, false, false},
		{"bytes=x-", 10, 0, 10, false, false},
		{"bytes=-1-2", 10, 0, 10, false, false},
	} {
		s, e, p, err := parseRange(tc.h, tc.size)
		if (err != nil) != tc.bad || (!tc.bad && (s != tc.start || e != tc.end || p != tc.partial)) {
			t.Errorf("parseRange(%q, %d) = %d, %d, %v, %v", tc.h, tc.size, s, e, p, err)
		}
	}
}

func TestDetectMediaType(t *testing.T) {
	for body, want := range map[string]string{
		`{"mediaType":"application/vnd.docker.distribution.manifest.v2+json"}`: "application/vnd.docker.distribution.manifest.v2+json",
		`{"schemaVersion":2,"manifests":[]}`:                                   "application/vnd.oci.image.index.v1+json",
		`{"schemaVersion":2,"config":{}}`:                                      "application/vnd.oci.image.manifest.v1+json",
		`not json`:                                                             "application/octet-stream",
	} {
		if got := detectMediaType([]byte(body)); got != want {
			t.Errorf("detectMediaType(%s) = %s, want %s", body, got, want)
		}
	}
}

// FuzzManifestHandling feeds arbitrary manifests and Accept headers to what
// the cache reads of them: it never panics and always answers a type.
func FuzzManifestHandling(f *testing.F) {
	f.Add([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{}}`), "application/vnd.oci.image.index.v1+json")
	f.Add([]byte(`{"manifests":[{"digest":"x"}]}`), "*/*;q=0.5, application/json")
	f.Add([]byte(`[`), "")
	f.Fuzz(func(t *testing.T, body []byte, accept string) {
		if detectMediaType(body) == "" {
			t.Fatal("no media type")
		}
		list := acceptList([]string{accept})
		if len(list) < len(defaultAccept) {
			t.Fatalf("accept list %v lost the defaults", list)
		}
	})
}
