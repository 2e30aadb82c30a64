package agent

import (
	"context"
	"io"
	"log/slog"
	"time"

	"github.com/berthhq/berth/agent/config"
	"github.com/berthhq/berth/engine"
	"github.com/berthhq/berth/internal/statedb"
	"github.com/berthhq/berth/provision"
	"github.com/berthhq/berth/telemetry"
)

// planParts are what the provision plan is built from; the daemon and the
// one-shot fill them differently (the service, the health source, where
// pulls go), the steps are the same.
type planParts struct {
	cfg     config.Config
	db      *statedb.DB
	engine  *engine.Manager
	desired *engine.Desired
	// service is nil inside the agent service itself.
	service provision.Service
	// health returns the latest results of the host's checks.
	health func(ctx context.Context) []telemetry.Check
	// cacheAddr is where prewarm pulls go through; "" for none.
	cacheAddr    string
	pullProgress io.Writer
	// pullRetry is the pause after a failed prewarm.
	pullRetry time.Duration
	observers []provision.Observer
	log       *slog.Logger
	// rebooter and bootID replace the platform's (tests); nil for it.
	rebooter provision.Rebooter
	bootID   func() (string, error)
}

// newPlan builds the provision plan: prerequisites, engine, cache wiring,
// agent service, prewarm, health.
func newPlan(p planParts) (*provision.Plan, error) {
	cfg := p.cfg
	steps := []provision.Step{
		provision.Prerequisites(cfg.Engine.Managed, cfg.Engine.Settings),
		provision.Engine(p.engine, p.desired, cfg.Engine.Managed),
		provision.CacheWiring(p.engine, cfg.Engine.Managed, cfg.Cache.Enabled, cfg.Cache.Listen),
		provision.AgentService(p.service),
		provision.Prewarm(provision.PrewarmOptions{
			Engine: p.engine, DB: p.db, Images: cfg.Cache.Prewarm, CacheAddr: p.cacheAddr,
			Progress: p.pullProgress, Logger: p.log, Retry: p.pullRetry,
		}),
		provision.Health(p.health, cfg.Engine.Managed),
	}
	return provision.New(provision.Options{
		Steps: steps, DB: p.db, StateDir: cfg.StateDir(), AllowReboot: cfg.Provision.AllowReboot,
		Rebooter: p.rebooter, BootID: p.bootID, Observers: p.observers, Logger: p.log,
	})
}

// ProvisionOptions wire the one-shot `berth-agent provision`.
type ProvisionOptions struct {
	Options
	// Service installs and starts the agent service.
	Service provision.Service
	// PullProgress shows prewarm pulls on a terminal; nil logs them.
	PullProgress io.Writer
}

// Provision is the plan for `berth-agent provision`: the engine manager
// (its events queued in agent.db's outbox for the daemon to send), the
// checks run from outside the daemon, and the agent service installed
// through o.Service. Nothing listens; the cache is the service's.
func Provision(ctx context.Context, cfg config.Config, o ProvisionOptions) (*provision.Plan, error) {
	log := o.logger()
	db, m, err := openEngine(ctx, cfg, o.Options)
	if err != nil {
		return nil, err
	}
	cs, err := outsideChecks(cfg, db, m, log)
	if err != nil {
		return nil, err
	}
	parts := planParts{
		cfg: cfg, db: db, engine: m, service: o.Service,
		desired:      storedDesired(ctx, controlConfig{url: cfg.Control.URL, pin: cfg.Engine.Version}, db, m, log),
		health:       func(ctx context.Context) []telemetry.Check { return telemetry.Run(ctx, cs, 10*time.Second).Checks },
		pullProgress: o.PullProgress, observers: o.Observers, log: log,
		rebooter: o.Rebooter, bootID: o.BootID,
	}
	if cfg.Cache.Enabled {
		parts.cacheAddr = cfg.Cache.Listen
	}
	return newPlan(parts)
}
