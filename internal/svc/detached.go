package svc

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/berthhq/berth/internal/atomicfile"
)

// Detached describes the agent started without a service manager: its own
// session (it outlives the command that started it, and the guest agent's
// kill of that command's process group), stdin from the null device,
// stdout and stderr appended to LogFile, and its pid written to PidFile —
// the engine's supervised mode, for the agent itself.
type Detached struct {
	Executable string
	Arguments  []string
	LogFile    string // <stateDir>/logs/agent.out
	PidFile    string // <stateDir>/agent.pid
}

// Detached files under the state folder.
const (
	DetachedPidFile = "agent.pid"
	DetachedLogFile = "agent.out" // under the logs folder
)

// DetachedIn returns the Detached of the agent whose state folder is
// stateDir, running exe with args.
func DetachedIn(stateDir, exe string, args ...string) Detached {
	return Detached{
		Executable: exe,
		Arguments:  args,
		LogFile:    filepath.Join(stateDir, "logs", DetachedLogFile),
		PidFile:    filepath.Join(stateDir, DetachedPidFile),
	}
}

// earlyExitWait is how long StartDetached watches a new agent before it
// reports it started: an agent that cannot start (a broken config, a
// locked agent.db) exits within it, and the caller hears so instead of a
// pid that is already gone.
const earlyExitWait = 300 * time.Millisecond

// StartDetached starts the agent d describes and returns its pid. When the
// pid file names an agent that still runs, it starts nothing and returns
// that pid. A pid file whose process has gone, or whose pid now belongs to
// another process (told apart by the process's start time, which the pid
// file records), is stale and replaced.
//
// Two StartDetached calls at once (two handler commands, a handler and an
// operator) start one agent: a lock beside the pid file orders them.
func StartDetached(ctx context.Context, d Detached) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("start %s detached: %w", d.Executable, err)
	}
	unlock, err := lockBeside(d.PidFile)
	if err != nil {
		return 0, fmt.Errorf("start %s detached: %w", d.Executable, err)
	}
	defer unlock()
	if pid, running := DetachedPid(d.PidFile); running {
		return pid, nil
	}
	if err := os.MkdirAll(filepath.Dir(d.LogFile), 0o755); err != nil {
		return 0, fmt.Errorf("start %s detached: %w", d.Executable, err)
	}
	lf, err := os.OpenFile(d.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return 0, fmt.Errorf("start %s detached: open its log: %w", d.Executable, err)
	}
	defer lf.Close() // the child has its own descriptor
	cmd := exec.Command(d.Executable, d.Arguments...)
	cmd.Stdout, cmd.Stderr = lf, lf // Stdin nil: the null device
	// Not the caller's folder: the agent must not hold a mount busy.
	// Relative paths in Arguments would break, so callers pass absolute ones.
	cmd.Dir = detachDir
	cmd.SysProcAttr = detachAttr()
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start %s detached: %w", d.Executable, err)
	}
	pid := cmd.Process.Pid
	exited := make(chan error, 1)
	// Reap the child if it exits while this process lives; the goroutine
	// ends with the child.
	go func() { exited <- cmd.Wait() }()
	start, err := processStart(pid)
	if err == nil {
		err = atomicfile.Write(d.PidFile, []byte(formatPidFile(pid, start)), 0o644)
	}
	if err != nil {
		_ = cmd.Process.Kill()
		return 0, fmt.Errorf("start %s detached: record pid %d: %w", d.Executable, pid, err)
	}
	select {
	case err := <-exited:
		_ = os.Remove(d.PidFile)
		return 0, fmt.Errorf("start %s detached: it exited at once (%v); its output is in %s", d.Executable, err, d.LogFile)
	case <-time.After(earlyExitWait):
	case <-ctx.Done():
	}
	return pid, nil
}

