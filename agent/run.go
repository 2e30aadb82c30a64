package agent

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/berthhq/berth/internal/buildinfo"
	"github.com/berthhq/berth/provision"
	"github.com/berthhq/berth/provision/extension"
	"github.com/berthhq/berth/telemetry"
)

// superviseEvery is how often the daemon's loop runs the provision plan
// again: checks and converges the engine, its wiring, prewarm, health.
const superviseEvery = 5 * time.Second

// Run is the daemon: it runs the provision plan (package provision) at
// start and again every superviseEvery — the same steps `berth-agent
// provision` runs, so the engine stays at the desired version, running,
// wired to the cache, with prewarm images pulled — until ctx ends. Errors
// are logged and retried, never fatal.
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
	if p := a.control.poller; p != nil {
		bg.Go(func() { p.Run(bgCtx) })
	}
	bg.Go(func() { a.runSelfUpdate(bgCtx) })
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
	observers := a.opts.Observers
	// A host provisioned through the Azure VM extension hears of the plan
	// in its status file, and the guest agent sees this service alive in
	// its heartbeat file.
	if ext, heartbeat, err := extension.Attach(ctx, a.cfg.StateDir(), a.log); err != nil {
		a.log.Error("attach to the VM extension; its status is not updated", "err", err)
	} else if ext != nil {
		observers = append(observers[:len(observers):len(observers)], ext)
		bg.Go(func() { heartbeat(bgCtx) })
	}
	plan, err := a.daemonPlan(mon, observers)
	if err != nil {
		return err
	}
	tick := time.NewTicker(superviseEvery)
	defer tick.Stop()
	said := &rounds{log: a.log}
	for {
		// First, so that the event is queued before a long engine change.
		a.logStateErr(ctx, "queue the state.rebuilt event", a.reportRebuild(ctx))
		a.control.judgeAgent(ctx, time.Now())
		if r, ran, err := plan.TryRun(ctx); ctx.Err() == nil {
			said.note(r, ran, err)
		}
		select {
		case <-ctx.Done():
			a.log.Info("agent stopping; the engine keeps running")
			return nil
		case <-tick.C:
		case <-a.control.changed():
			// control's answer changed: act on it now, not a round later.
		}
	}
}

// daemonPlan is the provision plan as the daemon runs it: the service step
// done by definition (this is the service), health from the Monitor, and
// prewarm pulls through the cache this process serves.
func (a *Agent) daemonPlan(mon *telemetry.Monitor, observers []provision.Observer) (*provision.Plan, error) {
	parts := planParts{
		cfg: a.cfg, db: a.db, engine: a.engine, desired: a.desired,
		health:    func(ctx context.Context) []telemetry.Check { return latestChecks(ctx, mon) },
		observers: observers, log: a.log, pullRetry: time.Minute,
		rebooter: a.opts.Rebooter, bootID: a.opts.BootID,
	}
	if a.cache != nil {
		parts.cacheAddr = a.cache.Addr()
	}
	return newPlan(parts)
}

// latestChecks are the Monitor's last results, or fresh ones when those do
// not pass: a host that just became healthy need not wait a round.
func latestChecks(ctx context.Context, mon *telemetry.Monitor) []telemetry.Check {
	cur := mon.Current()
	if cur.HTTPStatus() != 200 {
		cur = mon.Refresh(ctx)
	}
	return cur.Checks
}

// rounds logs the daemon's rounds of the provision plan (its steps log
// their own changes) one line per change: the loop runs every 5 s, and a
// plan that cannot run for an hour must not write 720 lines saying so.
// When `berth-agent provision` runs the plan, the daemon leaves it be
// until the next round.
type rounds struct {
	log    *slog.Logger
	err    string // the error the last round ended in; "" after one that ran
	reboot bool   // the last round left a reboot pending
}

func (o *rounds) note(r provision.Result, ran bool, err error) {
	if err != nil {
		if err.Error() == o.err {
			o.log.Debug("the provision plan still cannot run", "err", err)
		} else {
			o.log.Error("run the provision plan", "err", err)
		}
		o.err = err.Error()
		return
	}
	if o.err != "" {
		o.log.Info("the provision plan runs again", "after", o.err)
		o.err = ""
	}
	switch {
	case !ran:
		o.log.Debug("another berth-agent runs the provision plan; next round")
	case r.RebootPending && !o.reboot:
		o.log.Warn("the host reboots to finish provisioning")
	}
	if ran {
		o.reboot = r.RebootPending
	}
}
