//go:build !windows

package svc

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

const detachDir = "/"

// detachAttr puts the child in a session of its own: no controlling
// terminal, and out of the starter's process group, which the guest agent
// kills when a handler command times out.
func detachAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setsid: true} }

// lockFile waits for an exclusive flock on f.
func lockFile(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

func terminate(pid int) error { return syscall.Kill(pid, syscall.SIGTERM) }

func kill(pid int) error {
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}

// processStart returns the start time of a live process, in clock ticks
// since boot (field 22 of /proc/<pid>/stat): with the pid it names one
// process across pid reuse. An exited process, zombie or gone, is an error.
func processStart(pid int) (string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", err
	}
	state, start, err := parseProcStat(string(b))
	if err != nil {
		return "", err
	}
	if state == "Z" || state == "X" {
		return "", fmt.Errorf("process %d has exited", pid)
	}
	return start, nil
}

// parseProcStat returns the state (field 3) and start time (field 22) of a
// /proc/<pid>/stat line. The command name (field 2) is in parentheses and
// may hold spaces and parentheses itself, so fields count from the last ')'.
func parseProcStat(line string) (state, start string, err error) {
	i := strings.LastIndexByte(line, ')')
	if i < 0 {
		return "", "", errors.New("no command name in /proc stat line")
	}
	f := strings.Fields(line[i+1:])
	const startField = 22 - 3 // f[0] is field 3
	if len(f) <= startField {
		return "", "", fmt.Errorf("/proc stat line has %d fields after the name; want more than %d", len(f), startField)
	}
	if _, err := strconv.ParseUint(f[startField], 10, 64); err != nil {
		return "", "", fmt.Errorf("/proc stat start time %q: %w", f[startField], err)
	}
	return f[0], f[startField], nil
}
