package provision

import (
	"os"
	"os/exec"
	"path/filepath"
)

// sbin finds a system program by PATH, then in the system folders: under
// cloud-init or a service the PATH can be as short as /usr/bin:/bin, and
// modprobe, systemctl and shutdown live in sbin on many distributions.
func sbin(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return name
}
