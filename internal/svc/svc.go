// Package svc runs berth-agent as a service of the platform — a Windows
// service under the SCM, a systemd unit on Linux — through
// kardianos/service, and installs and controls that service.
//
// The adapter adds what kardianos/service leaves out: a systemd unit that
// restarts the agent within seconds and leaves the engine processes it
// supervises running across an agent restart; on Windows, a delayed
// automatic start and three recovery actions that also fire when the agent
// stops with an error; an Install that is idempotent and repairs a
// definition that drifted; a run function that gets a context cancelled on
// stop and is waited for; control calls that are idempotent; and, for hosts
// with no service manager, the agent started detached (StartDetached).
// SetupHost does for an MSI-installed service what wixl cannot express:
// recovery, delayed start, the state folder's ACL, the Event Log source.
package svc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/kardianos/service"
)

// Defaults for the fields of Config left empty.
const (
	DefaultName        = "berth-agent"
	DefaultDisplayName = "Berth agent"
	DefaultDescription = "Keeps this host's container engine provisioned, current and healthy, caches its image pulls and reports its health."
	DefaultStopTimeout = 25 * time.Second
)

// Windows recovery policy: restart after each delay in turn (the last one
// repeats), and forget past failures after the reset period.
var recoveryDelays = []time.Duration{5 * time.Second, 10 * time.Second, 30 * time.Second}

const recoveryResetPeriod = 24 * time.Hour

// ErrNoServiceManager is returned by the control calls on a host where no
// service manager was found: on Linux, systemd is not running (a container,
// for example); see hasServiceManager. Run still works: it runs in the
// foreground.
var ErrNoServiceManager = errors.New("no service manager on this host")

// ErrExitedEarly is the error Run reports, under a service manager, when
// the run function returns nil before it was asked to stop: the service
// manager then counts it as a failure and restarts the agent.
var ErrExitedEarly = errors.New("the agent returned before it was asked to stop")

// Config describes the agent's service.
type Config struct {
	// Name is the service (and Windows event log source) name; default
	// berth-agent.
	Name string
	// DisplayName is shown by the Windows services console.
	DisplayName string
	// Description is shown by the services console and `systemctl status`.
	Description string
	// Executable is the absolute path of the agent binary; New defaults it
	// to the running executable.
	Executable string
	// Arguments follow the executable on the service's command line, for
	// example ["run", "--config", "/etc/berth/agent.yaml"].
	Arguments []string
	// StopTimeout bounds how long a stop waits for the run function to
	// return; default 25s, within systemd's TimeoutStopSec of the unit.
	StopTimeout time.Duration
	// Logger receives the service's own events; nil discards them.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Name == "" {
		c.Name = DefaultName
	}
	if c.DisplayName == "" {
		c.DisplayName = DefaultDisplayName
	}
	if c.Description == "" {
		c.Description = DefaultDescription
	}
	if c.StopTimeout <= 0 {
		c.StopTimeout = DefaultStopTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Status is the state of the installed service.
type Status string

// The states Status reports.
const (
	StatusRunning      Status = "running"
	StatusStopped      Status = "stopped"
	StatusNotInstalled Status = "not-installed"
	StatusUnknown      Status = "unknown"
)

// Service is the agent's service: the controls to install and drive it,
// and Run, which the service's own process calls.
type Service struct {
	cfg Config
	log *slog.Logger
	svc service.Service // nil when no service manager was found
	prg *program

	// Linux: where the unit goes and how systemctl is run (nil: the real
	// one); tests change both.
	unitDir   string
	systemctl func(ctx context.Context, args ...string) error
}

// New prepares the service named by cfg; run is the agent's work, called by
// Run, and may be nil for a Service used only to install and control the
// service. New succeeds on a host with no service manager: Run then works
// in the foreground and the control calls return ErrNoServiceManager.
func New(cfg Config, run func(ctx context.Context) error) (*Service, error) {
	cfg = cfg.withDefaults()
	if cfg.Executable == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("new service %s: find the agent's executable: %w", cfg.Name, err)
		}
		cfg.Executable = exe
	}
	if run == nil {
		run = func(context.Context) error {
			return errors.New("this service was prepared for control only: it has no run function")
		}
	}
	s := &Service{cfg: cfg, log: cfg.Logger.With("component", "svc"), unitDir: UnitDir}
	s.prg = &program{run: run, stopTimeout: cfg.StopTimeout, log: s.log, onEarlyExit: s.exitedEarly}
	if !hasServiceManager() {
		s.log.Debug("no service manager on this host; running in the foreground only")
		return s, nil
	}
	opts := service.KeyValue{
		"RunWait":          s.prg.wait,
		"StartType":        "automatic",
		"DelayedAutoStart": true,
	}
	sv, err := service.New(s.prg, &service.Config{
		Name:        cfg.Name,
		DisplayName: cfg.DisplayName,
		Description: cfg.Description,
		Executable:  cfg.Executable,
		Arguments:   cfg.Arguments,
		Option:      opts,
	})
	switch {
	case errors.Is(err, service.ErrNoServiceSystemDetected):
		s.log.Debug("no service manager detected; running in the foreground only")
	case err != nil:
		return nil, fmt.Errorf("new service %s: %w", cfg.Name, err)
	default:
		s.svc = sv
	}
	return s, nil
}

