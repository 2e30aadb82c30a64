package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strings"

	"github.com/berthhq/berth/engine"
	"github.com/berthhq/berth/engine/winhost"
	"github.com/berthhq/berth/imagecache"
	"github.com/berthhq/berth/imagecache/cas"
	"github.com/berthhq/berth/internal/httpclient"
	"github.com/berthhq/berth/internal/progress"
)

// Puller pulls images into dockerd through the image cache (the path-prefix
// form, then a re-tag to the image's own name).
type Puller struct {
	Docker *Client
	// CacheAddr is the cache's host:port; empty pulls straight from the
	// upstream registries.
	CacheAddr string
	// HostBuild, on Windows, picks the entry of a manifest list whose
	// os.version fits the host (nil elsewhere).
	HostBuild *winhost.OSVersion
	HTTP      *http.Client
	Logger    *slog.Logger
	// OnEvent is told of each image's per-layer progress.
	OnEvent func(image string, ev PullEvent)
	// done draws the progress display's last frame.
	done func()
}

// Pull pulls every image, in order, and stops at the first failure.
func (p *Puller) Pull(ctx context.Context, images ...string) ([]string, error) {
	for _, s := range images {
		ref, err := imagecache.ParseImageRef(s)
		if err != nil {
			return nil, err
		}
		if err := p.pullOne(ctx, ref); err != nil {
			return nil, err
		}
	}
	if p.done != nil {
		p.done()
	}
	return images, nil
}

func (p *Puller) pullOne(ctx context.Context, ref imagecache.ImageRef) error {
	log := p.logger().With("image", ref.Familiar())
	if p.CacheAddr == "" {
		return p.direct(ctx, ref)
	}
	if p.HostBuild != nil && ref.Digest == "" {
		d, err := p.pickPlatform(ctx, ref)
		switch {
		case err == nil && d != "":
			log.Info("picked the manifest that fits this host's build", "build", p.HostBuild.String(), "digest", d)
			ref.Digest = d
		case errors.Is(err, winhost.ErrNoMatchingImage):
			return fmt.Errorf("pull %s: %w", ref.Familiar(), err)
		case err != nil && !cacheDown(err):
			return fmt.Errorf("pull %s: read its manifest list: %w", ref.Familiar(), err)
		}
	}
	via := ref.ThroughCache(p.CacheAddr)
	err := p.Docker.Pull(ctx, via, p.progress(ref))
	if err != nil && cacheDown(err) {
		log.Warn("image cache unreachable; pulling from the upstream registry", "cache", p.CacheAddr, "err", err)
		return p.direct(ctx, ref)
	}
	if err != nil {
		return fmt.Errorf("pull %s through the cache: %w", ref.Familiar(), err)
	}
	// Give the image its usual name and drop the cache's.
	if ref.Tag != "" {
		if err := p.Docker.Tag(ctx, via, ref.FamiliarName(), ref.Tag); err != nil {
			return fmt.Errorf("tag %s: %w", ref.Familiar(), err)
		}
		if err := p.Docker.Untag(ctx, via); err != nil {
			log.Warn("could not remove the cache's name of the image", "name", via, "err", err)
		}
	}
	log.Info("pulled through the cache")
	return nil
}

func (p *Puller) direct(ctx context.Context, ref imagecache.ImageRef) error {
	name := ref.Familiar()
	if err := p.Docker.Pull(ctx, name, p.progress(ref)); err != nil {
		return fmt.Errorf("pull %s: %w", name, err)
	}
	return nil
}

func (p *Puller) progress(ref imagecache.ImageRef) func(PullEvent) {
	return func(ev PullEvent) {
		if p.OnEvent != nil {
			p.OnEvent(ref.Familiar(), ev)
		}
	}
}

// pickPlatform reads the image's manifest through the cache and, when it
// is a manifest list, returns the digest of the entry for this host.
func (p *Puller) pickPlatform(ctx context.Context, ref imagecache.ImageRef) (cas.Digest, error) {
	u := "http://" + p.CacheAddr + "/v2/" + ref.Registry + "/" + ref.Repo + "/manifests/" + ref.Reference()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json")
	hc := p.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", u, resp.Status)
	}
	d, err := winhost.PickFromIndex(body, *p.HostBuild, runtime.GOARCH)
	if err != nil || d == "" {
		return "", err
	}
	return cas.ParseDigest(d)
}

// cacheDown tells a cache that does not answer from one that answered no.
func cacheDown(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) || strings.Contains(err.Error(), "connection refused")
}

func (p *Puller) logger() *slog.Logger {
	if p.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return p.Logger
}

// Target is "": dockerd has one image store.
func (p *Puller) Target() string { return "" }

var _ engine.Puller = (*Puller)(nil)

// Puller pulls into dockerd at o.Endpoint, through the cache at o.CacheAddr,
// with a progress bar per layer on o.Progress (or progress lines in the
// log). On Windows it reads the host's build, to pick the image of a
// manifest list that runs here.
func (f *Flavor) Puller(o engine.PullOptions) (engine.Puller, error) {
	if o.Namespace != "" {
		return nil, fmt.Errorf("--namespace %q: dockerd has no namespaces (it is for engine.flavor containerd): %w", o.Namespace, engine.ErrNotSupported)
	}
	c, err := NewClient(o.Endpoint)
	if err != nil {
		return nil, err
	}
	p := &Puller{Docker: c, CacheAddr: o.CacheAddr, Logger: o.Logger, HTTP: httpclient.NewStandard(httpclient.Options{Logger: o.Logger, RetryMax: 1})}
	w, term := o.Progress, o.Progress != nil
	if w == nil {
		w = io.Discard
	}
	bars := progress.NewMulti(w, term, o.Logger)
	p.OnEvent = func(image string, ev PullEvent) {
		if ev.ID != "" {
			bars.Set(ev.ID, ev.Status, ev.Current, ev.Total)
		}
	}
	p.done = bars.Done
	if f.goos() == "windows" {
		b, err := winhost.Build()
		if err != nil {
			return nil, fmt.Errorf("pull: read the host build: %w", err)
		}
		p.HostBuild = &b
	}
	return p, nil
}
