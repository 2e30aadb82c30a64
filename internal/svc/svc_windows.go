package svc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/svc"
	"golang.org/x/sys/windows/svc/mgr"
)

// afterInstall sets the recovery policy kardianos/service cannot: three
// restart actions (5 s, 10 s, 30 s, the last repeating) with a one-day
// reset, applied also when the agent stops with a non-zero exit code, not
// only when its process dies.
func afterInstall(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m, err := mgr.Connect()
	if err != nil {
		return fmt.Errorf("connect to the service manager: %w", err)
	}
	defer m.Disconnect()
	s, err := m.OpenService(name)
	if err != nil {
		return fmt.Errorf("open service: %w", err)
	}
	defer s.Close()
	actions := make([]mgr.RecoveryAction, len(recoveryDelays))
	for i, d := range recoveryDelays {
		actions[i] = mgr.RecoveryAction{Type: mgr.ServiceRestart, Delay: d}
	}
	if err := s.SetRecoveryActions(actions, uint32(recoveryResetPeriod/time.Second)); err != nil {
		return fmt.Errorf("set recovery actions: %w", err)
	}
	if err := s.SetRecoveryActionsOnNonCrashFailures(true); err != nil {
		return fmt.Errorf("set recovery on non-crash failures: %w", err)
	}
	return nil
}

// openService opens a service with just the access asked for, which a
// non-administrator may hold where full access is denied.
func openService(name string, access uint32) (*mgr.Mgr, *mgr.Service, error) {
	h, err := windows.OpenSCManager(nil, nil, windows.SC_MANAGER_CONNECT)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to the service manager: %w", err)
	}
	m := &mgr.Mgr{Handle: h}
	p, err := windows.UTF16PtrFromString(name)
	if err != nil {
		m.Disconnect()
		return nil, nil, err
	}
	sh, err := windows.OpenService(h, p, access)
	if err != nil {
		m.Disconnect()
		return nil, nil, fmt.Errorf("open service: %w", err)
	}
	return m, &mgr.Service{Name: name, Handle: sh}, nil
}

// stop asks the SCM to stop the service and waits until it has stopped,
// ctx is done, or the agent's stop timeout and some slack have passed.
// (kardianos/service's own wait loops forever on a service that hangs.)
func (s *Service) stop(ctx context.Context) error {
	m, sv, err := openService(s.cfg.Name, windows.SERVICE_STOP|windows.SERVICE_QUERY_STATUS)
	if err != nil {
		return err
	}
	defer m.Disconnect()
	defer sv.Close()
	st, err := sv.Control(svc.Stop)
	if errors.Is(err, windows.ERROR_SERVICE_NOT_ACTIVE) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("send stop: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StopTimeout+10*time.Second)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for st.State != svc.Stopped {
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for the service to stop: %w", ctx.Err())
		case <-tick.C:
		}
		if st, err = sv.Query(); err != nil {
			return fmt.Errorf("query service: %w", err)
		}
	}
	return nil
}

// exitedEarly runs, in the service's own process, when the run function
// returned before the SCM asked it to stop. kardianos/service only ends a
// service on an SCM command, so the service asks the SCM to stop itself;
// Stop then returns the run function's error, the service stops with a
// non-zero exit code, and the recovery actions restart it. Should the SCM
// refuse, the process exits, which the SCM treats as a crash.
func (s *Service) exitedEarly() {
	m, sv, err := openService(s.cfg.Name, windows.SERVICE_STOP)
	if err == nil {
		_, err = sv.Control(svc.Stop)
		sv.Close()
		m.Disconnect()
	}
	if err != nil {
		s.log.Error("cannot ask the service manager to stop the agent; exiting", "err", err)
		os.Exit(1)
	}
}
