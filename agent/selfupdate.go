package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/berthhq/berth/agent/config"
	"github.com/berthhq/berth/engine/release"
	"github.com/berthhq/berth/internal/buildinfo"
	"github.com/berthhq/berth/internal/httpclient"
	"github.com/berthhq/berth/internal/paths"
	"github.com/berthhq/berth/internal/statedb"
	"github.com/berthhq/berth/provision/selfupdate"
	"github.com/berthhq/berth/telemetry/outbox"
	"github.com/berthhq/berth/telemetry/report"
)

// Self-update's wiring (package provision/selfupdate): the launcher the
// service runs, the daemon's updater, and `berth-agent self-update`.

// LaunchOptions wire the launcher.
type LaunchOptions struct {
	Logger *slog.Logger
	// Args are the agent's arguments (run --config ABSPATH).
	Args []string
	// Stdout and Stderr receive the agents' output.
	Stdout, Stderr io.Writer
}

// Launch runs the launcher until ctx ends: `berth-agent run` as the
// service runs it. It starts the selected agent version, or itself.
func Launch(ctx context.Context, cfg config.Config, o LaunchOptions) error {
	log := o.Logger
	db, err := openDB(ctx, cfg, log)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("launcher: find its own executable: %w", err)
	}
	ob := outbox.New(db, outbox.Options{})
	lo := selfupdate.LauncherOptions{
		DB: db, StateDir: cfg.StateDir(), Self: self, Version: buildinfo.Version, Args: o.Args,
		HealthURL: selfupdate.HealthURL(cfg.Health.Listen), HealthTimeout: cfg.Update.HealthTimeout.D(),
		Events: report.Queue{Outbox: ob}, Logger: log, Stdout: o.Stdout, Stderr: o.Stderr,
	}
	if cfg.Control.URL != "" {
		lo.Outbox = ob
	}
	l, err := selfupdate.NewLauncher(lo)
	if err != nil {
		return err
	}
	return l.Run(ctx)
}

// openReleases is the signed release metadata of engine.releases, nil when
// no URL is set.
func openReleases(ctx context.Context, cfg config.Config, log *slog.Logger) (*release.Client, error) {
	if cfg.Engine.Releases.URL == "" {
		return nil, nil
	}
	rel, err := release.Open(ctx, release.Options{
		URL:        cfg.Engine.Releases.URL,
		Credential: cfg.Engine.Releases.Credential,
		RootFile:   cfg.Engine.Releases.RootFile,
		StateDir:   cfg.StateDir(),
		HTTPClient: httpclient.NewStandard(httpclient.Options{Logger: log}),
		Logger:     log,
	})
	if err != nil {
		return nil, fmt.Errorf("engine.releases: %w", err)
	}
	return rel, nil
}

// stager stages agent versions from the signed release metadata.
func stager(ctx context.Context, cfg config.Config, db *statedb.DB, launcher string, log *slog.Logger, progress func(done, total int64)) (*selfupdate.Stager, error) {
	rel, err := openReleases(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	return &selfupdate.Stager{
		DB: db, Releases: rel, StateDir: cfg.StateDir(), Launcher: launcher,
		Events: report.Queue{Outbox: outbox.New(db, outbox.Options{})}, Log: log, Progress: progress,
	}, nil
}

// desiredAgent is the agent version control wants for this host, and
// false while it has no opinion.
//
// HOOK(issue 11, desired state): wire the desired-state poller here —
// return its current answer's agent version. Until then the daemon never
// moves the agent by itself; `berth-agent self-update` still does.
func (a *Agent) desiredAgent() (string, bool) { return "", false }

// desiredAgentChanged tells the updater of a new desired answer, so that
// it acts at once rather than at its next look (2 s); nil for none.
//
// HOOK(issue 11, desired state): return the poller's change channel (or
// one its change callback sends to without blocking).
func (a *Agent) desiredAgentChanged() <-chan struct{} { return nil }

// runSelfUpdate is the daemon's updater, while ctx lasts. It runs only in
// an agent a launcher started: without one nothing would switch.
func (a *Agent) runSelfUpdate(ctx context.Context) {
	launcher, ok := selfupdate.IsChild()
	if !ok {
		return
	}
	s, err := stager(ctx, a.cfg, a.db, launcher, a.log, nil)
	if err != nil {
		a.log.Error("self-update is off", "err", err)
		return
	}
	u := selfupdate.NewUpdater(selfupdate.Updater{Stager: s, Desired: a.desiredAgent, Changed: a.desiredAgentChanged(), Running: buildinfo.Version, Log: a.log})
	u.Run(ctx)
}

// SelfUpdateOptions wire `berth-agent self-update`.
type SelfUpdateOptions struct {
	Logger *slog.Logger
	// Version asks for one version; "" for the channel's newest.
	Version string
	// Check only says what would happen.
	Check    bool
	Progress func(done, total int64)
}

// SelfUpdate is `berth-agent self-update`: the newest agent of
// engine.channel (or Version) staged and selected, then followed until
// the launcher has it Healthy and reporting, or blacklisted it.
func SelfUpdate(ctx context.Context, cfg config.Config, o SelfUpdateOptions) (selfupdate.Report, error) {
	db, err := openDB(ctx, cfg, o.Logger)
	if err != nil {
		return selfupdate.Report{}, err
	}
	s, err := stager(ctx, cfg, db, buildinfo.Version, o.Logger, o.Progress)
	if err != nil {
		return selfupdate.Report{}, err
	}
	r, err := s.Manual(ctx, o.Version, cfg.Engine.Channel, o.Check)
	if err != nil || o.Check || r.Action != selfupdate.ActionUpdate {
		return r, err
	}
	wctx, cancel := context.WithTimeout(ctx, cfg.Update.HealthTimeout.D()+selfupdate.WaitMargin)
	defer cancel()
	return r, s.Wait(wctx, r.Target, &r)
}

// AgentVersions is what `berth-agent version` adds to the build's: what
// the launcher runs now, if a launcher runs for the config's state folder.
func AgentVersions(ctx context.Context, cfg config.Config) (selfupdate.Running, bool) {
	stateDir := cfg.StateDir()
	if _, err := os.Stat(filepath.Join(stateDir, paths.DBFile)); err != nil || !selfupdate.LauncherRuns(stateDir) {
		return selfupdate.Running{}, false
	}
	db, err := openDB(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		return selfupdate.Running{}, false
	}
	r, ok, err := selfupdate.LoadRunning(ctx, db)
	return r, ok && err == nil
}
