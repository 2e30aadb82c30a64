package agent

import (
	"context"
	"io"
	"log/slog"

	"github.com/berthhq/berth/agent/config"
	"github.com/berthhq/berth/engine"
	"github.com/berthhq/berth/imagecache"
	"github.com/berthhq/berth/internal/statedb"

	"github.com/berthhq/berth/telemetry"
	"github.com/berthhq/berth/telemetry/outbox"
	"github.com/berthhq/berth/telemetry/report"
)

// The one-shot commands' wiring: each builds only what it uses. None asks
// IMDS, builds a control client or starts a listener.

// OpenEngine is the engine manager for `berth-agent engine …`. Its events
// are queued in agent.db's outbox for the daemon to send.
func OpenEngine(ctx context.Context, cfg config.Config, o Options) (*engine.Manager, error) {
	_, m, err := openEngine(ctx, cfg, o)
	return m, err
}

// openEngine opens agent.db and the engine manager, whose events go to
// agent.db's outbox.
func openEngine(ctx context.Context, cfg config.Config, o Options) (*statedb.DB, *engine.Manager, error) {
	log := o.logger()
	db, err := openDB(ctx, cfg, log)
	if err != nil {
		return nil, nil, err
	}
	q := report.Queue{Outbox: outbox.New(db, outbox.Options{})}
	m, err := newEngine(ctx, cfg, db, log, o.Progress, engineEvents(q, log))
	return db, m, err
}

// OpenCache is the image cache for `berth-agent cache …`: its tiers opened,
// no listener. The caller Closes it.
func OpenCache(ctx context.Context, cfg config.Config, log *slog.Logger) (*imagecache.Service, error) {
	db, err := openDB(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	c, err := newCache(cfg, db, nil, log)
	if err != nil {
		return nil, err
	}
	if err := c.OpenTiers(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// HealthChecks are the daemon's checks for `berth-agent health`, run from
// outside the daemon: nothing is started, and the control check tells
// reachability only (the daemon's reporter knows whether reports get through).
func HealthChecks(ctx context.Context, cfg config.Config, log *slog.Logger) ([]telemetry.CheckFunc, error) {
	db, err := openDB(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	m, err := newEngine(ctx, cfg, db, log, nil, nil)
	if err != nil {
		return nil, err
	}
	return outsideChecks(cfg, db, m, log)
}

// outsideChecks are the daemon's checks run from another process: the
// cache is built (to know its tiers and listener) but not started.
func outsideChecks(cfg config.Config, db *statedb.DB, m *engine.Manager, log *slog.Logger) ([]telemetry.CheckFunc, error) {
	var c *imagecache.Service
	if cfg.Cache.Enabled {
		var err error
		if c, err = newCache(cfg, db, nil, log); err != nil {
			return nil, err
		}
	}
	return checks(cfg, db, m, nil, c, nil), nil
}

// Puller pulls images into the engine through the cache (when
// cache.enabled), for `berth-agent pull`. namespace is for flavors that
// have them ("" for the default); progress, when set (a terminal), shows
// the pull as it goes.
func Puller(ctx context.Context, cfg config.Config, namespace string, progress io.Writer, log *slog.Logger) (engine.Puller, error) {
	m, err := OpenEngine(ctx, cfg, Options{Logger: log})
	if err != nil {
		return nil, err
	}
	o := engine.PullOptions{Namespace: namespace, Progress: progress, Logger: log}
	if cfg.Cache.Enabled {
		o.CacheAddr = cfg.Cache.Listen
	}
	return m.Puller(ctx, o)
}
