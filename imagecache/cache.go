// Package imagecache is the pull-through registry mirror that engines pull
// through: an OCI distribution-spec pull API on loopback, backed by tiers —
// the local disk, then Azure Blob containers nearest first — and the
// upstream registry last.
//
// A blob that is not in the nearest tier is fetched once per registry from
// the nearest tier below that has it (or the upstream), however many
// clients ask for it at the same time: the first request starts a flight
// that spools the content to disk while it hashes it, and every client
// streams from the spool as it grows. Content is committed to the tiers
// above only after its digest checks out, and the last bytes of a response
// are held back until then, so a client never receives the whole of a
// corrupt blob. A source that sends nothing for a while is given up, a
// flight whose clients all left is cancelled, and the spool counts against
// the disk tier's size budget.
package imagecache

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/berthhq/berth/internal/clip"

	"github.com/berthhq/berth/imagecache/cas"
)

// Upstream is a registry the cache fetches from (imagecache/upstream).
type Upstream interface {
	// GetManifest fetches a manifest by tag or digest.
	GetManifest(ctx context.Context, repo, reference string, accept []string) (body []byte, mediaType string, d cas.Digest, err error)
	// OpenBlob reads a blob from offset; the reader resumes a broken
	// transfer by itself.
	OpenBlob(ctx context.Context, repo string, d cas.Digest, offset int64) (io.ReadCloser, int64, error)
	// HeadBlob returns a blob's size, asking with HEAD.
	HeadBlob(ctx context.Context, repo string, d cas.Digest) (int64, error)
}

// Defaults of Options.
const (
	// DefaultIdleTimeout is how long a source may send nothing before it is
	// given up: long enough for a registry on a slow link, short enough
	// that an engine (containerd allows a mirror 30 s for its headers)
	// still falls back in time.
	DefaultIdleTimeout = 20 * time.Second
	// DefaultAbandonGrace is how long a fetch goes on once its last client
	// left: a client that retries at once finds it still under way.
	DefaultAbandonGrace = 10 * time.Second
)

// Options wire a Cache.
type Options struct {
	// Tiers are tried nearest first: the disk, then Azure Blob tiers.
	Tiers []cas.Tier
	// Upstream returns the client of a registry, by the name images use.
	Upstream func(registry string) (Upstream, error)
	// SpoolDir holds blobs while they are fetched; on the disk tier's
	// file system, so that committing is cheap.
	SpoolDir string
	// Allow, when not empty, lists the only registries served.
	Allow []string
	// Registries are the registries the config names (cache.upstreams):
	// they, Allow's and docker.io get their own metric series; any other
	// registry is counted in one series, "other".
	Registries []string
	// IdleTimeout gives up a source that sends no byte for this long
	// (0: DefaultIdleTimeout). Its flight goes on from the next source.
	IdleTimeout time.Duration
	// AbandonGrace cancels a flight this long after its last client left
	// (0: DefaultAbandonGrace), unless it is a prewarm (Warm).
	AbandonGrace time.Duration
	Logger       *slog.Logger
	// Metrics records figures; nil records nothing.
	Metrics *Metrics
}

// Cache serves the registry API. Start it before serving and Close it after.
type Cache struct {
	o   Options
	log *slog.Logger
	m   *Metrics

	ctx    context.Context // flights run under it, not under a client's request
	cancel context.CancelFunc
	wg     sync.WaitGroup

	idle, grace time.Duration
	allow       map[string]bool // normalized Options.Allow
	known       map[string]bool // registries with their own metric series
	budget      reserver        // the nearest tier, when it keeps the spool within its size

	mu      sync.Mutex
	flights map[flightKey]*flight
	seq     int // names spool files
}

// maxManifest bounds a manifest: real ones are a few KiB.
const maxManifest = 4 << 20

