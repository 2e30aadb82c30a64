// Package imagetest builds images for tests and pushes them into a registry
// (internal/testenv/registry's, or any other) through the distribution
// API: images of given layers, and a real, runnable busybox with a manifest
// list. It lives beside the image cache rather than in internal/testenv
// because its images are named by the cache's digests (imagecache/cas).
package imagetest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berthhq/berth/imagecache/cas"
	"github.com/berthhq/berth/internal/testenv"
)

// Media types of seeded images.
const (
	MediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeDockerConfig       = "application/vnd.docker.container.image.v1+json"
	MediaTypeDockerLayer        = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	MediaTypeOCIManifest        = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeOCIConfig          = "application/vnd.oci.image.config.v1+json"
	MediaTypeOCILayer           = "application/vnd.oci.image.layer.v1.tar+gzip"
)

// Blob describes a pushed blob.
type Blob struct {
	Digest    cas.Digest
	Size      int64
	MediaType string
}

// Image is an image pushed to a test registry.
type Image struct {
	// Repo and Tag are where it was pushed (Tag "" when by digest only).
	Repo, Tag string
	// Manifest is the manifest's bytes as pushed, ManifestDigest their
	// digest and MediaType their type.
	Manifest       []byte
	ManifestDigest cas.Digest
	MediaType      string
	// Config is the config blob's bytes.
	Config       []byte
	ConfigDigest cas.Digest
	// Layers are the layer blobs in manifest order.
	Layers []Blob
}

// Ref returns "repo:tag", or "repo@digest" for an untagged image.
func (im Image) Ref() string {
	if im.Tag == "" {
		return im.Repo + "@" + string(im.ManifestDigest)
	}
	return im.Repo + ":" + im.Tag
}

// Seed pushes an image made of layers (blobs taken as they are, with
// the gzip layer media type; the config's diff_ids are their digests, so
// such an image is for fetching, not running) through the registry's push
// API, with a Docker v2 schema2 manifest tagged tag. registryURL may carry
// user:password@ for a registry with basic or token auth (registry.Server.AuthURL).
// Blobs over 8 MiB go up in chunks (PATCH), the rest in one PUT.
func Seed(t testing.TB, registryURL, repo, tag string, layers ...[]byte) Image {
	t.Helper()
	return seedImage(t, registryURL, repo, tag, false, layers)
}

// SeedOCI is Seed with OCI media types (an OCI image manifest),
// what the distribution-spec conformance suite asks for.
func SeedOCI(t testing.TB, registryURL, repo, tag string, layers ...[]byte) Image {
	t.Helper()
	return seedImage(t, registryURL, repo, tag, true, layers)
}

func seedImage(t testing.TB, registryURL, repo, tag string, oci bool, layers [][]byte) Image {
	t.Helper()
	p := newPusher(t, registryURL)
	diffIDs := make([]cas.Digest, len(layers))
	for i, l := range layers {
		diffIDs[i] = cas.FromBytes(l)
	}
	cfg := imageConfig(runtime.GOARCH, "linux", "", diffIDs, nil)
	return p.pushImage(t, repo, tag, oci, cfg, layers)
}

// pushImage pushes config and layers, then the manifest under tag (or by
// digest when tag is "").
func (p *pusher) pushImage(t testing.TB, repo, tag string, oci bool, cfg []byte, layers [][]byte) Image {
	t.Helper()
	cfgType, layerType, manType := MediaTypeDockerConfig, MediaTypeDockerLayer, MediaTypeDockerManifest
	if oci {
		cfgType, layerType, manType = MediaTypeOCIConfig, MediaTypeOCILayer, MediaTypeOCIManifest
	}
	im := Image{Repo: repo, Tag: tag, Config: cfg, ConfigDigest: cas.FromBytes(cfg), MediaType: manType}
	p.pushBlob(t, repo, cfg)
	type desc struct {
		MediaType string     `json:"mediaType"`
		Size      int64      `json:"size"`
		Digest    cas.Digest `json:"digest"`
	}
	var ls []desc
	for _, l := range layers {
		d := cas.FromBytes(l)
		p.pushBlob(t, repo, l)
		im.Layers = append(im.Layers, Blob{Digest: d, Size: int64(len(l)), MediaType: layerType})
		ls = append(ls, desc{layerType, int64(len(l)), d})
	}
	if ls == nil {
		ls = []desc{}
	}
	man, err := json.MarshalIndent(map[string]any{
		"schemaVersion": 2,
		"mediaType":     manType,
		"config":        desc{cfgType, int64(len(cfg)), im.ConfigDigest},
		"layers":        ls,
	}, "", "   ")
	if err != nil {
		t.Fatalf("seed %s: %v", repo, err)
	}
	im.Manifest, im.ManifestDigest = man, cas.FromBytes(man)
	p.pushManifest(t, repo, tag, manType, man)
	return im
}

