package svc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/berthhq/berth/internal/atomicfile"
)

// systemdRunning is the directory systemd creates at boot when it is the
// init system (sd_booted(3)).
const systemdRunning = "/run/systemd/system"

// hasServiceManager reports whether systemd manages this host. Nothing else
// counts: kardianos/service would also pick SysV, upstart or OpenRC when
// their files merely exist (a container image with /etc/init.d has them),
// install a script no init ever runs, and report success; a host where the
// agent would not come back after a crash or a reboot must hear "no service
// manager" instead and use `run` under its own supervisor or the detached
// start. systemctl present without systemd running (a container again)
// does not count either.
func hasServiceManager() bool {
	fi, err := os.Stat(systemdRunning)
	return err == nil && fi.IsDir()
}

// install writes the agent's unit when it is missing or differs from the
// wanted one, reloads systemd after a write, and enables the unit (which
// also repairs a unit someone disabled).
func (s *Service) install(ctx context.Context) (InstallChange, error) {
	unit, err := RenderUnit(s.cfg)
	if err != nil {
		return "", err
	}
	path := filepath.Join(s.unitDir, UnitFile(s.cfg.Name))
	cur, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("read the installed unit: %w", err)
	}
	ch := unitChange(err == nil, cur, unit)
	run := s.systemctl
	if run == nil {
		run = Systemctl
	}
	if ch != Unchanged {
		if err := atomicfile.Write(path, unit, 0o644); err != nil {
			return "", err
		}
		if err := run(ctx, "daemon-reload"); err != nil {
			return "", err
		}
	}
	if err := run(ctx, "enable", UnitFile(s.cfg.Name)); err != nil {
		return "", err
	}
	return ch, nil
}

// Systemctl runs systemctl with args; its stderr goes into the error. The
// engine's systemd runner uses it too.
func Systemctl(ctx context.Context, args ...string) error {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "systemctl", args...)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("systemctl %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return nil
}
