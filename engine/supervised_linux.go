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

// stopPoll is how often Stop looks whether the daemons have exited. It is
// most of the engine API's downtime in a switch beyond the daemons' own
// shutdown and start, so it is short; a poll is one scan of /proc.
const stopPoll = 20 * time.Millisecond

// Stop sends SIGTERM to every engine daemon and waits for them to exit;
// SIGKILL after StopTimeout. It then waits, at most zombieGrace, until each
// stopped daemon is reaped: dockerd refuses to start while its pid file
// names a pid that /proc still has, and a daemon stopped before it finished
// starting (or killed) leaves its pid file behind even when it exits 0. (A
// rule that skipped the wait for a clean exit cut the upgrade's downtime to
// 0.4 s, and the 200-round SIGKILL soak found a restart refused with "pid
// file found": the wait stays until Stop can read the daemon's pid file.)
func (s *Supervised) Stop(ctx context.Context) error {
	pids, err := s.find()
	if err != nil || len(pids) == 0 {
		return err
	}
	began := time.Now()
	s.logger().Info("stopping engine daemon", "pids", pidsOf(pids))
	for _, p := range pids {
		_ = syscall.Kill(p.pid, syscall.SIGTERM)
	}
	timeout := s.StopTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	deadline := time.Now().Add(timeout)
	var exited time.Time // when the last daemon exited (it may be unreaped)
	for {
		left, err := s.find()
		if err != nil {
			return err
		}
		if len(left) == 0 {
			if exited.IsZero() {
				exited = time.Now()
			}
			z, err := s.findUnreaped(pids)
			if err != nil {
				return err
			}
			if len(z) == 0 {
				s.logger().Info("engine daemon stopped", "after", time.Since(began).Round(time.Millisecond),
					"exited_after", exited.Sub(began).Round(time.Millisecond))
				return nil
			}
			if time.Since(exited) > zombieGrace {
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
		case <-time.After(stopPoll):
		}
	}
}

func pidsOf(ps []proc) []int {
	out := make([]int, len(ps))
	for i, p := range ps {
		out[i] = p.pid
	}
	return out
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

// findUnreaped returns which of ps still exist in /proc in any state
// (exiting, zombie): those whose pid file would still name a live pid (see
// Stop).
func (s *Supervised) findUnreaped(ps []proc) ([]int, error) {
	var out []int
	for _, p := range ps {
		// Any state counts, not only a zombie: a daemon killed early in
		// its start is still exiting (its exe already unreadable, so find
		// no longer lists it) before it turns into a zombie, and dockerd's
		// pid-file check asks only whether the pid exists.
		_, err := os.Stat(filepath.Join("/proc", strconv.Itoa(p.pid)))
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
			continue // reaped
		}
		if err != nil {
			return nil, fmt.Errorf("look for process %d: %w", p.pid, err)
		}
		out = append(out, p.pid)
	}
	return out, nil
}

// procStat is what Stop reads of /proc/<pid>/stat.
type procStat struct {
	state byte // 'R', 'S', 'Z', …; 0 when the line cannot be parsed
	// exitCode is the wait status of an exited process (field 52, Linux
	// 3.5 and later); -1 when absent.
	exitCode int
}

// parseStat reads the state (field 3) and the exit code (field 52) of a
// /proc/<pid>/stat line. The command name (field 2) is in parentheses and
// may hold spaces and parentheses itself, so fields are counted from the
// last ')'.
func parseStat(line string) procStat {
	ps := procStat{exitCode: -1}
	i := strings.LastIndexByte(line, ')')
	if i < 0 {
		return ps
	}
	fields := strings.Fields(line[i+1:])
	if len(fields) == 0 || len(fields[0]) != 1 {
		return ps
	}
	ps.state = fields[0][0]
	const exitCodeField = 52 - 3 // fields[0] is field 3
	if len(fields) > exitCodeField {
		if n, err := strconv.Atoi(fields[exitCodeField]); err == nil && n >= 0 {
			ps.exitCode = n
		}
	}
	return ps
}

// zombie reports whether pid has exited but not been reaped yet.
func zombie(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return errors.Is(err, os.ErrNotExist)
	}
	return parseStat(string(b)).state == 'Z'
}

func (s *Supervised) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger.With("component", "engine-runner")
}