// imageConfig renders an image config; osVersion is for Windows images.
func imageConfig(arch, os, osVersion string, diffIDs []cas.Digest, cmd []string) []byte {
	if diffIDs == nil {
		diffIDs = []cas.Digest{}
	}
	c := map[string]any{
		"architecture": arch,
		"os":           os,
		"created":      "2026-01-01T00:00:00Z",
		"config":       map[string]any{"Env": []string{"PATH=/bin"}, "Cmd": cmd},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": diffIDs},
		"history":      []map[string]any{{"created": "2026-01-01T00:00:00Z", "created_by": "berth testenv"}},
	}
	if osVersion != "" {
		c["os.version"] = osVersion
	}
	b, _ := json.Marshal(c)
	return b
}

// Busybox is what SeedBusybox pushed.
type Busybox struct {
	// Image is the runnable Linux image, tagged with the tag given.
	Image Image
	// Windows is a Windows image (not runnable: one small layer), pushed
	// by digest only, for platform selection.
	Windows Image
	// List is the manifest list of both, tagged ListTag.
	List    Image
	ListTag string
}

// WindowsOSVersion is the os.version of SeedBusybox's Windows platform
// (Windows Server 2022).
const WindowsOSVersion = "10.0.20348.2227"

// SeedBusybox pushes a real, runnable image of this machine's static
// busybox (apt-get install busybox-static): one gzip layer holding
// bin/busybox and the links sh, echo, sleep and true, Cmd ["sh"],
// PATH=/bin. It is tagged tag. It also pushes a manifest list tagged
// tag+"-list" with two platforms: this image (linux/GOARCH) and a Windows
// image (windows/amd64, os.version WindowsOSVersion). The layer is built
// deterministically, so digests are the same on every run with the same
// busybox.
func SeedBusybox(t testing.TB, registryURL, repo, tag string) Busybox {
	t.Helper()
	layer, diffID := BusyboxLayer(t)
	p := newPusher(t, registryURL)
	var out Busybox
	cfg := imageConfig(runtime.GOARCH, "linux", "", []cas.Digest{diffID}, []string{"sh"})
	out.Image = p.pushImage(t, repo, tag, false, cfg, [][]byte{layer})

	winLayer, winDiff := gzipTar(t, []tarEntry{{name: "Files/", dir: true}, {name: "Files/berth.txt", data: []byte("berth test windows layer\n")}})
	winCfg := imageConfig("amd64", "windows", WindowsOSVersion, []cas.Digest{winDiff}, []string{"cmd"})
	out.Windows = p.pushImage(t, repo, "", false, winCfg, [][]byte{winLayer})

	type platform struct {
		Architecture string `json:"architecture"`
		OS           string `json:"os"`
		OSVersion    string `json:"os.version,omitempty"`
	}
	type entry struct {
		MediaType string     `json:"mediaType"`
		Size      int64      `json:"size"`
		Digest    cas.Digest `json:"digest"`
		Platform  platform   `json:"platform"`
	}
	list, err := json.MarshalIndent(map[string]any{
		"schemaVersion": 2,
		"mediaType":     MediaTypeDockerManifestList,
		"manifests": []entry{
			{MediaTypeDockerManifest, int64(len(out.Image.Manifest)), out.Image.ManifestDigest, platform{runtime.GOARCH, "linux", ""}},
			{MediaTypeDockerManifest, int64(len(out.Windows.Manifest)), out.Windows.ManifestDigest, platform{"amd64", "windows", WindowsOSVersion}},
		},
	}, "", "   ")
	if err != nil {
		t.Fatalf("seed busybox list: %v", err)
	}
	out.ListTag = tag + "-list"
	p.pushManifest(t, repo, out.ListTag, MediaTypeDockerManifestList, list)
	out.List = Image{Repo: repo, Tag: out.ListTag, Manifest: list, ManifestDigest: cas.FromBytes(list), MediaType: MediaTypeDockerManifestList}
	return out
}

// BusyboxLayer returns the gzip layer SeedBusybox pushes and its diff_id
// (the digest of the uncompressed tar).
func BusyboxLayer(t testing.TB) (layer []byte, diffID cas.Digest) {
	t.Helper()
	path, err := exec.LookPath("busybox")
	if err != nil {
		if _, serr := os.Stat("/bin/busybox"); serr == nil {
			path, err = "/bin/busybox", nil
		}
	}
	testenv.Need(t, "busybox", err)
	bin, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read busybox: %v", err)
	}
	if err := checkStatic(bin); err != nil {
		testenv.Need(t, "busybox-static", fmt.Errorf("%s: %w", path, err))
	}
	entries := []tarEntry{{name: "bin/", dir: true}, {name: "bin/busybox", data: bin, mode: 0o755}}
	for _, l := range []string{"sh", "echo", "sleep", "true"} {
		entries = append(entries, tarEntry{name: "bin/" + l, link: "busybox"})
	}
	return gzipTar(t, entries)
}

