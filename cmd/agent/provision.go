package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/berthhq/berth/agent"
	"github.com/berthhq/berth/internal/cli"
	"github.com/berthhq/berth/internal/logging"
	"github.com/berthhq/berth/internal/progress"
	"github.com/berthhq/berth/internal/svc"
	"github.com/berthhq/berth/provision"
)

// defaultProvisionTimeout bounds `provision` without --timeout: long
// enough for an engine download and a few image pulls on a slow link,
// short enough that cloud-init does not wait for ever.
const defaultProvisionTimeout = 30 * time.Minute

// provisionFlags are provision's own flags, beside the program's.
type provisionFlags struct {
	*flags
	timeout time.Duration
}

// provisionCommand is `berth-agent provision [--timeout D]`.
func (f *flags) provisionCommand() *cli.Command {
	p := &provisionFlags{flags: f}
	return &cli.Command{
		Name:    "provision",
		Summary: "converge this host to a ready container host, resumable across reboots",
		Help: "Runs the provision plan (prerequisites, engine, cache-wiring, service, prewarm, health) until the host is ready, " +
			"retrying what fails until --timeout. Exit 0 only when the host is ready; 1 names the step that is not.",
		// Long-running, and often run by cloud-init: its progress lines
		// are info lines, in the log by default.
		Daemon: true,
		Run:    p.provision,
		Flags: func(fs *flag.FlagSet) {
			fs.DurationVar(&p.timeout, "timeout", defaultProvisionTimeout, "give up after `D` (a Go duration such as 20m)")
		},
	}
}

func (f *provisionFlags) provision(ctx context.Context, in *cli.Invocation) error {
	if f.timeout <= 0 {
		return cli.Usagef("--timeout %s: want a positive duration such as 20m", f.timeout)
	}
	cfg, err := f.load()
	if err != nil {
		return err
	}
	term := terminal(in)
	log := provisionLogger(in, term != nil)
	pr := progress.New(in.Stderr, term != nil, log)
	obs := &stepPrinter{term: term, log: log, pr: pr}
	plan, err := agent.Provision(ctx, cfg, agent.ProvisionOptions{
		Options:      agent.Options{Logger: log, Progress: pr.Update, Observers: []provision.Observer{obs}},
		Service:      newAgentService(f.config, cfg.StateDir(), log),
		PullProgress: term,
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	res, err := plan.Until(ctx)
	pr.Done()
	if err != nil {
		return err
	}
	if err := in.Print(res, func(w io.Writer) error { printProvision(w, res); return nil }); err != nil {
		return err
	}
	return notReady(res)
}

// notReady is the command's error for a host that is not ready: it names
// the step.
func notReady(r provision.Result) error {
	if r.Ready {
		return nil
	}
	for _, s := range r.Steps {
		switch s.State {
		case provision.Reboot:
			return fmt.Errorf("host not ready: step %s: %s", s.Name, s.Message)
		case provision.Failed:
			return fmt.Errorf("host not ready: step %s failed: %s", s.Name, s.Error)
		}
	}
	return errors.New("host not ready")
}

// provisionLogger is the command's logger: info lines (progress) in the
// log when nobody watches a terminal; on one, the progress display shows
// them, so logs are warnings and errors unless a level was asked for.
func provisionLogger(in *cli.Invocation, onTerminal bool) *slog.Logger {
	asked := in.Getenv("BERTH_LOG_LEVEL") != ""
	if fl := in.Flags.Lookup("log-level"); fl != nil && fl.Value.String() != "" {
		asked = true
	}
	if !onTerminal || asked {
		return in.Log
	}
	log, err := logging.New(in.Stderr, "text", "warn")
	if err != nil {
		return in.Log
	}
	return log
}

func printProvision(w io.Writer, r provision.Result) {
	state := "ready"
	switch {
	case r.RebootPending:
		state = "not ready: a reboot is pending"
	case !r.Ready:
		state = "not ready: " + r.Failed + " failed"
	}
	fmt.Fprintf(w, "host %s\n", state)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, s := range r.Steps {
		what := s.Message
		if s.Error != "" {
			what = s.Error
		}
		fmt.Fprintf(tw, "  %s\t%s\t%.1fs\t%s\n", s.Name, s.State, s.Seconds, what)
	}
	tw.Flush()
}

// stepPrinter shows the plan's steps as they move: lines on the terminal,
// log lines otherwise.
type stepPrinter struct {
	term io.Writer // nil: log
	log  *slog.Logger
	pr   *progress.Reporter
	mu   sync.Mutex
}

func (p *stepPrinter) Step(_ context.Context, r provision.StepResult) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.term == nil {
		args := []any{"step", r.Name, "state", r.State, "seconds", r.Seconds}
		if r.Message != "" {
			args = append(args, "message", r.Message)
		}
		if r.Error != "" {
			p.log.Error("provision step", append(args, "err", r.Error)...)
			return
		}
		p.log.Info("provision step", args...)
		return
	}
	p.pr.Done() // end a progress bar's line first
	mark := map[provision.StepState]string{provision.Running: "…", provision.Done: "✓", provision.Failed: "✗", provision.Reboot: "↻"}[r.State]
	what := r.Message
	if r.Error != "" {
		what = r.Error
	}
	fmt.Fprintf(p.term, "%s %-14s %s\n", mark, r.Name, what)
}

func (p *stepPrinter) Finished(context.Context, provision.Result) {}

// agentService is the agent service for the provision plan: the
// platform's service (internal/svc), or where the host has none, the agent
// started detached, which counts as the service (SPEC).
type agentService struct {
	svc      *svc.Service
	detached svc.Detached
}

func newAgentService(configPath, stateDir string, log *slog.Logger) *agentService {
	cfg := serviceConfig(configPath)
	cfg.Logger = log
	// Control only: this process never runs the service.
	s, err := svc.New(cfg, nil)
	if err != nil || !svc.HasServiceManager() {
		s = nil
	}
	return &agentService{svc: s, detached: svc.DetachedIn(stateDir, cfg.Executable, cfg.Arguments...)}
}

func (a *agentService) Running(ctx context.Context) (bool, string, error) {
	if a.svc != nil {
		st, err := a.svc.Status(ctx)
		if err == nil {
			return st == svc.StatusRunning, "service " + a.svc.Name() + " " + string(st), nil
		}
		if !errors.Is(err, svc.ErrNoServiceManager) {
			return false, "", err
		}
	}
	if pid, ok := svc.DetachedPid(a.detached.PidFile); ok {
		return true, fmt.Sprintf("no service manager on this host: the agent runs detached (pid %d)", pid), nil
	}
	return false, "no service manager on this host: the agent is to be started detached", nil
}

func (a *agentService) Ensure(ctx context.Context) error {
	if a.svc != nil {
		err := a.svc.Install(ctx)
		if err == nil {
			return a.svc.Start(ctx)
		}
		if !errors.Is(err, svc.ErrNoServiceManager) {
			return err
		}
	}
	_, err := svc.StartDetached(ctx, a.detached)
	return err
}
