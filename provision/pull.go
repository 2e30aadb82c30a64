package provision

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strings"

	"github.com/berthhq/berth/agent/config"
	"github.com/berthhq/berth/engine/docker"
	"github.com/berthhq/berth/engine/winhost"
	"github.com/berthhq/berth/imagecache"
	"github.com/berthhq/berth/imagecache/cas"
	"github.com/berthhq/berth/internal/httpclient"
)

// Puller pulls images into dockerd through the image cache (the path-prefix
// form, then a re-tag to the image's own name).
type Puller struct {
	Docker *docker.Client
	// CacheAddr is the cache's host:port; empty pulls straight from the
	// upstream registries.
	CacheAddr string
	// HostBuild, on Windows, picks the entry of a manifest list whose
	// os.version fits the host (nil elsewhere).
	HostBuild *winhost.OSVersion
	HTTP      *http.Client
	Logger    *slog.Logger
	// OnEvent is told of each image's per-layer progress.
	OnEvent func(image string, ev docker.PullEvent)
}

// NewPuller wires a Puller from the agent's config: the engine's API, the
// cache's address when the cache is enabled, and on Windows the host build.
func NewPuller(cfg config.Config, log *slog.Logger, onEvent func(string, docker.PullEvent)) (*Puller, error) {
	if cfg.Engine.Flavor != "docker" {
		return nil, fmt.Errorf("pull: engine.flavor %q: this puller drives dockerd; containerd pulls with Host.ContainerdPuller", cfg.Engine.Flavor)
	}
	c, err := docker.NewClient(cfg.EngineEndpoint())
	if err != nil {
		return nil, err
	}
	p := &Puller{Docker: c, Logger: log, OnEvent: onEvent, HTTP: httpclient.NewStandard(httpclient.Options{Logger: log, RetryMax: 1})}
	if cfg.Cache.Enabled {
		p.CacheAddr = cfg.Cache.Listen
	}
	if runtime.GOOS == "windows" {
		b, err := winhost.Build()
		if err != nil {
			return nil, fmt.Errorf("pull: read the host build: %w", err)
		}
		p.HostBuild = &b
	}
	return p, nil
}

// Pull pulls every image, in order, and stops at the first failure.
func (p *Puller) Pull(ctx context.Context, images ...string) error {
	for _, s := range images {
		ref, err := imagecache.ParseImageRef(s)
		if err != nil {
			return err
		}
		if err := p.pullOne(ctx, ref); err != nil {
			return err
		}
	}
	return nil
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

func (p *Puller) progress(ref imagecache.ImageRef) func(docker.PullEvent) {
	return func(ev docker.PullEvent) {
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
	return PickFromIndex(body, *p.HostBuild, runtime.GOARCH)
}

// PickFromIndex returns the digest of the manifest list entry that runs on
// a Windows host of build host, or "" when body is a single manifest.
func PickFromIndex(body []byte, host winhost.OSVersion, arch string) (cas.Digest, error) {
	var idx struct {
		Manifests []struct {
			Digest   string `json:"digest"`
			Platform struct {
				OS           string `json:"os"`
				Architecture string `json:"architecture"`
				OSVersion    string `json:"os.version"`
			} `json:"platform"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal(body, &idx); err != nil {
		return "", fmt.Errorf("manifest: %w", err)
	}
	if len(idx.Manifests) == 0 {
		return "", nil
	}
	platforms := make([]winhost.Platform, len(idx.Manifests))
	for i, m := range idx.Manifests {
		platforms[i] = winhost.Platform{OS: m.Platform.OS, Architecture: m.Platform.Architecture, OSVersion: m.Platform.OSVersion}
	}
	choice, err := winhost.PickImage(platforms, host, arch)
	if err != nil {
		return "", err
	}
	return cas.ParseDigest(idx.Manifests[choice.Index].Digest)
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
