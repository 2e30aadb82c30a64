package provision

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/berthhq/berth/engine/winhost"
)

// Linux kernel and cgroup requirements of the engines Berth runs (Docker
// Engine's and containerd's own minimums, from their check-config scripts).
var (
	minKernel = [2]int{3, 10}
	// cgroup v1 needs these hierarchies mounted and enabled; v2 has the
	// device and freezer control built in, so it needs fewer.
	cgroupV1Need = []string{"cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "pids"}
	cgroupV2Need = []string{"cpu", "memory", "pids"}
)

// LinuxFacts are what the prerequisites step reads of a Linux host.
type LinuxFacts struct {
	// Kernel is the kernel release (uname -r), such as 6.1.0-18-amd64.
	Kernel string
	// CgroupV2 says /sys/fs/cgroup is the unified hierarchy.
	CgroupV2 bool
	// Controllers are the cgroup controllers the engine can use.
	Controllers map[string]bool
	// Filesystems are those the kernel knows now (/proc/filesystems).
	Filesystems map[string]bool
}

// linuxVerdict is what the step makes of LinuxFacts: problems nothing but
// the operator can fix, and whether loading the overlay module is left.
type linuxVerdict struct {
	Fatal       []string
	LoadOverlay bool
}

// judgeLinux decides from the facts; needOverlay is false when
// engine.settings picks a storage driver other than overlay.
func judgeLinux(f LinuxFacts, needOverlay bool) linuxVerdict {
	var v linuxVerdict
	major, minor, err := kernelVersion(f.Kernel)
	switch {
	case err != nil:
		v.Fatal = append(v.Fatal, err.Error())
	case major < minKernel[0] || (major == minKernel[0] && minor < minKernel[1]):
		v.Fatal = append(v.Fatal, fmt.Sprintf("kernel %s is older than %d.%d, the oldest the engines run on", f.Kernel, minKernel[0], minKernel[1]))
	}
	need, kind := cgroupV1Need, "v1"
	if f.CgroupV2 {
		need, kind = cgroupV2Need, "v2"
	}
	var missing []string
	for _, c := range need {
		if !f.Controllers[c] {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		v.Fatal = append(v.Fatal, fmt.Sprintf("cgroup %s controllers missing or not enabled: %s (enable them on the kernel command line or in the cgroup mounts)", kind, strings.Join(missing, ", ")))
	}
	v.LoadOverlay = needOverlay && !f.Filesystems["overlay"]
	return v
}

// kernelVersion reads major.minor from a kernel release string.
func kernelVersion(release string) (int, int, error) {
	parts := strings.SplitN(strings.TrimSpace(release), ".", 3)
	if len(parts) < 2 {
		return 0, 0, fmt.Errorf("kernel release %q is not major.minor[.patch…]", release)
	}
	major, err := strconv.Atoi(parts[0])
	if err != nil {
		return 0, 0, fmt.Errorf("kernel release %q: %w", release, err)
	}
	digits := strings.IndexFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' })
	if digits < 0 {
		digits = len(parts[1])
	}
	minor, err := strconv.Atoi(parts[1][:digits])
	if err != nil {
		return 0, 0, fmt.Errorf("kernel release %q: %w", release, err)
	}
	return major, minor, nil
}

// parseProcCgroups reads /proc/cgroups: a controller is usable when it is
// enabled and mounted in a hierarchy (cgroup v1).
func parseProcCgroups(s string) map[string]bool {
	out := map[string]bool{}
	for line := range strings.Lines(s) {
		f := strings.Fields(line)
		if len(f) < 4 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if f[1] != "0" && f[3] == "1" {
			out[f[0]] = true
		}
	}
	return out
}

// parseControllers reads cgroup v2's cgroup.controllers.
func parseControllers(s string) map[string]bool {
	out := map[string]bool{}
	for _, c := range strings.Fields(s) {
		out[c] = true
	}
	return out
}

// parseFilesystems reads /proc/filesystems ("nodev\toverlay" or "\text4").
func parseFilesystems(s string) map[string]bool {
	out := map[string]bool{}
	for line := range strings.Lines(s) {
		f := strings.Fields(line)
		if len(f) > 0 {
			out[f[len(f)-1]] = true
		}
	}
	return out
}

// WindowsFacts are the states of the features the engine needs.
type WindowsFacts struct {
	Containers, HyperV winhost.FeatureState
}

// windowsVerdict is what the step makes of WindowsFacts.
type windowsVerdict string

const (
	winReady  windowsVerdict = "ready"  // every feature asked for is enabled
	winEnable windowsVerdict = "enable" // some are disabled: enable them (DISM)
	winReboot windowsVerdict = "reboot" // all are enabled or pending, some pending: reboot
)

// judgeWindows decides from the features' states; Hyper-V counts only when
// Hyper-V isolation is asked for.
func judgeWindows(f WindowsFacts, hyperV bool) windowsVerdict {
	states := []winhost.FeatureState{f.Containers}
	if hyperV {
		states = append(states, f.HyperV)
	}
	v := winReady
	for _, s := range states {
		switch s {
		case winhost.FeatureEnabled:
		case winhost.FeatureEnablePending:
			if v == winReady {
				v = winReboot
			}
		default:
			v = winEnable
		}
	}
	return v
}

// NeedsOverlay says the engine will want the overlay filesystem: true
// unless engine.settings names another storage driver.
func NeedsOverlay(settings map[string]any) bool {
	d, ok := settings["storage-driver"].(string)
	return !ok || d == "" || strings.HasPrefix(d, "overlay")
}

// HyperVAsked says engine.settings ask for Hyper-V isolation
// (exec-opts: ["isolation=hyperv"]), which needs the Microsoft-Hyper-V
// feature besides Containers.
func HyperVAsked(settings map[string]any) bool {
	opts, _ := settings["exec-opts"].([]any)
	for _, o := range opts {
		if s, ok := o.(string); ok && strings.EqualFold(strings.ReplaceAll(s, " ", ""), "isolation=hyperv") {
			return true
		}
	}
	return false
}

// prereqStep is the prerequisites step; what it reads and does is the
// platform's (prereq_linux.go, prereq_windows.go).
type prereqStep struct {
	managed     bool
	needOverlay bool
	hyperV      bool
}

// Prerequisites is the step that makes sure the host can run the engine.
// An unmanaged engine (engine.managed: false) is the operator's: the step
// has nothing to do.
func Prerequisites(managed bool, settings map[string]any) Step {
	return prereqStep{managed: managed, needOverlay: NeedsOverlay(settings), hyperV: HyperVAsked(settings)}
}

func (prereqStep) Name() string { return StepPrerequisites }

func (s prereqStep) Check(ctx context.Context) (bool, string, error) {
	if !s.managed {
		return true, "engine.managed is false: the engine's prerequisites are the operator's", nil
	}
	return s.check(ctx)
}

func (s prereqStep) Apply(ctx context.Context) error { return s.apply(ctx) }
