package selfupdate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/gofrs/flock"

	"github.com/berthhq/berth/internal/statedb"
	"github.com/berthhq/berth/internal/svc"
	"github.com/berthhq/berth/telemetry/outbox"
)

// Events is where the launcher's and the updater's events go: agent.db's
// outbox, which the running agent sends to control.
type Events interface {
	Event(ctx context.Context, kind, message string, fields map[string]string) error
}

// WALinuxAgent's limits: a version that restarts this many times within
// crashWindow is blacklisted.
const (
	crashLimit  = 3
	crashWindow = 5 * time.Minute
)

// LauncherOptions wire a Launcher.
type LauncherOptions struct {
	DB       *statedb.DB
	StateDir string
	// Self is the launcher's own executable, and Version its version: what
	// runs when no staged version may.
	Self    string
	Version string
	// Args are the agent's arguments: run --config PATH.
	Args []string
	// HealthURL is the agent's /healthz (HealthURL of health.listen).
	HealthURL string
	// Outbox is agent.db's outbox when control.url is set: a new version
	// must get a report acknowledged. Nil without control.
	Outbox        *outbox.Outbox
	HealthTimeout time.Duration
	Events        Events
	Logger        *slog.Logger
	// Stdout and Stderr receive the agent's output (the service's).
	Stdout, Stderr io.Writer
	// Poll is how often the launcher looks at the selection and probes a
	// version on probation; default 500ms.
	Poll time.Duration
	// StopGrace bounds an agent's clean stop before it is killed; default 20s.
	StopGrace time.Duration
}

// Launcher is the stable process the service runs: it runs one agent at a
// time and switches, gates and falls back as the selection says.
type Launcher struct {
	o        LauncherOptions
	log      *slog.Logger
	gateHTTP *http.Client
	// restarts are recent unasked exits, per version.
	restarts map[string][]time.Time
	// fallbackFrom names the version given up on, for the next start's
	// agent.fallback event.
	fallbackFrom, fallbackWhy string
	// waiting names the version whose gate waits for control (said once).
	waiting string
}

// NewLauncher checks the options and fills the defaults.
func NewLauncher(o LauncherOptions) (*Launcher, error) {
	if o.DB == nil || o.StateDir == "" || o.Self == "" || o.Version == "" {
		return nil, errors.New("new launcher: DB, StateDir, Self and Version are required")
	}
	if o.Poll <= 0 {
		o.Poll = 500 * time.Millisecond
	}
	if o.StopGrace <= 0 {
		o.StopGrace = 20 * time.Second
	}
	if o.HealthTimeout <= 0 {
		o.HealthTimeout = DefaultHealthTimeout
	}
	if o.Stdout == nil {
		o.Stdout = io.Discard
	}
	if o.Stderr == nil {
		o.Stderr = io.Discard
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Launcher{o: o, log: log.With("component", "launcher"), gateHTTP: &http.Client{},
		restarts: map[string][]time.Time{}}, nil
}

// childPidFile names the agent a launcher runs, so that the next launcher
// stops one a killed launcher left behind before it starts another.
const childPidFile = "child.pid"

// Run runs agents until ctx ends, then stops the one that runs. Only one
// launcher runs per state folder.
func (l *Launcher) Run(ctx context.Context) error {
	unlock, err := l.lock()
	if err != nil {
		return err
	}
	defer unlock()
	pidFile := filepath.Join(l.o.StateDir, AgentsDir, childPidFile)
	if err := svc.StopDetached(ctx, pidFile, l.o.StopGrace); err != nil {
		l.log.Error("stop the agent a previous launcher left running", "err", err)
	}
	if err := l.adopt(ctx); err != nil {
		return err
	}
	l.log.Info("launcher running", "version", l.o.Version, "state_dir", l.o.StateDir)
	for ctx.Err() == nil {
		c, err := l.pick(ctx)
		if err != nil {
			l.log.Error("choose the agent version to run; retrying", "err", err)
			sleep(ctx, 5*time.Second)
			continue
		}
		l.runOne(ctx, c, pidFile)
	}
	return nil
}

// lock takes <stateDir>/agents/launcher.lock, held while the launcher
// runs; the operating system releases it when the launcher dies.
func (l *Launcher) lock() (func(), error) {
	dir := filepath.Join(l.o.StateDir, AgentsDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("launcher: %w", err)
	}
	fl := flock.New(filepath.Join(dir, "launcher.lock"))
	ok, err := fl.TryLock()
	if err != nil {
		return nil, fmt.Errorf("launcher: lock %s: %w", fl.Path(), err)
	}
	if !ok {
		return nil, fmt.Errorf("launcher: another berth-agent launcher runs for %s (it holds %s); stop it first (berth-agent service stop)", l.o.StateDir, fl.Path())
	}
	return func() { _ = fl.Unlock() }, nil
}

// LauncherRuns reports whether a launcher runs for stateDir.
func LauncherRuns(stateDir string) bool {
	fl := flock.New(filepath.Join(stateDir, AgentsDir, "launcher.lock"))
	ok, err := fl.TryLock()
	if err != nil {
		return false
	}
	if ok {
		_ = fl.Unlock()
		return false
	}
	return true
}

// adopt starts over from the launcher's own version when the launcher
// changed (an MSI or .deb upgrade is the operator's explicit choice).
func (l *Launcher) adopt(ctx context.Context) error {
	var from string
	_, err := mutate(ctx, l.o.DB, func(s *State) error {
		if s.Launcher == l.o.Version {
			return nil
		}
		from = s.Launcher
		s.Launcher, s.Selected, s.Good, s.Trial = l.o.Version, l.o.Version, l.o.Version, nil
		return nil
	})
	if err != nil {
		return fmt.Errorf("launcher: %w", err)
	}
	if from != "" {
		l.event(ctx, "agent.launcher.changed", fmt.Sprintf("the installed berth-agent changed from %s to %s; it runs itself until told otherwise", from, l.o.Version),
			map[string]string{"from": from, "to": l.o.Version})
	}
	return nil
}

func (l *Launcher) event(ctx context.Context, kind, msg string, fields map[string]string) {
	l.log.Info(msg, "event", kind)
	if l.o.Events == nil {
		return
	}
	if err := l.o.Events.Event(ctx, kind, msg, fields); err != nil {
		l.log.Error("queue an event for control", "event", kind, "err", err)
	}
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