// New returns a Cache; it does no I/O.
func New(o Options) (*Cache, error) {
	if o.Upstream == nil || o.SpoolDir == "" {
		return nil, errors.New("image cache: an upstream resolver and a spool folder are required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	c := &Cache{o: o, log: o.Logger.With("component", "imagecache"), m: o.Metrics, flights: map[flightKey]*flight{},
		idle: cmp.Or(o.IdleTimeout, DefaultIdleTimeout), grace: cmp.Or(o.AbandonGrace, DefaultAbandonGrace),
		allow: normalizeAll(o.Allow), known: normalizeAll(append(append([]string{DockerHub}, o.Registries...), o.Allow...))}
	if len(o.Tiers) > 0 {
		c.budget, _ = o.Tiers[0].(reserver)
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c, nil
}

// allowed reports whether cache.allow lets a registry (a normalized name)
// be served. cache.allow is the fence of which registries this host may
// pull from: without it, any name a local client sends is fetched.
func (c *Cache) allowed(registry string) bool {
	return len(c.allow) == 0 || c.allow[registry]
}

func errNotAllowed(registry string) error {
	return &apiError{Status: http.StatusForbidden, Code: "DENIED", Message: fmt.Sprintf("registry %q is not in cache.allow", clip.String(registry, 64))}
}

// registryLabel is a registry's metric label: its name when the config
// names it, else "other", so that names sent by clients cannot grow the
// metrics without bound.
func (c *Cache) registryLabel(registry string) string {
	return registryLabel(c.known, registry)
}

func registryLabel(known map[string]bool, registry string) string {
	if known[registry] {
		return registry
	}
	return "other"
}

// Start prepares the spool folder, removing what a crash left in it.
func (c *Cache) Start(ctx context.Context) error {
	if err := os.RemoveAll(c.o.SpoolDir); err != nil {
		return fmt.Errorf("image cache spool %s: %w", c.o.SpoolDir, err)
	}
	if err := os.MkdirAll(c.o.SpoolDir, 0o700); err != nil {
		return fmt.Errorf("image cache spool %s: %w", c.o.SpoolDir, err)
	}
	return nil
}

// Close stops every flight and waits for them.
func (c *Cache) Close() error {
	c.cancel()
	c.wg.Wait()
	return nil
}

// ServeHTTP serves GET and HEAD of /v2/, manifests and blobs.
func (c *Cache) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD") // RFC 9110 §15.5.6: a 405 carries Allow
		writeError(w, &apiError{Status: http.StatusMethodNotAllowed, Code: "UNSUPPORTED", Message: "this is a pull-through cache: only GET and HEAD are served"})
		return
	}
	p := r.URL.Path
	if p == "/v2" || p == "/v2/" {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", "2")
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			io.WriteString(w, "{}")
		}
		return
	}
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok || strings.Contains(rest, "//") {
		writeError(w, &apiError{Status: http.StatusNotFound, Code: "UNSUPPORTED", Message: "not a registry API path"})
		return
	}
	req, err := parseRequest(rest, r.URL.Query())
	if err != nil {
		writeError(w, err)
		return
	}
	if !c.allowed(req.Registry) {
		writeError(w, errNotAllowed(req.Registry))
		return
	}
	if req.Kind == "manifests" {
		err = c.serveManifest(w, r, req)
	} else {
		err = c.serveBlob(w, r, req)
	}
	if err != nil {
		writeError(w, err)
	}
}

// writeError answers with the distribution spec's error body.
func writeError(w http.ResponseWriter, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		switch {
		case errors.Is(err, cas.ErrNotFound):
			ae = &apiError{Status: http.StatusNotFound, Code: "BLOB_UNKNOWN", Message: err.Error()}
		case errors.Is(err, cas.ErrDigestMismatch):
			ae = &apiError{Status: http.StatusBadGateway, Code: "DIGEST_INVALID", Message: err.Error()}
		default:
			ae = &apiError{Status: http.StatusBadGateway, Code: "UNAVAILABLE", Message: err.Error()}
		}
	}
	body, _ := json.Marshal(map[string]any{"errors": []map[string]any{{"code": ae.Code, "message": ae.Message, "detail": ae.Detail}}})
	h := w.Header()
	clearBlobHeaders(h)
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", fmt.Sprint(len(body)))
	if ae.Status == http.StatusRequestedRangeNotSatisfiable {
		h.Set("Content-Range", fmt.Sprintf("bytes */%d", ae.size))
	}
	w.WriteHeader(ae.Status)
	w.Write(body)
}

// ---- manifests ----

// manifestRef is what a tag resolved to, kept in the tiers so that a pull
// by tag works while the upstream is down.
type manifestRef struct {
	Digest    cas.Digest `json:"digest"`
	MediaType string     `json:"mediaType"`
	Size      int64      `json:"size"`
}

