package extension

import (
	"context"
	"errors"
	"fmt"
)

// ErrNoServiceManager is what a Service returns from Install, Start and the
// other control calls on a host without systemd or the SCM; the handler
// then runs the agent detached.
var ErrNoServiceManager = errors.New("no service manager on this host")

// Service states, as Status reports them.
const (
	ServiceRunning      = "running"
	ServiceStopped      = "stopped"
	ServiceNotInstalled = "not-installed"
)

// Service is the agent service as the handler drives it. cmd/agent fills
// it with internal/svc (CONTRACT10); tests with a fake that records calls.
type Service interface {
	Install(ctx context.Context) error   // idempotent; repairs a drifted definition
	Uninstall(ctx context.Context) error // idempotent
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
	Restart(ctx context.Context) error
	Status(ctx context.Context) (string, error)
	// The fallback where there is no service manager: the agent in its own
	// session, its pid in <stateDir>/agent.pid.
	StartDetached(ctx context.Context) (pid int, err error)
	StopDetached(ctx context.Context) error
	DetachedPid() (pid int, running bool)
}

// ServiceFactory builds the Service that runs exe (the agent binary's
// copy under <stateDir>/bin) with the config at configPath.
type ServiceFactory func(exe, configPath, stateDir string) Service

// action is what ensureAgent does to the service.
type action int

const (
	actNone action = iota
	actStart
	actRestart
)

// serviceAction decides, from the service's state and whether its config,
// secrets or binary changed, what to do: a running agent whose inputs did
// not change is left alone (enable restarts nothing it need not).
func serviceAction(status string, changed bool) action {
	switch {
	case status != ServiceRunning:
		return actStart
	case changed:
		return actRestart
	}
	return actNone
}

// ensureAgent installs the service (repairing its definition) and makes it
// run, restarting it only when changed. Without a service manager it runs
// the agent detached. It returns a sentence for the status message.
func ensureAgent(ctx context.Context, s Service, changed bool) (string, error) {
	err := s.Install(ctx)
	if errors.Is(err, ErrNoServiceManager) {
		return ensureDetached(ctx, s, changed)
	}
	if err != nil {
		return "", failf(CodeService, "install the berth-agent service: %w", err)
	}
	st, err := s.Status(ctx)
	if err != nil {
		return "", failf(CodeService, "query the berth-agent service: %w", err)
	}
	switch serviceAction(st, changed) {
	case actStart:
		if err := s.Start(ctx); err != nil {
			return "", failf(CodeService, "start the berth-agent service: %w", err)
		}
		return "the berth-agent service was started", nil
	case actRestart:
		if err := s.Restart(ctx); err != nil {
			return "", failf(CodeService, "restart the berth-agent service: %w", err)
		}
		return "the berth-agent service was restarted with the new settings", nil
	}
	return "the berth-agent service was already running with these settings", nil
}

func ensureDetached(ctx context.Context, s Service, changed bool) (string, error) {
	_, running := s.DetachedPid()
	st := ServiceStopped
	if running {
		st = ServiceRunning
	}
	act := serviceAction(st, changed)
	if act == actNone {
		pid, _ := s.DetachedPid()
		return fmt.Sprintf("no service manager on this host: the agent already runs detached (pid %d); it does not start again after a reboot", pid), nil
	}
	if act == actRestart {
		if err := s.StopDetached(ctx); err != nil {
			return "", failf(CodeService, "stop the detached agent: %w", err)
		}
	}
	pid, err := s.StartDetached(ctx)
	if err != nil {
		return "", failf(CodeService, "no service manager on this host, and starting the agent detached failed: %w", err)
	}
	return fmt.Sprintf("no service manager on this host: the agent was started detached (pid %d), not as a service; it does not start again after a reboot", pid), nil
}

// stopAgent stops the service and a detached agent, whichever runs.
func stopAgent(ctx context.Context, s Service) error {
	err := s.Stop(ctx)
	if err != nil && !errors.Is(err, ErrNoServiceManager) {
		if st, serr := s.Status(ctx); serr != nil || st != ServiceNotInstalled {
			return failf(CodeService, "stop the berth-agent service: %w", err)
		}
	}
	if _, running := s.DetachedPid(); running {
		if err := s.StopDetached(ctx); err != nil {
			return failf(CodeService, "stop the detached agent: %w", err)
		}
	}
	return nil
}
