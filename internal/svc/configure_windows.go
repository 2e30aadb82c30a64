package svc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/svc/eventlog"
	"golang.org/x/sys/windows/svc/mgr"
)

func setupHost(ctx context.Context, cfg Config, stateDir string) (HostSetup, error) {
	var hs HostSetup
	if err := ctx.Err(); err != nil {
		return hs, err
	}
	if err := lockDir(stateDir); err != nil {
		return hs, err
	}
	hs.StateDirACL = StateDirSDDL
	if err := registerEventSource(cfg.Name); err != nil {
		return hs, err
	}
	hs.EventSource = cfg.Name
	st, err := configureService(cfg)
	hs.Service = st
	return hs, err
}

// lockDir creates dir and sets StateDirSDDL on it; SetNamedSecurityInfo
// passes the inheritable entries down to what is already inside.
func lockDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create the state folder: %w", err)
	}
	sd, err := windows.SecurityDescriptorFromString(StateDirSDDL)
	if err != nil {
		return fmt.Errorf("parse the state folder's ACL: %w", err)
	}
	dacl, _, err := sd.DACL()
	if err != nil {
		return fmt.Errorf("read the state folder's ACL: %w", err)
	}
	err = windows.SetNamedSecurityInfo(dir, windows.SE_FILE_OBJECT,
		windows.DACL_SECURITY_INFORMATION|windows.PROTECTED_DACL_SECURITY_INFORMATION, nil, nil, dacl, nil)
	if err != nil {
		return fmt.Errorf("set the ACL of %s (run as an administrator): %w", dir, err)
	}
	return nil
}

// registerEventSource registers the agent's Event Log source; one that
// exists (an earlier install) is fine.
func registerEventSource(name string) error {
	err := eventlog.InstallAsEventCreate(name, eventlog.Error|eventlog.Warning|eventlog.Info)
	if err != nil && !strings.Contains(err.Error(), "exists") {
		return fmt.Errorf("register the event log source %s: %w", name, err)
	}
	return nil
}

// configureService gives an installed service (the MSI's ServiceInstall)
// the delayed start, description and recovery actions of
// WindowsService(cfg), leaving its command line as installed.
func configureService(cfg Config) (string, error) {
	want := WindowsService(cfg)
	m, err := mgr.Connect()
	if err != nil {
		return "", fmt.Errorf("connect to the service manager: %w", err)
	}
	defer m.Disconnect()
	sv, err := m.OpenService(want.Name)
	if errors.Is(err, windows.ERROR_SERVICE_DOES_NOT_EXIST) {
		return "not-installed", nil
	}
	if err != nil {
		return "", fmt.Errorf("open service %s: %w", want.Name, err)
	}
	defer sv.Close()
	cur, err := sv.Config()
	if err != nil {
		return "", fmt.Errorf("read service config: %w", err)
	}
	cur.DelayedAutoStart = want.DelayedAutoStart
	if cur.Description == "" {
		cur.Description = want.Description
	}
	if err := sv.UpdateConfig(cur); err != nil {
		return "", fmt.Errorf("update service config: %w", err)
	}
	return "configured", setRecovery(sv, want)
}