func (c *Cache) serveManifest(w http.ResponseWriter, r *http.Request, req request) error {
	ctx := r.Context()
	accept := acceptList(r.Header.Values("Accept"))
	var (
		body []byte
		mt   string
		d    cas.Digest
		err  error
	)
	if req.Digest != "" {
		d = req.Digest
		body, mt, err = c.manifestFromTiers(ctx, d)
		if err != nil {
			body, mt, d, err = c.manifestFromUpstream(ctx, req, accept)
		}
	} else {
		body, mt, d, err = c.manifestFromUpstream(ctx, req, accept)
		if err != nil && !isNotFound(err) {
			// The upstream is unreachable: the tag's last resolution.
			var ref manifestRef
			raw, rerr := c.getRef(ctx, refName(req.Registry, req.Repo, req.Reference))
			if rerr == nil {
				rerr = json.Unmarshal(raw, &ref)
			}
			var b []byte
			var bmt string
			if rerr == nil {
				b, bmt, rerr = c.manifestFromTiers(ctx, ref.Digest)
			}
			if rerr == nil {
				c.log.Warn("upstream unreachable; serving the tag's last resolution", "registry", req.Registry, "repo", req.Repo, "tag", req.Reference, "digest", ref.Digest, "err", err)
				body, mt, d, err = b, bmt, ref.Digest, nil
			} else {
				c.log.Warn("upstream unreachable and no tier knows the tag", "registry", req.Registry, "repo", req.Repo, "tag", req.Reference, "err", err, "tiers", rerr)
			}
		}
	}
	if err != nil {
		if isNotFound(err) {
			return &apiError{Status: http.StatusNotFound, Code: "MANIFEST_UNKNOWN", Message: fmt.Sprintf("%s/%s:%s: %v", req.Registry, req.Repo, req.Reference, err)}
		}
		return err
	}
	h := w.Header()
	h.Set("Content-Type", mt)
	h.Set("Docker-Content-Digest", string(d))
	h.Set("Content-Length", fmt.Sprint(len(body)))
	h.Set("Etag", `"`+string(d)+`"`)
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		w.Write(body)
	}
	return nil
}

// manifestFromUpstream fetches a manifest, then stores it by digest in every
// tier and, for a tag, records the tag's resolution.
func (c *Cache) manifestFromUpstream(ctx context.Context, req request, accept []string) ([]byte, string, cas.Digest, error) {
	up, err := c.o.Upstream(req.Registry)
	if err != nil {
		return nil, "", "", err
	}
	// A manifest is small: the idle deadline bounds the whole fetch, so a
	// registry that stalls soon yields to the tag's last resolution.
	gctx, cancel := context.WithTimeout(ctx, c.idle)
	body, mt, d, err := up.GetManifest(gctx, req.Repo, req.Reference, accept)
	cancel()
	if err != nil {
		return nil, "", "", err
	}
	if mt == "" {
		mt = detectMediaType(body)
	}
	c.m.upstreamFetches.WithLabelValues(c.registryLabel(req.Registry)).Inc()
	rec, _ := json.Marshal(manifestRef{Digest: d, MediaType: mt, Size: int64(len(body))})
	for _, t := range c.o.Tiers {
		if err := t.Put(ctx, d, int64(len(body)), strings.NewReader(string(body))); err != nil {
			c.log.Warn("store manifest in tier", "tier", t.Name(), "digest", d, "err", err)
		} else if err := t.PutRef(ctx, manifestRecord(d), rec); err != nil {
			c.log.Warn("record manifest in tier", "tier", t.Name(), "digest", d, "err", err)
		}
		if req.Digest == "" {
			raw, _ := json.Marshal(manifestRef{Digest: d, MediaType: mt, Size: int64(len(body))})
			if err := t.PutRef(ctx, refName(req.Registry, req.Repo, req.Reference), raw); err != nil {
				c.log.Warn("record tag in tier", "tier", t.Name(), "err", err)
			}
		}
	}
	return body, mt, d, nil
}

// manifestRecord names the ref that marks a digest as a manifest, with its
// media type: manifests and blobs share the tiers' store, and only what was
// fetched as a manifest is served as one.
func manifestRecord(d cas.Digest) string { return "manifests/sha256/" + d.Hex() }

