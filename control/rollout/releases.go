package rollout

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/berthhq/berth/engine/release"
)

// refreshEvery is how often the server's release metadata is fetched
// again, at most: an operator who just signed a version in waits this
// long before a rollout may name it.
const refreshEvery = 30 * time.Second

// tufReleases is Releases over the signed TUF metadata the agents trust.
type tufReleases struct {
	c   *release.Client
	log *slog.Logger

	mu        sync.Mutex
	refreshed time.Time
}

// OpenReleases reads the release metadata at url (an Azure Blob
// container, an https base or a folder) trusting rootFile, keeping the
// verified metadata under cacheDir. It fetches the metadata once now: a
// wrong root or an unreachable repository fails serve at its start, not
// at the first rollout.
func OpenReleases(ctx context.Context, url, rootFile, cacheDir string, log *slog.Logger) (Releases, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c, err := release.Open(ctx, release.Options{URL: url, RootFile: rootFile, StateDir: cacheDir, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("open release metadata for rollouts: %w", err)
	}
	if err := c.Refresh(ctx); err != nil {
		return nil, fmt.Errorf("open release metadata for rollouts: %w", err)
	}
	return &tufReleases{c: c, log: log.With("component", "rollout"), refreshed: time.Now()}, nil
}

// Signed refreshes the metadata when it is older than refreshEvery (a
// failed refresh keeps the last verified metadata, with a warning) and
// looks the package up.
func (t *tufReleases) Signed(ctx context.Context, kind, flavor, version, os, arch string) error {
	t.mu.Lock()
	if time.Since(t.refreshed) >= refreshEvery {
		if err := t.c.Refresh(ctx); err != nil {
			t.log.Warn("release metadata not refreshed; checking against the last verified", "err", err)
		}
		t.refreshed = time.Now()
	}
	t.mu.Unlock()
	if _, err := t.c.Find(release.Query{Kind: kind, Flavor: flavor, Version: version, OS: os, Arch: arch}); err != nil {
		return err
	}
	return nil
}
