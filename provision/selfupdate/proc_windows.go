package selfupdate

import (
	"os"
	"syscall"
)

// childAttr starts the agent without a window of its own.
func childAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{HideWindow: true} }

// terminate does nothing on Windows: a console-less child gets no signal,
// and the agent stops when its stdin closes.
func terminate(*os.Process) error { return nil }