// HasServiceManager reports whether this host has a service manager the
// agent's service can be installed into: the SCM on Windows, a running
// systemd on Linux. Where it has none, the agent runs detached
// (StartDetached) or under a supervisor of the operator's.
func HasServiceManager() bool { return hasServiceManager() }

// Name returns the service name.
func (s *Service) Name() string { return s.cfg.Name }

// Run runs the agent until it is told to stop, and returns the run
// function's error. Under the service manager, the run function's context
// is cancelled when the service is stopped (or, on Linux, on SIGTERM or
// SIGINT); from a terminal, on SIGINT or SIGTERM. Either way Run waits for
// the run function to return, up to Config.StopTimeout under a service
// manager. A run function that returns context.Canceled after its context
// was cancelled has stopped cleanly.
func (s *Service) Run() error {
	if s.svc == nil || service.Interactive() {
		return s.runForeground(context.Background())
	}
	if err := s.svc.Run(); err != nil {
		return fmt.Errorf("run service %s: %w", s.cfg.Name, err)
	}
	return nil
}

// runForeground runs the run function with a context cancelled on SIGINT
// or SIGTERM, or when parent is done.
func (s *Service) runForeground(parent context.Context) error {
	ctx, stop := signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := s.prg.run(ctx)
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// Install installs the service, set to start at boot and to restart on
// failure (on Windows: after 5s, 10s, then 30s, also when the agent stops
// with an error; on Linux: 5s after any exit). It is idempotent: an
// installed service whose definition is as wanted is left alone, and one
// that drifted (edited by hand, or written by another build of the agent)
// is rewritten — on Linux followed by a daemon-reload. A running service
// keeps running on its old definition until it restarts: Install restarts
// nothing.
func (s *Service) Install(ctx context.Context) error {
	_, err := s.Ensure(ctx)
	return err
}

// Ensure is Install, reporting what it changed.
func (s *Service) Ensure(ctx context.Context) (InstallChange, error) {
	if err := s.ready(ctx); err != nil {
		return "", fmt.Errorf("install service %s: %w", s.cfg.Name, err)
	}
	ch, err := s.install(ctx)
	if err != nil {
		return "", fmt.Errorf("install service %s: %w", s.cfg.Name, err)
	}
	if ch != Unchanged {
		s.log.Info("service definition written", "name", s.cfg.Name, "change", string(ch))
	}
	return ch, nil
}

// Uninstall stops the service if it runs and removes it. Removing a service
// that is not installed succeeds.
func (s *Service) Uninstall(ctx context.Context) error {
	if err := s.ready(ctx); err != nil {
		return fmt.Errorf("uninstall service %s: %w", s.cfg.Name, err)
	}
	st, _ := s.status()
	switch st {
	case StatusNotInstalled:
		return nil
	case StatusRunning:
		if err := s.stop(ctx); err != nil {
			return fmt.Errorf("uninstall service %s: %w", s.cfg.Name, err)
		}
	}
	if err := s.svc.Uninstall(); err != nil {
		return fmt.Errorf("uninstall service %s: %w", s.cfg.Name, err)
	}
	s.log.Info("service uninstalled", "name", s.cfg.Name)
	return nil
}

// Start starts the service; starting a running service succeeds.
func (s *Service) Start(ctx context.Context) error {
	if err := s.ready(ctx); err != nil {
		return fmt.Errorf("start service %s: %w", s.cfg.Name, err)
	}
	if st, _ := s.status(); st == StatusRunning {
		return nil
	}
	if err := s.svc.Start(); err != nil {
		return fmt.Errorf("start service %s: %w", s.cfg.Name, err)
	}
	return nil
}

// Stop stops the service and waits for it to stop, until ctx is done on
// Windows and for the unit's TimeoutStopSec on Linux. Stopping a stopped
// service succeeds.
func (s *Service) Stop(ctx context.Context) error {
	if err := s.ready(ctx); err != nil {
		return fmt.Errorf("stop service %s: %w", s.cfg.Name, err)
	}
	if st, _ := s.status(); st == StatusStopped {
		return nil
	}
	if err := s.stop(ctx); err != nil {
		return fmt.Errorf("stop service %s: %w", s.cfg.Name, err)
	}
	return nil
}

// Restart stops the service if it runs, then starts it.
func (s *Service) Restart(ctx context.Context) error {
	if err := s.ready(ctx); err != nil {
		return fmt.Errorf("restart service %s: %w", s.cfg.Name, err)
	}
	if st, _ := s.status(); st == StatusRunning {
		if err := s.stop(ctx); err != nil {
			return fmt.Errorf("restart service %s: %w", s.cfg.Name, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("restart service %s: %w", s.cfg.Name, err)
	}
	if err := s.svc.Start(); err != nil {
		return fmt.Errorf("restart service %s: %w", s.cfg.Name, err)
	}
	return nil
}

// Status reports the state of the service. StatusUnknown comes with an
// error that says why; StatusNotInstalled does not.
func (s *Service) Status(ctx context.Context) (Status, error) {
	if err := s.ready(ctx); err != nil {
		return StatusUnknown, fmt.Errorf("status of service %s: %w", s.cfg.Name, err)
	}
	st, err := s.status()
	if err != nil {
		return st, fmt.Errorf("status of service %s: %w", s.cfg.Name, err)
	}
	return st, nil
}

func (s *Service) status() (Status, error) {
	return mapStatus(s.svc.Status())
}

// mapStatus turns kardianos/service's answer into a Status.
func mapStatus(st service.Status, err error) (Status, error) {
	switch {
	case errors.Is(err, service.ErrNotInstalled):
		return StatusNotInstalled, nil
	case err != nil:
		return StatusUnknown, err
	case st == service.StatusRunning:
		return StatusRunning, nil
	case st == service.StatusStopped:
		return StatusStopped, nil
	}
	return StatusUnknown, fmt.Errorf("service manager reports state %d", st)
}

func (s *Service) ready(ctx context.Context) error {
	if s.svc == nil {
		return ErrNoServiceManager
	}
	return ctx.Err()
}

// program is what kardianos/service drives: Start launches the run
// function in a goroutine it owns and returns at once (the SCM gives a
// service about 30 seconds to report running); Stop cancels it and waits.
type program struct {
	run         func(context.Context) error
	stopTimeout time.Duration
	log         *slog.Logger
	onEarlyExit func()

	mu       sync.Mutex
	cancel   context.CancelFunc
	done     chan struct{} // closed when run returns
	err      error         // run's result, set before done is closed
	stopping bool
}

var _ service.Interface = (*program)(nil)

// Start implements service.Interface.
func (p *program) Start(service.Service) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done != nil {
		return errors.New("the agent is already running")
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel, p.done, p.stopping = cancel, make(chan struct{}), false
	done := p.done
	go func() {
		err := p.run(ctx)
		p.mu.Lock()
		early := !p.stopping
		if early {
			if err == nil {
				err = ErrExitedEarly
			}
			p.log.Error("agent stopped on its own", "err", err)
		}
		p.err = err
		p.mu.Unlock()
		close(done)
		if early && p.onEarlyExit != nil {
			p.onEarlyExit()
		}
	}()
	return nil
}

// Stop implements service.Interface: it cancels the run function's
// context and waits for it to return, up to the stop timeout.
func (p *program) Stop(service.Service) error {
	p.mu.Lock()
	if p.done == nil {
		p.mu.Unlock()
		return nil
	}
	p.stopping = true
	cancel, done := p.cancel, p.done
	p.mu.Unlock()

	cancel()
	t := time.NewTimer(p.stopTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		return fmt.Errorf("the agent did not stop within %s", p.stopTimeout)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	err := p.err
	p.done, p.cancel = nil, nil
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// wait is kardianos/service's RunWait on Unix: it returns on SIGTERM or
// SIGINT, or when the run function returned on its own, so that Run goes
// on to Stop and returns the run function's error.
func (p *program) wait() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	defer signal.Stop(sig)
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return
	}
	select {
	case s := <-sig:
		p.log.Info("stopping on signal", "signal", s.String())
	case <-done:
	}
}
