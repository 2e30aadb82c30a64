package svc

import (
	"fmt"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/windows"
)

// detachDir is the folder of the system drive's root, as "/" on Unix.
var detachDir = os.Getenv("SystemDrive") + `\`

// detachAttr starts the child without a console and in its own process
// group, so that a console's Ctrl+C and the starter's exit do not reach it.
func detachAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{CreationFlags: windows.CREATE_NEW_PROCESS_GROUP | windows.DETACHED_PROCESS}
}

// lockFile waits for an exclusive lock on the first byte of f.
func lockFile(f *os.File) error {
	var ol windows.Overlapped
	return windows.LockFileEx(windows.Handle(f.Fd()), windows.LOCKFILE_EXCLUSIVE_LOCK, 0, 1, 0, &ol)
}

// terminate ends the process: a detached console-less process receives no
// console control event, and Windows has no SIGTERM, so the graceful stop of
// a Windows agent is the SCM's. The detached mode on Windows is only a
// fallback for hosts without an SCM, which Windows Server does not have.
func terminate(pid int) error { return kill(pid) }

func kill(pid int) error {
	h, err := windows.OpenProcess(windows.PROCESS_TERMINATE, false, uint32(pid))
	if err != nil {
		return fmt.Errorf("open process %d: %w", pid, err)
	}
	defer windows.CloseHandle(h)
	if err := windows.TerminateProcess(h, 1); err != nil && err != windows.ERROR_ACCESS_DENIED {
		return fmt.Errorf("terminate process %d: %w", pid, err)
	}
	return nil
}

// processStart returns a live process's creation time (100 ns units since
// 1601): with the pid it names one process across pid reuse.
func processStart(pid int) (string, error) {
	h, err := windows.OpenProcess(windows.PROCESS_QUERY_LIMITED_INFORMATION, false, uint32(pid))
	if err != nil {
		return "", fmt.Errorf("open process %d: %w", pid, err)
	}
	defer windows.CloseHandle(h)
	var code uint32
	if err := windows.GetExitCodeProcess(h, &code); err != nil {
		return "", fmt.Errorf("process %d exit code: %w", pid, err)
	}
	const stillActive = 259
	if code != stillActive {
		return "", fmt.Errorf("process %d has exited", pid)
	}
	var created, exit, kernel, user windows.Filetime
	if err := windows.GetProcessTimes(h, &created, &exit, &kernel, &user); err != nil {
		return "", fmt.Errorf("process %d times: %w", pid, err)
	}
	return strconv.FormatInt(created.Nanoseconds()/100, 10), nil
}
