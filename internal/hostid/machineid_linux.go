package hostid

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// machineIDFiles are where systemd and D-Bus keep the machine id; the
// second is the older D-Bus location some images still rely on.
var machineIDFiles = []string{"/etc/machine-id", "/var/lib/dbus/machine-id"}

// MachineID returns the host's machine id from /etc/machine-id (or D-Bus's
// copy), as written there.
func MachineID() (string, error) {
	var errs []error
	for _, f := range machineIDFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if id := strings.TrimSpace(string(b)); id != "" && id != "uninitialized" {
			return id, nil
		}
		errs = append(errs, fmt.Errorf("%s is empty or uninitialized", f))
	}
	return "", fmt.Errorf("machine id: %w", errors.Join(errs...))
}

// OSBuild describes the OS for heartbeats: os-release's PRETTY_NAME and the
// kernel release, for example "Ubuntu 24.04.1 LTS (kernel 6.8.0-1017-azure)".
func OSBuild() string {
	name := "Linux"
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		if v := osReleaseValue(string(b), "PRETTY_NAME"); v != "" {
			name = v
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		if k := strings.TrimSpace(string(b)); k != "" {
			name += " (kernel " + k + ")"
		}
	}
	return name
}