// errNotStatic explains a busybox that cannot go into an image.
var errNotStatic = errors.New("busybox is dynamically linked; an image needs the static one (apt-get install busybox-static)")

// checkStatic rejects ELF binaries that need a dynamic loader.
func checkStatic(bin []byte) error {
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		return fmt.Errorf("not an ELF binary: %w", err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return errNotStatic
		}
	}
	return nil
}

type tarEntry struct {
	name string
	data []byte
	mode int64
	dir  bool
	link string // symlink target
}

// gzipTar builds a deterministic tar.gz and returns it with the digest of
// the uncompressed tar.
func gzipTar(t testing.TB, entries []tarEntry) ([]byte, cas.Digest) {
	t.Helper()
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	epoch := time.Unix(1767225600, 0) // 2026-01-01
	for _, e := range entries {
		h := &tar.Header{Name: e.name, ModTime: epoch, Mode: e.mode, Format: tar.FormatPAX}
		switch {
		case e.dir:
			h.Typeflag, h.Mode = tar.TypeDir, 0o755
		case e.link != "":
			h.Typeflag, h.Linkname, h.Mode = tar.TypeSymlink, e.link, 0o777
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.data))
			if h.Mode == 0 {
				h.Mode = 0o644
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("tar %s: %v", e.name, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			t.Fatalf("tar %s: %v", e.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatalf("tar: %v", err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write(raw.Bytes()); err != nil {
		t.Fatalf("gzip: %v", err)
	}
	if err := zw.Close(); err != nil {
		t.Fatalf("gzip: %v", err)
	}
	return gz.Bytes(), cas.FromBytes(raw.Bytes())
}

// RandomLayer returns size random bytes: an incompressible "layer" for
// benchmarks and resumption tests. It is fast (ChaCha8 with a random
// seed), not secret.
func RandomLayer(size int) []byte {
	var seed [32]byte
	for i := range seed {
		seed[i] = byte(rand.Uint32())
	}
	b := make([]byte, size)
	_, _ = rand.NewChaCha8(seed).Read(b)
	return b
}

// pusher pushes to a registry through its API, answering basic and bearer
// challenges with the URL's user info.
type pusher struct {
	base  *url.URL
	user  *url.Userinfo
	hc    *http.Client
	authz map[string]string // Authorization by scope
}

func newPusher(t testing.TB, registryURL string) *pusher {
	t.Helper()
	u, err := url.Parse(registryURL)
	if err != nil {
		t.Fatalf("seed: registry URL: %v", err)
	}
	p := &pusher{user: u.User, hc: &http.Client{Timeout: 10 * time.Minute}, authz: map[string]string{}}
	u.User = nil
	u.Path = strings.TrimSuffix(u.Path, "/")
	p.base = u
	return p
}

// pushBlob uploads data unless the registry has it already.
func (p *pusher) pushBlob(t testing.TB, repo string, data []byte) {
	t.Helper()
	d := cas.FromBytes(data)
	scope := "repository:" + repo + ":pull,push"
	resp := p.do(t, scope, http.MethodHead, p.base.String()+"/v2/"+repo+"/blobs/"+string(d), "", nil)
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return
	}
	resp = p.do(t, scope, http.MethodPost, p.base.String()+"/v2/"+repo+"/blobs/uploads/", "", nil)
	loc := p.expect(t, resp, http.StatusAccepted, "start upload of "+string(d))
	const chunk = 8 << 20
	if len(data) > chunk {
		for off := 0; off < len(data); off += chunk {
			end := min(off+chunk, len(data))
			req := p.request(t, http.MethodPatch, loc, data[off:end])
			req.Header.Set("Content-Type", "application/octet-stream")
			req.Header.Set("Content-Range", fmt.Sprintf("%d-%d", off, end-1))
			resp = p.send(t, scope, req, data[off:end])
			loc = p.expect(t, resp, http.StatusAccepted, fmt.Sprintf("upload chunk %d-%d of %s", off, end-1, d))
		}
		data = nil
	}
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatalf("seed: upload location %q: %v", loc, err)
	}
	q := u.Query()
	q.Set("digest", string(d))
	u.RawQuery = q.Encode()
	req := p.request(t, http.MethodPut, u.String(), data)
	req.Header.Set("Content-Type", "application/octet-stream")
	resp = p.send(t, scope, req, data)
	p.expect(t, resp, http.StatusCreated, "finish upload of "+string(d))
}

// pushManifest puts a manifest under tag, or by its digest when tag is "".
func (p *pusher) pushManifest(t testing.TB, repo, tag, mediaType string, man []byte) {
	t.Helper()
	d := cas.FromBytes(man)
	ref := tag
	if ref == "" {
		ref = string(d)
	}
	req := p.request(t, http.MethodPut, p.base.String()+"/v2/"+repo+"/manifests/"+ref, man)
	req.Header.Set("Content-Type", mediaType)
	resp := p.send(t, "repository:"+repo+":pull,push", req, man)
	p.expect(t, resp, http.StatusCreated, "put manifest "+repo+":"+ref)
	if got := resp.Header.Get("Docker-Content-Digest"); got != "" && got != string(d) {
		t.Fatalf("seed: registry stored manifest %s:%s as %s, want %s", repo, ref, got, d)
	}
}

// expect checks the status, closes the body and returns the absolute
// Location.
func (p *pusher) expect(t testing.TB, resp *http.Response, want int, what string) string {
	t.Helper()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	if resp.StatusCode != want {
		t.Fatalf("seed: %s: got %d, want %d: %s", what, resp.StatusCode, want, body)
	}
	loc := resp.Header.Get("Location")
	if loc == "" {
		return ""
	}
	u, err := resp.Request.URL.Parse(loc)
	if err != nil {
		t.Fatalf("seed: %s: Location %q: %v", what, loc, err)
	}
	return u.String()
}

func (p *pusher) request(t testing.TB, method, u string, body []byte) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, u, bytes.NewReader(body))
	if err != nil {
		t.Fatalf("seed: %v", err)
	}
	if body == nil {
		req.Body, req.ContentLength = http.NoBody, 0
	}
	return req
}

