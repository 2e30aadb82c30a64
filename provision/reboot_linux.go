package provision

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// bootID is the kernel's id of this boot, new at every boot.
func bootID() (string, error) {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", fmt.Errorf("read the boot id: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// platformRebooter reboots through systemd, or shutdown(8) without it.
type platformRebooter struct{}

func (platformRebooter) Reboot(ctx context.Context, reason string) error {
	cmd := exec.CommandContext(ctx, sbin("shutdown"), "-r", "+1", reason)
	if _, err := os.Stat("/run/systemd/system"); err == nil {
		cmd = exec.CommandContext(ctx, sbin("systemctl"), "reboot", "--message="+reason)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(cmd.Args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
