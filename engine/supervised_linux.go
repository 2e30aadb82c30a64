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
	if err := s.clearStalePIDFile(d.PIDFile); err != nil {
		return fmt.Errorf("start %s: %w", d.Path, err)
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

// exitGrace bounds how long Stop waits, once no stopped daemon is listed
// any more, for each one's exit to finish (see Stop).
const exitGrace = 10 * time.Second

// stopPoll is how often Stop looks whether the daemons have exited. It is
// most of the engine API's downtime in a switch beyond the daemons' own
// shutdown and start, so it is short; a poll is one scan of /proc.
const stopPoll = 20 * time.Millisecond

// Stop sends SIGTERM to every engine daemon and waits for them to exit;
// SIGKILL after StopTimeout. It then waits, at most exitGrace, until each
// stopped daemon's exit has finished: gone from /proc or a zombie, so its
// files are closed. A daemon leaves find's list when its memory is
// released, a moment before its files are. Stop does not wait for the
// reap: an orphan's reaper (init) may take seconds (this CI's init reaps
// about every 1.5 s, most of the upgrade's API downtime when Stop waited
// for it) or never come. A pid file the zombie left behind is Start's
// business (clearStalePIDFile).
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
	var exited time.Time // when the last daemon left find's list
	for {
		left, err := s.find()
		if err != nil {
			return err
		}
		if len(left) == 0 {
			if exited.IsZero() {
				exited = time.Now()
			}
			if z := exiting(pids); len(z) == 0 {
				s.logger().Info("engine daemon stopped", "after", time.Since(began).Round(time.Millisecond),
					"exited_after", exited.Sub(began).Round(time.Millisecond))
				return nil
			} else if time.Since(exited) > exitGrace {
				s.logger().Warn("engine daemon has not finished exiting; the next start may find its files in use", "pids", z, "after", exitGrace)
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

// exiting returns which of ps are still in /proc and not zombies: their
// exit has not finished, so they may still hold files open.
func exiting(ps []proc) []int {
	var out []int
	for _, p := range ps {
		if exitFinished(p.pid) {
			continue
		}
		out = append(out, p.pid)
	}
	return out
}

// readStat reads /proc/<pid>/stat; ok is false when /proc has no such pid
// (or its line cannot be read, which for a pid Stop signalled means the
// same: it is gone).
func readStat(pid int) (ps procStat, ok bool) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return procStat{exitCode: -1}, false
	}
	return parseStat(string(b)), true
}

// exitFinished reports whether pid has finished exiting (see exitDone).
func exitFinished(pid int) bool {
	st, ok := readStat(pid)
	return exitDone(st, ok, threads(pid))
}

// threads counts the tasks /proc lists for pid: its threads that have not
// finished exiting, itself included while it is there.
func threads(pid int) int {
	es, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pid), "task"))
	if err != nil {
		return 0
	}
	return len(es)
}

// exitDone decides whether a process whose stat is ps (ok: /proc has it)
// and that has n tasks has finished exiting: gone, or a zombie with no
// other thread left. A multi-threaded daemon's main thread can be a zombie
// while its other threads still exit and hold the files they share open;
// and a zombie main thread beside live threads may be a process that still
// runs.
func exitDone(ps procStat, ok bool, n int) bool {
	return !ok || (ps.state == 'Z' && n <= 1)
}

// clearStalePIDFile removes the daemon's pid file when it names a zombie.
// dockerd refuses to start while its pid file names a pid that /proc has,
// zombies included, and a daemon stopped before it finished starting (or
// killed) leaves its pid file behind even when it exits 0; its zombie stays
// until its reaper collects it (init, for the orphan of a killed agent). A
// zombie runs nothing, so the file is stale, and removing it is what
// dockerd's own error asks for. A file that names a live process stays:
// dockerd then refuses to start and says why.
func (s *Supervised) clearStalePIDFile(path string) error {
	if path == "" {
		return nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read the engine's pid file: %w", err)
	}
	pid, stale := pidFileStale(data, unreaped)
	if !stale {
		return nil
	}
	s.logger().Info("removing the pid file of an engine daemon that exited and is not reaped yet", "file", path, "pid", pid)
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove the stale pid file %s of exited pid %d: %w", path, pid, err)
	}
	return nil
}

// pidFileStale decides whether a pid file holding data is stale: it names
// a pid that unreaped reports a zombie whose exit has finished. A file
// dockerd cannot read as a pid, or that names a pid /proc lacks, does not
// stop dockerd; one that names a live process must.
func pidFileStale(data []byte, unreaped func(pid int) bool) (int, bool) {
	pid, ok := parsePIDFile(data)
	if !ok {
		return 0, false
	}
	return pid, unreaped(pid)
}

// unreaped reports whether /proc has pid as a zombie whose exit has
// finished.
func unreaped(pid int) bool {
	st, ok := readStat(pid)
	return ok && exitDone(st, ok, threads(pid))
}

// maxPID bounds a pid read from a pid file (Linux's PID_MAX_LIMIT is 2^22).
const maxPID = 1 << 22

// parsePIDFile reads a pid file as dockerd does: one decimal number,
// surrounded by white space at most.
func parsePIDFile(data []byte) (int, bool) {
	if len(data) > 4096 { // a pid file is a number; read no essay
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 || pid > maxPID {
		return 0, false
	}
	return pid, true
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

// zombie reports whether pid has exited but not been reaped yet (or is
// gone).
func zombie(pid int) bool {
	st, ok := readStat(pid)
	return !ok || st.state == 'Z'
}

func (s *Supervised) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger.With("component", "engine-runner")
}
