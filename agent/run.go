package agent

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/berthhq/berth/engine"
	"github.com/berthhq/berth/internal/buildinfo"
	"github.com/berthhq/berth/telemetry"
)

// superviseEvery is how often the daemon's loop checks and converges the
// engine.
const superviseEvery = 5 * time.Second

// Run is the daemon: it finishes any interrupted engine change, then keeps
// the engine at the desired version, running, and configured as Berth
// writes it, until ctx ends. Errors are logged and retried, never fatal.
func (a *Agent) Run(ctx context.Context) error {
	a.log.Info("agent running", "state_dir", a.cfg.StateDir(), "engine_managed", a.cfg.Engine.Managed)
	// Checks run every 10 s and before every heartbeat (which refreshes
	// /healthz too), so a host that fails shows so at control and on
	// /healthz within one report interval.
	mon := telemetry.NewMonitor(checks(a.cfg, a.db, a.engine, a.desired, a.cache, a.reporter), 10*time.Second)
	a.monitor.Store(mon)
	// The Monitor, the reporter and the health watcher are this loop's
	// goroutines: they stop, and are waited for, when Run returns.
	bgCtx, stopBg := context.WithCancel(ctx)
	var bg sync.WaitGroup
	defer func() { stopBg(); bg.Wait() }()
	bg.Go(func() { mon.Run(bgCtx) })
	bg.Go(func() { a.reporter.Run(bgCtx) })
	bg.Go(func() { a.watchHealth(bgCtx, mon) })
	if err := a.reporter.Event(ctx, "agent.started", "berth-agent "+buildinfo.Version+" started",
		map[string]string{"version": buildinfo.Version, "commit": buildinfo.Commit, "osBuild": a.osBuild}); err != nil {
		a.log.Error("queue the agent.started event", "err", err)
	}
	ts := telemetry.NewServer(a.metrics, mon, a.log)
	if err := ts.Start(a.cfg.Health.Listen); err != nil {
		a.log.Error("start the health endpoint", "err", err)
	} else {
		defer ts.Close()
	}
	if a.cache != nil {
		// The engine falls back to the upstream while the cache is down,
		// so a cache that cannot start is logged, not fatal.
		if err := a.cache.Start(ctx); err != nil {
			a.log.Error("start the image cache", "err", err)
		} else {
			defer a.cache.Close()
		}
	}
	if err := a.engine.Recover(ctx); err != nil {
		a.log.Error("recover interrupted engine change", "err", err)
	}
	var prewarm prewarmer
	tick := time.NewTicker(superviseEvery)
	defer tick.Stop()
	for {
		// First, so that the event is queued before a long engine change.
		a.logStateErr(ctx, "queue the state.rebuilt event", a.reportRebuild(ctx))
		desired := ""
		if a.cfg.Engine.Managed {
			// Resolution backs off by itself while the release source
			// fails; the engine keeps the version it has meanwhile.
			desired = a.desired.Version(ctx, time.Now())
		}
		if err := a.engine.Converge(ctx, desired); err != nil && ctx.Err() == nil {
			a.log.Error("converge engine", "err", err)
		}
		if err := prewarm.round(ctx, a, time.Now()); err != nil && ctx.Err() == nil {
			a.log.Error("prewarm images; retrying in a minute", "err", err)
		}
		select {
		case <-ctx.Done():
			a.log.Info("agent stopping; the engine keeps running")
			return nil
		case <-tick.C:
		}
	}
}

// prewarmer pulls cache.prewarm into the engine through the cache once the
// engine is healthy, and again whenever the list (or where the images land)
// changes. What was pulled is remembered in agent.db, so a restart does not
// pull again.
type prewarmer struct {
	done  bool      // pulled, or found pulled, in this run
	after time.Time // after a failure, the next try
}

const (
	prewarmBucket = "prewarm"
	prewarmKey    = "images"
)

func (p *prewarmer) round(ctx context.Context, a *Agent, now time.Time) error {
	images := a.cfg.Cache.Prewarm
	if p.done || a.cache == nil || len(images) == 0 || now.Before(p.after) {
		return nil
	}
	st, err := a.engine.Status(ctx)
	if err != nil || !st.Healthy {
		return nil // the engine is not up yet: next round
	}
	// Nobody watches the daemon's terminal: progress is logged.
	pl, err := a.engine.Puller(ctx, engine.PullOptions{CacheAddr: a.cache.Addr()})
	if err == nil {
		err = p.pull(ctx, a, pl, images)
	}
	if err != nil {
		p.after = now.Add(time.Minute)
	}
	return err
}

func (p *prewarmer) pull(ctx context.Context, a *Agent, pl engine.Puller, images []string) error {
	key := prewarmMemo(images, pl.Target())
	var done string
	if _, err := a.db.Get(ctx, prewarmBucket, prewarmKey, &done); err != nil {
		return err
	}
	if done != key {
		a.log.Info("prewarming images", "images", images)
		if _, err := pl.Pull(ctx, images...); err != nil {
			return err
		}
		a.log.Info("prewarmed images", "images", images)
		if err := a.db.Put(ctx, prewarmBucket, prewarmKey, key); err != nil {
			return err
		}
	}
	p.done = true
	return nil
}

// prewarmMemo is what agent.db remembers of a finished prewarm: the images
// and, where it decides anything, where they landed (containerd keeps images
// per namespace, so settings that move them pull them again).
func prewarmMemo(images []string, target string) string {
	key := strings.Join(images, "\n")
	if target != "" {
		key += "\n" + target
	}
	return key
}
