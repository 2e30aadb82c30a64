//go:build !windows

package selfupdate

import (
	"os"
	"syscall"
)

// childAttr puts the agent in the launcher's process group, so that a
// terminal's ^C and systemd's stop reach both.
func childAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }

// terminate asks the agent to stop; it also sees its stdin close.
func terminate(p *os.Process) error { return p.Signal(syscall.SIGTERM) }
