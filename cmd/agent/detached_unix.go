//go:build !windows

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/berthhq/berth/internal/atomicfile"
)

// startDetached starts the agent in its own session, stdin from /dev/null,
// its output appended to d.LogFile and its pid written to d.PidFile, like
// the engine's supervised mode; a no-op when the pid file names a live
// agent. It stands in for internal/svc's StartDetached of issue 10, whose
// signature it has, until that lands.
func startDetached(ctx context.Context, d detachedAgent) (int, error) {
	if pid, ok := detachedPid(d.PidFile); ok {
		return pid, nil
	}
	if err := os.MkdirAll(filepath.Dir(d.LogFile), 0o755); err != nil {
		return 0, fmt.Errorf("start the agent detached: %w", err)
	}
	lf, err := os.OpenFile(d.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return 0, fmt.Errorf("start the agent detached: %w", err)
	}
	defer lf.Close() // the child has its own descriptor
	cmd := exec.Command(d.Executable, d.Arguments...)
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start the agent detached (%s): %w", d, err)
	}
	pid := cmd.Process.Pid
	// Released, not waited for: the agent outlives this process.
	_ = cmd.Process.Release()
	if err := atomicfile.Write(d.PidFile, []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		return pid, fmt.Errorf("the agent runs detached (pid %d) but its pid file could not be written: %w", pid, err)
	}
	return pid, nil
}

// detachedPid reads the pid file and says whether that process runs and
// is a berth-agent (a pid reused by another program does not count).
func detachedPid(pidFile string) (int, bool) {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	if syscall.Kill(pid, 0) != nil {
		return pid, false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err == nil {
		if i := strings.LastIndexByte(string(stat), ')'); i > 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
			return pid, false // a zombie is not running
		}
	}
	self, err1 := os.Executable()
	exe, err2 := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
	if err1 == nil && err2 == nil && filepath.Base(exe) != filepath.Base(self) {
		return pid, false
	}
	return pid, true
}
