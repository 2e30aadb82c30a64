package engine

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// NewRunner picks how the engine runs on this host: a systemd unit where
// systemd manages the machine, else a daemon the agent supervises.
func NewRunner(flavorDir string, d Daemon, log *slog.Logger) Runner {
	exe := strings.TrimSuffix(filepath.Base(d.Path), ".exe")
	if fi, err := os.Stat("/run/systemd/system"); err == nil && fi.IsDir() {
		return &Systemd{Unit: "berth-" + d.Name + ".service", Dir: flavorDir, Logger: log}
	}
	return &Supervised{Dir: flavorDir, Exe: exe, StopTimeout: 60 * time.Second, Logger: log}
}
