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

// hasServiceManager: every Windows host has the SCM.
func hasServiceManager() bool { return true }

// install creates the service from WindowsService(s.cfg), or brings an
// existing one back to it: the SCM keeps a service's settings until told
// otherwise, so a hand-edited or older definition is rewritten field by
// field where it drifted.
func (s *Service) install(ctx context.Context) (InstallChange, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	want := WindowsService(s.cfg)
	m, err := mgr.Connect()
	if err != nil {
		return "", fmt.Errorf("connect to the service manager: %w", err)
	}
	defer m.Disconnect()
	sv, err := m.OpenService(want.Name)
	if err != nil {
		sv, err = m.CreateService(want.Name, s.cfg.Executable, mgrConfig(want), s.cfg.Arguments...)
		if err != nil {
			return "", fmt.Errorf("create service: %w", err)
		}
		defer sv.Close()
		// The agent's logs go to the Event Log under its own source.
		if err := registerEventSource(want.Name); err != nil {
			return "", err
		}
		return Created, setRecovery(sv, want)
	}
	defer sv.Close()
	// An existing service (an MSI's, or one from before the source was
	// registered) gets the source too.
	if err := registerEventSource(want.Name); err != nil {
		return "", err
	}
	got, err := readDefinition(sv)
	if err != nil {
		return "", err
	}
	drift := want.Drift(got)
	if len(drift) == 0 {
		return Unchanged, nil
	}
	s.log.Warn("service definition drifted; rewriting it", "name", want.Name, "fields", drift)
	cur, err := sv.Config()
	if err != nil {
		return "", fmt.Errorf("read service config: %w", err)
	}
	upd := mgrConfig(want)
	upd.ServiceType, upd.ErrorControl, upd.Dependencies = cur.ServiceType, cur.ErrorControl, cur.Dependencies
	upd.BinaryPathName = want.BinaryPathName
	if err := sv.UpdateConfig(upd); err != nil {
		return "", fmt.Errorf("update service config: %w", err)
	}
	return Repaired, setRecovery(sv, want)
}

// mgrConfig is the part of d that CreateService and UpdateConfig take.
func mgrConfig(d WindowsDefinition) mgr.Config {
	return mgr.Config{
		ServiceType:      windows.SERVICE_WIN32_OWN_PROCESS,
		StartType:        mgr.StartAutomatic,
		ErrorControl:     mgr.ErrorNormal,
		DisplayName:      d.DisplayName,
		Description:      d.Description,
		ServiceStartName: d.Account,
		DelayedAutoStart: d.DelayedAutoStart,
	}
}

// readDefinition reads back what the SCM holds for a service.
func readDefinition(sv *mgr.Service) (WindowsDefinition, error) {
	c, err := sv.Config()
	if err != nil {
		return WindowsDefinition{}, fmt.Errorf("read service config: %w", err)
	}
	d := WindowsDefinition{
		Name: sv.Name, DisplayName: c.DisplayName, Description: c.Description,
		BinaryPathName: c.BinaryPathName, DelayedAutoStart: c.DelayedAutoStart,
		Account: c.ServiceStartName, StartType: startTypeName(c.StartType),
	}
	acts, err := sv.RecoveryActions()
	if err != nil {
		return d, fmt.Errorf("read recovery actions: %w", err)
	}
	for _, a := range acts {
		action := "restart"
		if a.Type != mgr.ServiceRestart {
			action = fmt.Sprintf("action-%d", a.Type)
		}
		d.Recovery = append(d.Recovery, RecoveryStep{Action: action, Delay: a.Delay})
	}
	if d.RecoveryResetSeconds, err = sv.ResetPeriod(); err != nil {
		return d, fmt.Errorf("read recovery reset period: %w", err)
	}
	if d.RecoveryOnNonCrashFailures, err = sv.RecoveryActionsOnNonCrashFailures(); err != nil {
		return d, fmt.Errorf("read recovery on non-crash failures: %w", err)
	}
	return d, nil
}

func startTypeName(t uint32) string {
	switch t {
	case mgr.StartAutomatic:
		return "automatic"
	case mgr.StartManual:
		return "manual"
	case mgr.StartDisabled:
		return "disabled"
	}
	return fmt.Sprintf("start-type-%d", t)
}

// setRecovery sets the recovery policy of d: the restart actions with their
// reset period, applied also when the agent stops with a non-zero exit
// code, not only when its process dies.
func setRecovery(sv *mgr.Service, d WindowsDefinition) error {
	actions := make([]mgr.RecoveryAction, len(d.Recovery))
	for i, r := range d.Recovery {
		actions[i] = mgr.RecoveryAction{Type: mgr.ServiceRestart, Delay: r.Delay}
	}
	if err := sv.SetRecoveryActions(actions, d.RecoveryResetSeconds); err != nil {
		return fmt.Errorf("set recovery actions: %w", err)
	}
	if err := sv.SetRecoveryActionsOnNonCrashFailures(d.RecoveryOnNonCrashFailures); err != nil {
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
