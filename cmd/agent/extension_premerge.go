package main

// PREMERGE(i10-svc): internal/svc gains Detached, StartDetached,
// StopDetached and DetachedPid (CONTRACT10) on branch i10-svc. Until it is
// merged, these stand-ins keep the extension handler building and
// testable here. At merge: delete extension_premerge*.go and in
// extension.go replace detachedAgent with svc.Detached, startDetached,
// stopDetached and detachedPid with svc.StartDetached, svc.StopDetached and
// svc.DetachedPid.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// detachedAgent is svc.Detached.
type detachedAgent struct {
	Executable string
	Arguments  []string
	LogFile    string
	PidFile    string
}

func startDetached(ctx context.Context, d detachedAgent) (int, error) {
	if pid, running := detachedPid(d.PidFile); running {
		return pid, nil
	}
	if err := os.MkdirAll(filepath.Dir(d.LogFile), 0o755); err != nil {
		return 0, fmt.Errorf("start the agent detached: %w", err)
	}
	out, err := os.OpenFile(d.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, fmt.Errorf("start the agent detached: %w", err)
	}
	defer out.Close()
	cmd := exec.Command(d.Executable, d.Arguments...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = detachedAttr()
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start the agent detached: %w", err)
	}
	pid := cmd.Process.Pid
	cmd.Process.Release()
	if err := os.WriteFile(d.PidFile, []byte(strconv.Itoa(pid)), 0o644); err != nil {
		return pid, fmt.Errorf("start the agent detached: record its pid: %w", err)
	}
	return pid, nil
}

func detachedPid(pidFile string) (int, bool) {
	data, err := os.ReadFile(pidFile)
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, processAlive(pid)
}

func stopDetached(ctx context.Context, pidFile string, timeout time.Duration) error {
	pid, running := detachedPid(pidFile)
	if !running {
		os.Remove(pidFile)
		return nil
	}
	if err := terminate(pid, false); err != nil {
		return fmt.Errorf("stop the detached agent (pid %d): %w", pid, err)
	}
	deadline := time.Now().Add(timeout)
	for processAlive(pid) {
		if time.Now().After(deadline) || ctx.Err() != nil {
			if err := terminate(pid, true); err != nil {
				return fmt.Errorf("kill the detached agent (pid %d): %w", pid, err)
			}
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := os.Remove(pidFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
