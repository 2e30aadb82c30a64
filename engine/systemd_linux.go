package engine

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/berthhq/berth/internal/atomicfile"
	"github.com/berthhq/berth/internal/svc"
)

// Systemd runs the engine as a systemd unit that Berth writes.
type Systemd struct {
	Unit   string // "berth-docker.service"
	Dir    string // the flavor's folder
	Logger *slog.Logger
}

var _ Runner = (*Systemd)(nil)

// Kind is "systemd".
func (s *Systemd) Kind() string { return "systemd" }

func (s *Systemd) unitPath() string { return filepath.Join("/etc/systemd/system", s.Unit) }

// conflicting are, per daemon, the distribution's units that would serve the
// same socket (Debian's containerd.service listens on containerd's default
// socket and reads /etc/containerd, not the config Berth writes).
var conflicting = map[string][]string{
	"docker":     {"docker.socket", "docker.service"},
	"containerd": {"containerd.service"},
}

// Start writes the unit for d, stops the distribution's own engine units so
// they do not fight over the socket, and starts the unit.
func (s *Systemd) Start(ctx context.Context, d Daemon) error {
	changed, err := atomicfile.WriteIfChanged(s.unitPath(), []byte(SystemdUnit(d)), 0o644)
	if err != nil {
		return err
	}
	if changed {
		if err := systemctl(ctx, "daemon-reload"); err != nil {
			return err
		}
	}
	for _, u := range conflicting[d.Name] {
		if u == s.Unit {
			continue
		}
		if systemctl(ctx, "is-active", "--quiet", u) == nil {
			if s.Logger != nil {
				s.Logger.Warn("stopping and disabling the distribution's engine unit: berth manages the engine", "unit", u)
			}
			_ = systemctl(ctx, "disable", "--now", u)
		}
	}
	if err := systemctl(ctx, "enable", s.Unit); err != nil {
		return err
	}
	return systemctl(ctx, "start", s.Unit)
}

// Stop stops the unit; containers keep running under live-restore.
func (s *Systemd) Stop(ctx context.Context) error {
	if _, err := os.Stat(s.unitPath()); os.IsNotExist(err) {
		return nil
	}
	return systemctl(ctx, "stop", s.Unit)
}

// State asks systemd for the unit's main process.
func (s *Systemd) State(ctx context.Context) (RunState, error) {
	if _, err := os.Stat(s.unitPath()); os.IsNotExist(err) {
		return RunState{}, nil
	}
	out, err := exec.CommandContext(ctx, "systemctl", "show", "-p", "MainPID", "-p", "ActiveState", "-p", "Result", s.Unit).Output()
	if err != nil {
		return RunState{}, fmt.Errorf("systemctl show %s: %w", s.Unit, err)
	}
	props := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			props[k] = v
		}
	}
	pid, _ := strconv.Atoi(props["MainPID"])
	if props["ActiveState"] != "active" || pid == 0 {
		return RunState{Detail: "unit " + props["ActiveState"] + " (" + props["Result"] + ")"}, nil
	}
	exe, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "exe"))
	if err != nil {
		return RunState{}, fmt.Errorf("engine process %d: %w", pid, err)
	}
	return RunState{Running: true, PID: pid, Exe: strings.TrimSuffix(exe, " (deleted)")}, nil
}

// systemctl is the one systemctl runner of the agent.
var systemctl = svc.Systemctl