func (p *pusher) do(t testing.TB, scope, method, u, contentType string, body []byte) *http.Response {
	t.Helper()
	req := p.request(t, method, u, body)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return p.send(t, scope, req, body)
}

// send sends req; on a 401 it gets credentials for the challenge and sends
// it once more.
func (p *pusher) send(t testing.TB, scope string, req *http.Request, body []byte) *http.Response {
	t.Helper()
	if a := p.authz[scope]; a != "" {
		req.Header.Set("Authorization", a)
	}
	resp, err := p.hc.Do(req)
	if err != nil {
		t.Fatalf("seed: %s %s: %v", req.Method, req.URL.Redacted(), err)
	}
	if resp.StatusCode != http.StatusUnauthorized {
		return resp
	}
	challenge := resp.Header.Get("WWW-Authenticate")
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	a := p.authorize(t, challenge, scope)
	retry := req.Clone(req.Context())
	retry.Body, retry.ContentLength = http.NoBody, 0
	if body != nil {
		retry.Body, retry.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
	}
	retry.Header.Set("Authorization", a)
	p.authz[scope] = a
	resp, err = p.hc.Do(retry)
	if err != nil {
		t.Fatalf("seed: %s %s: %v", req.Method, req.URL.Redacted(), err)
	}
	return resp
}

var challengeParam = regexp.MustCompile(`(\w+)="([^"]*)"`)

// authorize answers a challenge: basic credentials, or a bearer token from
// the realm fetched with them.
func (p *pusher) authorize(t testing.TB, challenge, scope string) string {
	t.Helper()
	basic := ""
	if p.user != nil {
		pass, _ := p.user.Password()
		basic = "Basic " + base64.StdEncoding.EncodeToString([]byte(p.user.Username()+":"+pass))
	}
	scheme, rest, _ := strings.Cut(strings.TrimSpace(challenge), " ")
	if !strings.EqualFold(scheme, "bearer") {
		if basic == "" {
			t.Fatalf("seed: the registry wants credentials (%s): pass them in the URL (registry.Server.AuthURL)", challenge)
		}
		return basic
	}
	params := map[string]string{}
	for _, m := range challengeParam.FindAllStringSubmatch(rest, -1) {
		params[strings.ToLower(m[1])] = m[2]
	}
	realm, err := url.Parse(params["realm"])
	if err != nil || realm.Host == "" {
		t.Fatalf("seed: bad realm in %q", challenge)
	}
	q := realm.Query()
	q.Set("service", params["service"])
	q.Set("scope", scope)
	realm.RawQuery = q.Encode()
	req, _ := http.NewRequest(http.MethodGet, realm.String(), nil)
	if basic != "" {
		req.Header.Set("Authorization", basic)
	}
	resp, err := p.hc.Do(req)
	if err != nil {
		t.Fatalf("seed: token: %v", err)
	}
	defer resp.Body.Close()
	var tok struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		t.Fatalf("seed: token from %s: %d %s", realm.Redacted(), resp.StatusCode, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil {
		t.Fatalf("seed: token: %v", err)
	}
	if tok.Token == "" {
		tok.Token = tok.AccessToken
	}
	return "Bearer " + tok.Token
}

// String describes a blob for messages.
func (b Blob) String() string {
	return string(b.Digest) + " (" + strconv.FormatInt(b.Size, 10) + " bytes)"
}
