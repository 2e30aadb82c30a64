package provision

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/windows/registry"
)

// bootID names this boot by the time of the last shutdown, which Windows
// writes into the registry at every shutdown: a new value means the host
// has restarted since. (Boot time from the tick count would wobble by the
// clock's adjustments; this value does not.)
func bootID() (string, error) {
	k, err := registry.OpenKey(registry.LOCAL_MACHINE, `SYSTEM\CurrentControlSet\Control\Windows`, registry.QUERY_VALUE)
	if err != nil {
		return "", fmt.Errorf("read the boot id: %w", err)
	}
	defer k.Close()
	b, _, err := k.GetBinaryValue("ShutdownTime")
	if err != nil {
		return "", fmt.Errorf("read the boot id: %w", err)
	}
	return fmt.Sprintf("%x", b), nil
}

// platformRebooter restarts Windows with shutdown.exe, a minute from now so
// that the status of the step is written first.
type platformRebooter struct{}

func (platformRebooter) Reboot(ctx context.Context, reason string) error {
	// By its full path: a service's PATH need not hold System32.
	exe := "shutdown.exe"
	if root := os.Getenv("SystemRoot"); root != "" {
		exe = filepath.Join(root, "System32", "shutdown.exe")
	}
	cmd := exec.CommandContext(ctx, exe, "/r", "/t", "60", "/d", "p:4:2", "/c", reason)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("shutdown.exe /r: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}
