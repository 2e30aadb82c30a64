package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/svc"
	"golang.org/x/sys/windows/svc/mgr"
)

// NewRunner returns the Windows service runner: every Windows host has the
// Service Control Manager.
func NewRunner(flavorDir string, d Daemon, log *slog.Logger) Runner {
	return &SCM{Service: d.Name, Logger: log}
}

// SCM runs the engine as a Windows service whose binary path Berth points at
// the active version's folder. dockerd and containerd both run as services
// with --run-service, as their own --register-service would set up.
type SCM struct {
	Service string
	Logger  *slog.Logger
}

var _ Runner = (*SCM)(nil)

// Kind is "scm".
func (s *SCM) Kind() string { return "scm" }

func (s *SCM) binaryPath(d Daemon) string {
	args := append([]string{d.Path}, d.Args...)
	args = append(args, "--run-service", "--service-name", s.Service)
	if d.LogFile != "" {
		args = append(args, "--log-file", d.LogFile)
	}
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = windows.EscapeArg(a)
	}
	return strings.Join(quoted, " ")
}

// Start creates or repoints the service at d and starts it, with recovery
// actions that restart it on any failure.
func (s *SCM) Start(ctx context.Context, d Daemon) error {
	m, err := mgr.Connect()
	if err != nil {
		return fmt.Errorf("connect to the service manager: %w", err)
	}
	defer m.Disconnect()
	bin := s.binaryPath(d)
	service, err := m.OpenService(s.Service)
	if err != nil {
		service, err = m.CreateService(s.Service, d.Path, mgr.Config{
			StartType:   mgr.StartAutomatic,
			DisplayName: "Container engine " + d.Name + " (managed by Berth)",
			Description: "Runs the container engine that berth-agent installs and upgrades.",
		})
		if err != nil {
			return fmt.Errorf("create service %s: %w", s.Service, err)
		}
	}
	defer service.Close()
	cfg, err := service.Config()
	if err != nil {
		return fmt.Errorf("read service %s: %w", s.Service, err)
	}
	cfg.BinaryPathName = bin
	cfg.StartType = mgr.StartAutomatic
	if err := service.UpdateConfig(cfg); err != nil {
		return fmt.Errorf("point service %s at %s: %w", s.Service, d.Path, err)
	}
	actions := []mgr.RecoveryAction{
		{Type: mgr.ServiceRestart, Delay: 5 * time.Second},
		{Type: mgr.ServiceRestart, Delay: 15 * time.Second},
		{Type: mgr.ServiceRestart, Delay: 60 * time.Second},
	}
	if err := service.SetRecoveryActions(actions, 24*60*60); err != nil {
		return fmt.Errorf("set recovery actions of %s: %w", s.Service, err)
	}
	if err := service.SetRecoveryActionsOnNonCrashFailures(true); err != nil {
		return fmt.Errorf("set recovery actions of %s: %w", s.Service, err)
	}
	if err := service.Start(); err != nil {
		return fmt.Errorf("start service %s: %w", s.Service, err)
	}
	return nil
}

// Stop stops the service and waits until the SCM reports it stopped.
func (s *SCM) Stop(ctx context.Context) error {
	m, err := mgr.Connect()
	if err != nil {
		return fmt.Errorf("connect to the service manager: %w", err)
	}
	defer m.Disconnect()
	service, err := m.OpenService(s.Service)
	if err != nil {
		return nil // not installed: nothing runs
	}
	defer service.Close()
	st, err := service.Query()
	if err != nil {
		return fmt.Errorf("query service %s: %w", s.Service, err)
	}
	if st.State == svc.Stopped {
		return nil
	}
	if st.State != svc.StopPending {
		if _, err := service.Control(svc.Stop); err != nil && !errors.Is(err, windows.ERROR_SERVICE_NOT_ACTIVE) {
			return fmt.Errorf("stop service %s: %w", s.Service, err)
		}
	}
	for {
		st, err := service.Query()
		if err != nil {
			return fmt.Errorf("query service %s: %w", s.Service, err)
		}
		if st.State == svc.Stopped {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stop service %s: %w", s.Service, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// State reports whether the service runs and which executable it points at.
func (s *SCM) State(ctx context.Context) (RunState, error) {
	m, err := mgr.Connect()
	if err != nil {
		return RunState{}, fmt.Errorf("connect to the service manager: %w", err)
	}
	defer m.Disconnect()
	service, err := m.OpenService(s.Service)
	if err != nil {
		return RunState{Detail: "service not installed"}, nil
	}
	defer service.Close()
	st, err := service.Query()
	if err != nil {
		return RunState{}, fmt.Errorf("query service %s: %w", s.Service, err)
	}
	cfg, err := service.Config()
	if err != nil {
		return RunState{}, fmt.Errorf("read service %s: %w", s.Service, err)
	}
	exe := firstArg(cfg.BinaryPathName)
	if st.State != svc.Running {
		return RunState{Exe: exe, Detail: fmt.Sprintf("service state %d", st.State)}, nil
	}
	return RunState{Running: true, PID: int(st.ProcessId), Exe: exe}, nil
}

// firstArg takes the executable out of a service command line.
func firstArg(cmdline string) string {
	if strings.HasPrefix(cmdline, `"`) {
		if end := strings.Index(cmdline[1:], `"`); end >= 0 {
			return cmdline[1 : end+1]
		}
	}
	exe, _, _ := strings.Cut(cmdline, " ")
	return exe
}
