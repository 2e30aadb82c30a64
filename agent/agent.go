// Package agent is berth-agent's composition root: it builds the engine
// manager, the image cache, the reporter and the health checks from the
// config (small constructors: newEngine, newCache, newReporter), and runs
// the daemon's loop. One-shot commands build only what they use (OpenEngine,
// OpenCache, HealthChecks, Puller).
//
// Only cmd/agent imports this package (internal/repocheck enforces it):
// everything below it is wired here and nowhere else.
package agent

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/berthhq/berth/agent/config"
	"github.com/berthhq/berth/engine"
	"github.com/berthhq/berth/engine/flavors"
	"github.com/berthhq/berth/engine/release"
	"github.com/berthhq/berth/imagecache"

	"github.com/berthhq/berth/internal/hostid"
	"github.com/berthhq/berth/internal/paths"
	"github.com/berthhq/berth/internal/statedb"
	"github.com/berthhq/berth/provision"
	"github.com/berthhq/berth/telemetry"
	"github.com/berthhq/berth/telemetry/outbox"
	"github.com/berthhq/berth/telemetry/report"
)

// Options wire the agent.
type Options struct {
	Logger *slog.Logger
	// Progress is told of long engine steps; nil for none.
	Progress engine.ProgressFunc
	// Observers see the provision plan move (the VM extension's status
	// writer is one).
	Observers []provision.Observer
	// Rebooter and BootID replace the platform's in the provision plan
	// (tests that play a reboot); nil for the platform's.
	Rebooter provision.Rebooter
	BootID   func() (string, error)
}

func (o Options) logger() *slog.Logger {
	if o.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Logger
}

// Agent is the daemon: this machine as the agent manages it.
type Agent struct {
	cfg     config.Config
	db      *statedb.DB
	engine  *engine.Manager
	desired *engine.Desired
	cache   *imagecache.Service // nil when cache.enabled is false
	metrics *prometheus.Registry
	// reporter queues heartbeats and events in agent.db and, while Run
	// runs, sends them to control.url.
	reporter *report.Reporter
	log      *slog.Logger
	opts     Options
	osBuild  string
	monitor  atomic.Pointer[telemetry.Monitor] // set by Run, read by heartbeats
}

