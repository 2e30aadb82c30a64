// Package provision converges a host to its desired state: it builds the
// agent's components from agent.yaml (engine manager, image cache and the
// reporter to control) and runs the loop that keeps the host where it should
// be, both as the long-running daemon and as the one-shot `provision`.
package provision

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/berthhq/berth/agent/config"
	"github.com/berthhq/berth/engine"
	"github.com/berthhq/berth/engine/containerd"
	"github.com/berthhq/berth/engine/docker"
	"github.com/berthhq/berth/engine/release"
	"github.com/berthhq/berth/internal/buildinfo"
	"github.com/berthhq/berth/internal/hostid"
	"github.com/berthhq/berth/internal/httpclient"
	"github.com/berthhq/berth/internal/paths"
	"github.com/berthhq/berth/internal/statedb"
	"github.com/berthhq/berth/telemetry"
	"github.com/berthhq/berth/telemetry/outbox"
	"github.com/berthhq/berth/telemetry/report"
)

// Options wire a Host.
type Options struct {
	Logger *slog.Logger
	// Progress is told of long steps; nil for none.
	Progress engine.ProgressFunc
}

// Host is this machine as the agent manages it.
type Host struct {
	Config config.Config
	DB     *statedb.DB
	Engine *engine.Manager
	// Cache is nil when cache.enabled is false.
	Cache *CacheService
	// Metrics holds every component's Prometheus figures.
	Metrics *prometheus.Registry
	// AgentID names this host to the control endpoint (see internal/hostid).
	AgentID string
	// Reporter queues heartbeats and events in agent.db and, while Run
	// runs, sends them to control.url.
	Reporter *report.Reporter
	log      *slog.Logger

	osBuild string
	monitor atomic.Pointer[telemetry.Monitor] // set by Run, read by heartbeats
}

