package provision

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// linuxFacts reads the kernel release, the cgroup controllers and the
// filesystems the kernel knows.
func linuxFacts() (LinuxFacts, error) {
	var f LinuxFacts
	rel, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return f, fmt.Errorf("read the kernel release: %w", err)
	}
	f.Kernel = strings.TrimSpace(string(rel))
	if b, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		f.CgroupV2, f.Controllers = true, parseControllers(string(b))
	} else if errors.Is(err, os.ErrNotExist) {
		b, err := os.ReadFile("/proc/cgroups")
		if err != nil {
			return f, fmt.Errorf("read the cgroup controllers: %w", err)
		}
		f.Controllers = parseProcCgroups(string(b))
	} else {
		return f, fmt.Errorf("read the cgroup controllers: %w", err)
	}
	fs, err := os.ReadFile("/proc/filesystems")
	if err != nil {
		return f, fmt.Errorf("read the kernel's filesystems: %w", err)
	}
	f.Filesystems = parseFilesystems(string(fs))
	return f, nil
}

func (s prereqStep) check(context.Context) (bool, string, error) {
	f, err := linuxFacts()
	if err != nil {
		return false, "", err
	}
	v := judgeLinux(f, s.needOverlay)
	if len(v.Fatal) > 0 {
		return false, "", Permanent(errors.New(strings.Join(v.Fatal, "; ")))
	}
	if v.LoadOverlay {
		return false, "the overlay filesystem is not loaded", nil
	}
	kind := "v1"
	if f.CgroupV2 {
		kind = "v2"
	}
	return true, fmt.Sprintf("kernel %s, cgroup %s", f.Kernel, kind), nil
}

// apply loads the overlay module: the one prerequisite the agent can fix.
func (s prereqStep) apply(ctx context.Context) error {
	out, err := exec.CommandContext(ctx, sbin("modprobe"), "overlay").CombinedOutput()
	if err != nil {
		return Permanent(fmt.Errorf("load the overlay module (modprobe overlay): %w: %s; install the kernel's overlay module or set engine.settings.storage-driver", err, strings.TrimSpace(string(out))))
	}
	return nil
}