// New builds the daemon's components. The only network call is the agent
// id's first resolution, which asks IMDS for the VM id (within 2 s, once per
// agent.db: the id is remembered); release metadata is fetched when a
// version is needed, and reports are sent only by Run.
func New(ctx context.Context, cfg config.Config, o Options) (*Agent, error) {
	log := o.logger()
	db, err := openDB(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	a := &Agent{cfg: cfg, db: db, metrics: prometheus.NewRegistry(), log: log.With("component", "agent"), opts: o, osBuild: hostid.OSBuild()}
	if a.reporter, err = a.newReporter(ctx, log); err != nil {
		return nil, err
	}
	if a.engine, err = newEngine(ctx, cfg, db, log, o.Progress, engineEvents(a.reporter, a.log)); err != nil {
		return nil, err
	}
	a.desired = a.engine.Desired(cfg.Engine.Version)
	if cfg.Cache.Enabled {
		if a.cache, err = newCache(cfg, db, a.metrics, log); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// openDB opens agent.db; a damaged file is replaced on the way (statedb),
// before anything reads it, so that every owner rebuilds its part from the
// host.
func openDB(ctx context.Context, cfg config.Config, log *slog.Logger) (*statedb.DB, error) {
	return statedb.OpenWith(ctx, filepath.Join(cfg.StateDir(), paths.DBFile), statedb.Options{Logger: log.With("component", "statedb")})
}

// newEngine builds the engine manager: the flavor, the platform's runner,
// the signed release source, and what Berth writes into the engine's
// configuration. onEvent is told of every change worth reporting.
func newEngine(ctx context.Context, cfg config.Config, db *statedb.DB, log *slog.Logger, progress engine.ProgressFunc, onEvent func(engine.Event)) (*engine.Manager, error) {
	flavor, err := flavors.New(cfg.Engine.Flavor, filepath.Join(cfg.StateDir(), paths.LogsDir))
	if err != nil {
		return nil, err
	}
	stateDir := cfg.StateDir()
	var rel *release.Client
	if cfg.Engine.Managed {
		if rel, err = openReleases(ctx, cfg, log); err != nil {
			return nil, err
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
	return engine.New(engine.Options{
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
		Progress:      progress,
		OnEvent:       onEvent,
	})
}

// newCache builds the image cache's tiers and handler; nothing listens
// until Start.
func newCache(cfg config.Config, db *statedb.DB, reg prometheus.Registerer, log *slog.Logger) (*imagecache.Service, error) {
	return imagecache.NewService(cfg.Cache, cfg.CacheDir(), db, reg, log)
}

// newReporter resolves the agent id (agent.id, else the one remembered in
// agent.db, else the VM id from IMDS, else the machine id) and builds the
// reporter on the outbox in agent.db.
func (a *Agent) newReporter(ctx context.Context, log *slog.Logger) (*report.Reporter, error) {
	id, err := hostid.Resolve(ctx, hostid.Options{Configured: a.cfg.Agent.ID, DB: a.db, Logger: a.log})
	if err != nil {
		return nil, err
	}
	client, err := newClient(a.cfg.Control, log)
	if err != nil {
		return nil, err
	}
	interval := a.cfg.Control.ReportInterval.D()
	return report.New(report.Options{
		Agent:          id.Value,
		Outbox:         outbox.New(a.db, outbox.Options{}),
		Client:         client,
		Interval:       interval,
		FirstHeartbeat: min(firstHeartbeat, interval),
		Heartbeat:      a.heartbeat,
		Metrics:        a.metrics,
		Logger:         log,
	})
}

// newClient returns the control endpoint's client, or nil when control.url
// is empty. A managed identity that cannot be set up (control.audience
// missing) is not fatal here: the agent still manages the engine and the
// cache, and every send fails with the reason, which the "control" check
// and the log show.
func newClient(c report.Config, log *slog.Logger) (*report.Client, error) {
	if c.URL == "" {
		return nil, nil
	}
	var tokens report.TokenSource
	switch c.Auth {
	case "token":
		tokens = report.FileToken{Path: c.TokenFile}
	case "none", "":
		tokens = report.NoToken{}
	case "managed-identity":
		mi, err := report.NewManagedIdentity(c.Audience, c.ClientID, nil)
		if err != nil {
			log.Error("control endpoint credentials; reports stay queued until the config is fixed", "err", err)
			tokens = brokenToken{err}
		} else {
			tokens = mi
		}
	default:
		return nil, fmt.Errorf("control.auth %q: want managed-identity, token or none", c.Auth)
	}
	return report.NewClient(report.ClientOptions{URL: c.URL, Tokens: tokens, Logger: log})
}

// brokenToken stands for a credential that could not be set up.
type brokenToken struct{ err error }

func (b brokenToken) Token(context.Context, bool) (string, error) { return "", b.err }

// checks are the host's health checks of SPEC: the engine (API, service,
// version against the desired one; on Windows HCS and HNS), the data
// root's disk space, the agent's own state file, the cache listener and
// each storage tier, the control endpoint.
func checks(cfg config.Config, db *statedb.DB, m *engine.Manager, d *engine.Desired, c *imagecache.Service, r *report.Reporter) []telemetry.CheckFunc {
	dataRoot := cfg.Engine.DataRoot
	if dataRoot == "" {
		dataRoot = cfg.StateDir()
	}
	cs := []telemetry.CheckFunc{m.Check(d, cfg.Engine.Version), telemetry.DiskCheck(dataRoot), stateCheck(db)}
	if c != nil {
		cs = append(cs, c.Checks()...)
	}
	return append(cs, report.ControlCheck(cfg.Control.URL, r))
}
