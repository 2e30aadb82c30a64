package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/berthhq/berth/agent"
	"github.com/berthhq/berth/agent/config"
	"github.com/berthhq/berth/control/wire"
	"github.com/berthhq/berth/internal/buildinfo"
	"github.com/berthhq/berth/internal/cli"
	"github.com/berthhq/berth/internal/logging"
	"github.com/berthhq/berth/internal/paths"
	"github.com/berthhq/berth/internal/progress"
	"github.com/berthhq/berth/internal/svc"
	"github.com/berthhq/berth/provision/selfupdate"
)

// This file holds `run` (the launcher, or the agent a launcher started),
// `self-update` and `version`: self-update's commands (docs/self-update.md).

// run is the service's command. Without the child marker it is the
// launcher, which runs the selected agent version as its child; with it,
// the agent itself, stopped when the launcher closes its stdin.
func (f *flags) run(ctx context.Context, in *cli.Invocation) error {
	cfg, err := f.load()
	if err != nil {
		return err
	}
	launcher, child := selfupdate.IsChild()
	// The agent logs JSON lines to agent.log, the launcher to launcher.log
	// (one writer per file), both to stderr too (journald keeps it) and on
	// Windows warnings and errors to the Event Log (docs/logs.md).
	name := "launcher.log"
	if child {
		name = "agent.log"
	}
	log, closeLog, err := logging.Open(logging.Options{
		Path: filepath.Join(cfg.StateDir(), paths.LogsDir, name), Level: in.LogLevel,
		Stderr: in.Stderr, EventLog: true,
	})
	if err != nil {
		return err
	}
	defer closeLog()
	if child {
		ctx, cancel := selfupdate.ChildContext(ctx, os.Stdin)
		defer cancel()
		a, err := agent.New(ctx, cfg, agent.Options{Logger: log.With("launcher", launcher), Progress: progress.New(nil, false, log).Update})
		if err != nil {
			return err
		}
		return a.Run(ctx)
	}
	sc := serviceConfig(f.config)
	s, err := svc.New(sc, func(ctx context.Context) error {
		return agent.Launch(ctx, cfg, agent.LaunchOptions{Logger: log, Args: sc.Arguments, Stdout: in.Stdout, Stderr: in.Stderr})
	})
	if err != nil {
		return err
	}
	return s.Run()
}

func (f *flags) selfUpdate(ctx context.Context, in *cli.Invocation) error {
	if f.version != "" {
		if err := wire.CheckVersion(f.version); err != nil {
			return cli.Usagef("--version %v", err)
		}
	}
	cfg, err := f.load()
	if err != nil {
		return err
	}
	pr := progress.New(in.Stderr, terminal(in) != nil, in.Log)
	defer pr.Done()
	r, err := agent.SelfUpdate(ctx, cfg, agent.SelfUpdateOptions{
		Logger: in.Log, Version: f.version, Check: f.check,
		Progress: func(done, total int64) { pr.Update("download", done, total) },
	})
	pr.Done()
	if r.Target == "" {
		return err
	}
	if perr := in.Print(r, func(w io.Writer) error { return printSelfUpdate(w, r, f.check) }); perr != nil {
		return perr
	}
	return err
}

func printSelfUpdate(w io.Writer, r selfupdate.Report, check bool) error {
	running := dash(r.Running)
	switch {
	case r.Action == selfupdate.ActionNone:
		_, err := fmt.Fprintf(w, "agent %s runs already (launcher %s)\n", r.Target, r.Launcher)
		return err
	case r.Action == selfupdate.ActionBlacklisted:
		_, err := fmt.Fprintf(w, "agent %s, the newest, is blacklisted here (%s: %s); staying on %s (name it with --version to try it again)\n",
			r.Target, r.Failure.Reason, r.Failure.Message, running)
		return err
	case check:
		_, err := fmt.Fprintf(w, "agent %s → %s: an update is available (launcher %s)\n", running, r.Target, r.Launcher)
		return err
	case r.Outcome == selfupdate.OutcomeHealthy:
		_, err := fmt.Fprintf(w, "agent %s: Healthy and reporting %s after it was selected (launcher %s)\n", r.Target, r.Took, r.Launcher)
		return err
	case r.Outcome != "":
		_, err := fmt.Fprintf(w, "agent %s: blacklisted after %s\n", r.Target, r.Took)
		return err
	}
	_, err := fmt.Fprintf(w, "agent %s staged and selected\n", r.Target)
	return err
}

// versionInfo is what `version` prints: this binary's build, and when a
// launcher runs for --config's state folder, the agent it runs.
type versionInfo struct {
	buildinfo.Info
	// Launcher is the installed binary's version (this one).
	Launcher string              `json:"launcher"`
	Agent    *selfupdate.Running `json:"agent,omitempty"`
}

func (f *flags) cmdVersion(ctx context.Context, in *cli.Invocation) error {
	info := versionInfo{Info: buildinfo.Get(), Launcher: buildinfo.Version}
	// No config is no error here: version works on a bare host.
	if cfg, err := config.Load(f.config); err == nil {
		if r, ok := agent.AgentVersions(ctx, cfg); ok {
			info.Agent = &r
		}
	}
	return in.Print(info, func(w io.Writer) error {
		fmt.Fprintf(w, "berth-agent %s (commit %s, built %s, %s, %s)\n", info.Version, info.Commit, info.Date, info.Platform, info.Go)
		fmt.Fprintf(w, "launcher: %s\n", info.Launcher)
		if info.Agent == nil {
			_, err := fmt.Fprintln(w, "agent:    - (no launcher runs for this config's state folder)")
			return err
		}
		state := "good"
		if info.Agent.Probation {
			state = "on probation"
		}
		_, err := fmt.Fprintf(w, "agent:    %s (pid %d, since %s, %s)\n", info.Agent.Version, info.Agent.PID, info.Agent.Since.Format(time.RFC3339), state)
		return err
	})
}
