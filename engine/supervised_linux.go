package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Supervised runs the engine daemon as a detached process of its own session
// where the host has no service manager. It finds the daemon again by what
// runs, not by a pid file it keeps: any process whose executable lies under
// the flavor's folder is the engine. That survives an agent killed between
// starting the daemon and writing anything down, and a daemon started by an
// earlier agent process.
type Supervised struct {
	// Dir is the flavor's folder (<stateDir>/engines/<flavor>).
	Dir string
	// Exe is the base name of the daemon executable ("dockerd"): a
	// containerd that dockerd starts lies under Dir too but is not the engine.
	Exe string
	// StopTimeout bounds a graceful stop before SIGKILL.
	StopTimeout time.Duration
	Logger      *slog.Logger
}

var _ Runner = (*Supervised)(nil)

// Kind is "supervised".
func (s *Supervised) Kind() string { return "supervised" }

// Start launches d detached from the agent: its own session, its output to
// d.LogFile, so that it outlives the agent.
func (s *Supervised) Start(ctx context.Context, d Daemon) error {
	if rs, err := s.State(ctx); err != nil {
		return err
	} else if rs.Running {
		return fmt.Errorf("start %s: an engine daemon already runs (pid %d, %s)", d.Path, rs.PID, rs.Exe)
	}
	cmd := exec.Command(d.Path, d.Args...)
	cmd.Env = append(os.Environ(), d.Env...)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if d.LogFile != "" {
		if err := os.MkdirAll(filepath.Dir(d.LogFile), 0o755); err != nil {
			return fmt.Errorf("start %s: %w", d.Path, err)
		}
		lf, err := os.OpenFile(d.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
		if err != nil {
			return fmt.Errorf("start %s: %w", d.Path, err)
		}
		defer lf.Close() // the child has its own descriptor
		cmd.Stdout, cmd.Stderr = lf, lf
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", d.Path, err)
	}
	// Reap the child if it exits while this agent process lives; the
	// goroutine ends with the child.
	go func() { _ = cmd.Wait() }()
	s.logger().Info("engine daemon started", "pid", cmd.Process.Pid, "exe", d.Path)
	return nil
}

// zombieGrace is how long Stop waits for an exited daemon to be reaped.
// A daemon started by an agent that was killed has init (or whatever
// reaper the host has) as its parent; until that reaps it, its pid stays in
// /proc, and dockerd refuses to start while its pid file names a pid that
// /proc still has ("pid file found, ensure docker is not running").
const zombieGrace = 10 * time.Second

// Stop sends SIGTERM to every engine daemon and waits for them to exit and
// be reaped; SIGKILL after StopTimeout.
func (s *Supervised) Stop(ctx context.Context) error {
	pids, err := s.find()
	if err != nil || len(pids) == 0 {
		return err
	}
	for _, p := range pids {
		_ = syscall.Kill(p.pid, syscall.SIGTERM)
	}
	timeout := s.StopTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	deadline := time.Now().Add(timeout)
	var reapWait time.Time
	for {
		left, err := s.find()
		if err != nil {
			return err
		}
		if len(left) == 0 {
			z, err := s.findZombies(pids)
			if err != nil {
				return err
			}
			if len(z) == 0 {
				s.logger().Info("engine daemon stopped")
				return nil
			}
			if reapWait.IsZero() {
				reapWait = time.Now()
			} else if time.Since(reapWait) > zombieGrace {
				s.logger().Warn("engine daemon exited but was not reaped; its pid file may block the next start", "pids", z, "after", zombieGrace)
				return nil
			}
		}
		if time.Now().After(deadline) {
			for _, p := range left {
				s.logger().Warn("engine daemon ignored SIGTERM; killing it", "pid", p.pid, "after", timeout)
				_ = syscall.Kill(p.pid, syscall.SIGKILL)
			}
			deadline = time.Now().Add(5 * time.Second)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stop engine daemon: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// State reports the engine daemon that runs, if any.
func (s *Supervised) State(ctx context.Context) (RunState, error) {
	pids, err := s.find()
	if err != nil {
		return RunState{}, err
	}
	switch len(pids) {
	case 0:
		return RunState{}, nil
	case 1:
		return RunState{Running: true, PID: pids[0].pid, Exe: pids[0].exe}, nil
	}
	return RunState{Running: true, PID: pids[0].pid, Exe: pids[0].exe, Detail: fmt.Sprintf("%d engine daemons run; expected one", len(pids))}, nil
}

type proc struct {
	pid int
	exe string
}

// find scans /proc for daemons whose executable is under s.Dir and whose
// name is a top-level engine daemon (not the containerd a dockerd starts).
func (s *Supervised) find() ([]proc, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	prefix := filepath.Clean(s.Dir) + string(filepath.Separator)
	var out []proc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err != nil {
			continue // gone, a zombie, or a kernel thread
		}
		exe = strings.TrimSuffix(exe, " (deleted)")
		if !strings.HasPrefix(exe, prefix) || filepath.Base(exe) != s.Exe {
			continue
		}
		if zombie(pid) {
			continue
		}
		out = append(out, proc{pid, exe})
	}
	return out, nil
}

// findZombies returns which of ps have exited but are not reaped yet.
func (s *Supervised) findZombies(ps []proc) ([]int, error) {
	var out []int
	for _, p := range ps {
		if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(p.pid))); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return nil, fmt.Errorf("look for process %d: %w", p.pid, err)
		}
		if zombie(p.pid) {
			out = append(out, p.pid)
		}
	}
	return out, nil
}

// zombie reports whether pid has exited but not been reaped yet.
func zombie(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return errors.Is(err, os.ErrNotExist)
	}
	// The state follows the parenthesised command name.
	if i := strings.LastIndexByte(string(b), ')'); i >= 0 && i+2 < len(b) {
		return b[i+2] == 'Z'
	}
	return false
}

func (s *Supervised) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger.With("component", "engine-runner")
}