// manifestFromTiers reads a manifest by digest, and its media type, from
// the nearest tier that holds both, verified, and copies them to the tiers
// above.
func (c *Cache) manifestFromTiers(ctx context.Context, d cas.Digest) ([]byte, string, error) {
	for i, t := range c.o.Tiers {
		var rec manifestRef
		raw, err := t.GetRef(ctx, manifestRecord(d))
		if err == nil {
			err = json.Unmarshal(raw, &rec)
		}
		if err != nil {
			c.m.misses.WithLabelValues(t.Name()).Inc()
			continue
		}
		rc, size, err := t.Open(ctx, d, 0)
		if err != nil {
			c.m.misses.WithLabelValues(t.Name()).Inc()
			continue
		}
		body, err := io.ReadAll(io.LimitReader(rc, maxManifest+1))
		rc.Close()
		if err != nil || int64(len(body)) != size || len(body) > maxManifest || cas.FromBytes(body) != d {
			c.m.digestFailures.WithLabelValues(t.Name()).Inc()
			c.log.Error("manifest in tier is corrupt; removing it", "tier", t.Name(), "digest", d, "err", err)
			_ = t.Delete(ctx, d)
			continue
		}
		c.m.hits.WithLabelValues(t.Name()).Inc()
		c.m.bytesServed.WithLabelValues(t.Name()).Add(float64(len(body)))
		for _, above := range c.o.Tiers[:i] {
			if above.Put(ctx, d, size, strings.NewReader(string(body))) == nil {
				_ = above.PutRef(ctx, manifestRecord(d), raw)
			}
		}
		if rec.MediaType == "" {
			rec.MediaType = detectMediaType(body)
		}
		return body, rec.MediaType, nil
	}
	return nil, "", cas.ErrNotFound
}

func (c *Cache) getRef(ctx context.Context, name string) ([]byte, error) {
	var errs []error
	for i, t := range c.o.Tiers {
		raw, err := t.GetRef(ctx, name)
		if err == nil {
			// Nearer tiers learn the resolution too, so that they can
			// answer for the tag when this one is gone.
			for _, above := range c.o.Tiers[:i] {
				if err := above.PutRef(ctx, name, raw); err != nil {
					c.log.Warn("copy tag resolution to tier", "tier", above.Name(), "err", err)
				}
			}
			return raw, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", t.Name(), err))
	}
	return nil, errors.Join(errs...)
}

// detectMediaType reads a manifest's media type from its body, for
// manifests served from a tier. OCI manifests may leave mediaType out;
// then an index has manifests and an image manifest a config.
func detectMediaType(body []byte) string {
	var m struct {
		MediaType string          `json:"mediaType"`
		Manifests json.RawMessage `json:"manifests"`
		Config    json.RawMessage `json:"config"`
		Schema    int             `json:"schemaVersion"`
	}
	if json.Unmarshal(body, &m) != nil {
		return "application/octet-stream"
	}
	switch {
	case m.MediaType != "":
		return m.MediaType
	case m.Manifests != nil:
		return "application/vnd.oci.image.index.v1+json"
	case m.Config != nil:
		return "application/vnd.oci.image.manifest.v1+json"
	case m.Schema == 1:
		return "application/vnd.docker.distribution.manifest.v1+prettyjws"
	}
	return "application/octet-stream"
}

// defaultAccept is what the cache asks for when a client names nothing.
var defaultAccept = []string{
	"application/vnd.oci.image.index.v1+json",
	"application/vnd.oci.image.manifest.v1+json",
	"application/vnd.docker.distribution.manifest.list.v2+json",
	"application/vnd.docker.distribution.manifest.v2+json",
}

func acceptList(values []string) []string {
	var out []string
	for _, v := range values {
		for _, part := range strings.Split(v, ",") {
			mt, _, _ := strings.Cut(strings.TrimSpace(part), ";")
			if mt = strings.TrimSpace(mt); mt != "" && mt != "*/*" && !slices.Contains(out, mt) {
				out = append(out, mt)
			}
		}
	}
	// Always accept the current Docker and OCI types as well: a registry
	// asked only for OCI types may otherwise rewrite a Docker image into
	// the old signed schema 1, whose digest no client can check.
	for _, mt := range defaultAccept {
		if !slices.Contains(out, mt) {
			out = append(out, mt)
		}
	}
	return out
}

func isNotFound(err error) bool { return errors.Is(err, cas.ErrNotFound) }