// NewHost builds the components that cfg asks for. The only network call
// is the agent id's first resolution, which asks IMDS for the VM id (within
// 2 s, once per agent.db: the id is remembered); release metadata is
// fetched when a version is needed, and reports are sent only by Run.
func NewHost(ctx context.Context, cfg config.Config, o Options) (*Host, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	stateDir := cfg.StateDir()
	db, err := statedb.Open(filepath.Join(stateDir, paths.DBFile))
	if err != nil {
		return nil, err
	}
	h := &Host{Config: cfg, DB: db, Metrics: prometheus.NewRegistry(), log: log.With("component", "provision"), osBuild: hostid.OSBuild()}
	if err := resolveID(ctx, cfg, h); err != nil {
		return nil, err
	}
	client, err := newClient(cfg.Control, log)
	if err != nil {
		return nil, err
	}
	// The reporter exists in every process that builds a Host, not only
	// the daemon: an `engine upgrade` run by hand queues its events in
	// agent.db, and the daemon's reporter sends them.
	h.Reporter, err = report.New(report.Options{
		Agent:          h.AgentID,
		Outbox:         outbox.New(db, outbox.Options{}),
		Client:         client,
		Interval:       cfg.Control.ReportInterval.D(),
		FirstHeartbeat: min(firstHeartbeat, cfg.Control.ReportInterval.D()),
		Heartbeat:      h.heartbeat,
		Metrics:        h.Metrics,
		Logger:         log,
	})
	if err != nil {
		return nil, err
	}
	var flavor engine.Flavor
	switch cfg.Engine.Flavor {
	case "docker":
		flavor = &docker.Flavor{LogDir: filepath.Join(stateDir, paths.LogsDir)}
	case "containerd":
		flavor = &containerd.Flavor{LogDir: filepath.Join(stateDir, paths.LogsDir)}
	default:
		return nil, fmt.Errorf("engine.flavor %q is not supported; use docker or containerd", cfg.Engine.Flavor)
	}
	var rel *release.Client
	if cfg.Engine.Managed && cfg.Engine.Releases.URL != "" {
		rel, err = release.Open(ctx, release.Options{
			URL:        cfg.Engine.Releases.URL,
			Credential: cfg.Engine.Releases.Credential,
			RootFile:   cfg.Engine.Releases.RootFile,
			StateDir:   stateDir,
			HTTPClient: httpclient.NewStandard(httpclient.Options{Logger: log}),
			Logger:     log,
		})
		if err != nil {
			return nil, fmt.Errorf("engine.releases: %w", err)
		}
	}
	mirror := ""
	if cfg.Cache.Enabled {
		mirror = cfg.Cache.Listen
	}
	// containerd gets a hosts.toml per registry of cache.upstreams, with
	// the registry's own endpoint as the fallback when the cache is down.
	upstreams := make(map[string]string, len(cfg.Cache.Upstreams))
	for name, u := range cfg.Cache.Upstreams {
		upstreams[name] = u.Endpoint
	}
	flavorDir := paths.Engines(stateDir, flavor.Name())
	mgr, err := engine.New(engine.Options{
		Flavor:   flavor,
		Runner:   engine.NewRunner(flavorDir, flavor.Daemon(flavorDir, flavorDir), log),
		Releases: rel,
		StateDir: stateDir,
		DB:       db,
		Managed:  cfg.Engine.Managed,
		Config: engine.ConfigInput{
			Endpoint:    cfg.EngineEndpoint(),
			DataRoot:    cfg.Engine.DataRoot,
			Mirror:      mirror,
			Upstreams:   upstreams,
			Settings:    cfg.Engine.Settings,
			LiveRestore: runtime.GOOS == "linux",
		},
		HealthTimeout: cfg.Engine.Upgrade.HealthTimeout.D(),
		Channel:       cfg.Engine.Channel,
		Logger:        log,
		Progress:      o.Progress,
		OnEvent:       h.engineEvent,
	})
	if err != nil {
		return nil, err
	}
	h.Engine = mgr
	if cfg.Cache.Enabled {
		if h.Cache, err = NewCacheService(cfg, db, h.Metrics, log); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// Intervals of the daemon's loop.
const (
	// superviseEvery is how often the engine is checked and restarted.
	superviseEvery = 5 * time.Second
	// resolveEvery is how often the desired version is looked up again in
	// the signed release metadata.
	resolveEvery = 5 * time.Minute
)

// Run is the daemon: it finishes any interrupted engine change, then keeps
// the engine at the desired version, running, and configured as Berth
// writes it, until ctx ends. Errors are logged and retried, never fatal.
func (h *Host) Run(ctx context.Context) error {
	h.log.Info("agent running", "state_dir", h.Config.StateDir(), "engine_managed", h.Config.Engine.Managed)
	// Checks run every 10 s and before every heartbeat (which refreshes
	// /healthz too), so a host that fails shows so at control and on
	// /healthz within one report interval.
	mon := telemetry.NewMonitor(h.Checks(), 10*time.Second)
	h.monitor.Store(mon)
	// The Monitor, the reporter and the health watcher are this loop's
	// goroutines: they stop, and are waited for, when Run returns.
	bgCtx, stopBg := context.WithCancel(ctx)
	var bg sync.WaitGroup
	defer func() { stopBg(); bg.Wait() }()
	bg.Go(func() { mon.Run(bgCtx) })
	bg.Go(func() { h.Reporter.Run(bgCtx) })
	bg.Go(func() { h.watchHealth(bgCtx, mon) })
	if err := h.Reporter.Event(ctx, "agent.started", "berth-agent "+buildinfo.Version+" started",
		map[string]string{"version": buildinfo.Version, "commit": buildinfo.Commit, "osBuild": h.osBuild}); err != nil {
		h.log.Error("queue the agent.started event", "err", err)
	}
	ts := telemetry.NewServer(h.Metrics, mon, h.log)
	if err := ts.Start(h.Config.Health.Listen); err != nil {
		h.log.Error("start the health endpoint", "err", err)
	} else {
		defer ts.Close()
	}
	if h.Cache != nil {
		// The engine falls back to the upstream while the cache is down,
		// so a cache that cannot start is logged, not fatal.
		if err := h.Cache.Start(ctx); err != nil {
			h.log.Error("start the image cache", "err", err)
		} else {
			defer h.Cache.Close()
		}
	}
	if err := h.Engine.Recover(ctx); err != nil {
		h.log.Error("recover interrupted engine change", "err", err)
	}
	var desired string
	var resolvedAt, prewarmAfter time.Time
	tick := time.NewTicker(superviseEvery)
	defer tick.Stop()
	for {
		if h.Config.Engine.Managed && (desired == "" || time.Since(resolvedAt) > resolveEvery) {
			d, err := h.Engine.Desired(ctx, h.Config.Engine.Version)
			if err != nil {
				h.log.Error("resolve the desired engine version", "err", err)
			} else {
				if d != desired {
					h.log.Info("desired engine version", "version", d)
				}
				desired, resolvedAt = d, time.Now()
			}
		}
		if err := h.Engine.Converge(ctx, desired); err != nil && ctx.Err() == nil {
			h.log.Error("converge engine", "err", err)
		}
		if time.Now().After(prewarmAfter) {
			if err := h.prewarm(ctx); err != nil && ctx.Err() == nil {
				h.log.Error("prewarm images; retrying in a minute", "err", err)
				prewarmAfter = time.Now().Add(time.Minute)
			}
		}
		select {
		case <-ctx.Done():
			h.log.Info("agent stopping; the engine keeps running")
			return nil
		case <-tick.C:
		}
	}
}

// prewarm pulls cache.prewarm into the engine through the cache once the
// engine is healthy, and again whenever the list changes. What was pulled
// is remembered in agent.db, so a restart does not pull again.
func (h *Host) prewarm(ctx context.Context) error {
	images := h.Config.Cache.Prewarm
	if h.Cache == nil || len(images) == 0 {
		return nil
	}
	key := strings.Join(images, "\n")
	if h.Config.Engine.Flavor == "containerd" {
		// containerd keeps images per namespace: settings that move them
		// to another one (CRI disabled) pull them again.
		key += "\nnamespace=" + containerd.ImageNamespace(h.Config.Engine.Settings)
	}
	var done string
	if _, err := h.DB.Get(ctx, "prewarm", "images", &done); err != nil {
		return err
	}
	if done == key {
		return nil
	}
	st, err := h.Engine.Status(ctx)
	if err != nil || !st.Healthy {
		return nil // the engine is not up yet: next round
	}
	var p ImagePuller
	if h.Config.Engine.Flavor == "containerd" {
		// Nobody watches the daemon's terminal: ctr's progress is logged.
		p, err = h.ctrPuller(st, "", nil)
	} else {
		var dp *Puller
		if dp, err = NewPuller(h.Config, h.log, nil); err == nil {
			dp.CacheAddr = h.Cache.Addr()
			p = dp
		}
	}
	if err != nil {
		return err
	}
	h.log.Info("prewarming images", "images", images)
	if err := p.Pull(ctx, images...); err != nil {
		return err
	}
	h.log.Info("prewarmed images", "images", images)
	return h.DB.Put(ctx, "prewarm", "images", key)
}