// RecordPid writes pidFile for a process this one started (the self-update
// launcher's agent), in DetachedPid's format, so that a later process can
// find it and StopDetached it across pid reuse.
func RecordPid(pidFile string, pid int) error {
	start, err := processStart(pid)
	if err != nil {
		return fmt.Errorf("record pid %d in %s: %w", pid, pidFile, err)
	}
	if err := atomicfile.Write(pidFile, []byte(formatPidFile(pid, start)), 0o644); err != nil {
		return fmt.Errorf("record pid %d in %s: %w", pid, pidFile, err)
	}
	return nil
}

// lockBeside takes an exclusive lock on pidFile+".lock", waiting for it,
// and returns its release. The lock is the operating system's (flock,
// LockFileEx): a holder that dies releases it.
func lockBeside(pidFile string) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(pidFile), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(pidFile+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open the pid file's lock: %w", err)
	}
	if err := lockFile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, nil // closing releases the lock
}

// DetachedPid reads pidFile and reports the pid it names and whether that
// process still runs as the one that was started.
func DetachedPid(pidFile string) (pid int, running bool) {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return 0, false
	}
	pid, start, err := parsePidFile(string(b))
	if err != nil {
		return 0, false
	}
	got, err := processStart(pid)
	return pid, err == nil && got == start
}

// ErrStopTimeout is StopDetached's error when the agent outlived SIGKILL.
var ErrStopTimeout = errors.New("the detached agent did not exit")

// StopDetached stops the agent pidFile names: a graceful stop (SIGTERM on
// Unix), then a kill after timeout; it removes the pid file. An agent that
// is not running (no pid file, or a stale one) is already stopped.
func StopDetached(ctx context.Context, pidFile string, timeout time.Duration) error {
	pid, running := DetachedPid(pidFile)
	if !running {
		if err := os.Remove(pidFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("stop detached agent: remove stale %s: %w", pidFile, err)
		}
		return nil
	}
	if err := terminate(pid); err != nil {
		return fmt.Errorf("stop detached agent (pid %d): %w", pid, err)
	}
	if err := waitGone(ctx, pidFile, timeout); err != nil {
		if kerr := kill(pid); kerr != nil {
			return fmt.Errorf("stop detached agent (pid %d): kill after %s: %w", pid, timeout, kerr)
		}
		if err := waitGone(ctx, pidFile, 5*time.Second); err != nil {
			return fmt.Errorf("stop detached agent (pid %d): %w", pid, err)
		}
	}
	if err := os.Remove(pidFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("stop detached agent: remove %s: %w", pidFile, err)
	}
	return nil
}

// waitGone polls until the process pidFile names no longer runs.
func waitGone(ctx context.Context, pidFile string, timeout time.Duration) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, running := DetachedPid(pidFile); !running {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return fmt.Errorf("%w within %s", ErrStopTimeout, timeout)
		case <-tick.C:
		}
	}
}

// formatPidFile is the pid file's content: the pid on the first line, as
// every tool expects, and the process's start time on the second.
func formatPidFile(pid int, start string) string {
	return strconv.Itoa(pid) + "\n" + start + "\n"
}

// parsePidFile reads formatPidFile's output. A pid file is outside data
// (anyone with write access to the state folder, a crash mid-write on a
// file system without atomic rename): anything but a positive pid and a
// start time is refused.
func parsePidFile(s string) (pid int, start string, err error) {
	if len(s) > 256 {
		return 0, "", errors.New("pid file too long")
	}
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	if len(lines) != 2 {
		return 0, "", fmt.Errorf("pid file has %d lines; want 2", len(lines))
	}
	pid, err = strconv.Atoi(lines[0])
	if err != nil || pid <= 0 {
		return 0, "", fmt.Errorf("pid file: %q is not a pid", lines[0])
	}
	start = lines[1]
	if start == "" || strings.ContainsFunc(start, func(r rune) bool { return r < '0' || r > '9' }) {
		return 0, "", fmt.Errorf("pid file: %q is not a start time", start)
	}
	return pid, start, nil
}
