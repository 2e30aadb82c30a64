package provision

import (
	"strings"
	"testing"

	"github.com/berthhq/berth/engine/winhost"
)

func set(names ...string) map[string]bool {
	m := map[string]bool{}
	for _, n := range names {
		m[n] = true
	}
	return m
}

func TestJudgeLinux(t *testing.T) {
	v1 := set("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "pids")
	v2 := set("cpuset", "cpu", "io", "memory", "pids")
	tests := []struct {
		name        string
		f           LinuxFacts
		needOverlay bool
		wantFatal   []string // substrings, in order
		wantOverlay bool
	}{
		{name: "cgroup v1 host ready", f: LinuxFacts{Kernel: "6.18.44-fc-v1272", Controllers: v1, Filesystems: set("overlay")}, needOverlay: true},
		{name: "cgroup v2 host ready", f: LinuxFacts{Kernel: "5.15.0-1057-azure", CgroupV2: true, Controllers: v2, Filesystems: set("overlay")}, needOverlay: true},
		{name: "overlay not loaded", f: LinuxFacts{Kernel: "5.4.0", CgroupV2: true, Controllers: v2, Filesystems: set("ext4")}, needOverlay: true, wantOverlay: true},
		{name: "overlay not needed", f: LinuxFacts{Kernel: "5.4.0", CgroupV2: true, Controllers: v2, Filesystems: set("ext4")}},
		{name: "old kernel", f: LinuxFacts{Kernel: "3.2.0-4-amd64", CgroupV2: true, Controllers: v2}, wantFatal: []string{"older than 3.10"}},
		{name: "kernel 3.10 is enough", f: LinuxFacts{Kernel: "3.10.0-1160.el7.x86_64", Controllers: v1}},
		{name: "garbage kernel", f: LinuxFacts{Kernel: "linux", Controllers: v1}, wantFatal: []string{`"linux"`}},
		{name: "v2 without pids", f: LinuxFacts{Kernel: "6.1", CgroupV2: true, Controllers: set("cpu", "memory")}, wantFatal: []string{"cgroup v2 controllers missing or not enabled: pids"}},
		{name: "v1 without memory and freezer", f: LinuxFacts{Kernel: "4.19", Controllers: set("cpu", "cpuacct", "cpuset", "devices", "pids")}, wantFatal: []string{"cgroup v1 controllers missing or not enabled: memory, freezer"}},
		{name: "everything wrong", f: LinuxFacts{Kernel: "2.6.32"}, needOverlay: true, wantFatal: []string{"older than", "cgroup v1"}, wantOverlay: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := judgeLinux(tc.f, tc.needOverlay)
			if v.LoadOverlay != tc.wantOverlay || len(v.Fatal) != len(tc.wantFatal) {
				t.Fatalf("judgeLinux = %+v, want %d fatal, overlay %v", v, len(tc.wantFatal), tc.wantOverlay)
			}
			for i, w := range tc.wantFatal {
				if !strings.Contains(v.Fatal[i], w) {
					t.Errorf("fatal[%d] = %q, want it to say %q", i, v.Fatal[i], w)
				}
			}
		})
	}
}

func TestKernelVersion(t *testing.T) {
	tests := []struct {
		in           string
		major, minor int
		bad          bool
	}{
		{in: "6.18.44-fc-v1272", major: 6, minor: 18},
		{in: "5.15.0-1057-azure\n", major: 5, minor: 15},
		{in: "4.4", major: 4, minor: 4},
		{in: "3.10rc1", major: 3, minor: 10},
		{in: "", bad: true},
		{in: "6", bad: true},
		{in: "x.1", bad: true},
		{in: "6.x", bad: true},
		{in: "99999999999999999999.1", bad: true},
	}
	for _, tc := range tests {
		major, minor, err := kernelVersion(tc.in)
		if (err != nil) != tc.bad || (!tc.bad && (major != tc.major || minor != tc.minor)) {
			t.Errorf("kernelVersion(%q) = %d, %d, %v", tc.in, major, minor, err)
		}
	}
}

func TestParseProcCgroups(t *testing.T) {
	in := "#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpuset\t3\t3\t1\ncpu\t1\t3\t1\nmemory\t0\t41\t1\npids\t8\t3\t0\nshort 1\n\n"
	got := parseProcCgroups(in)
	if !got["cpuset"] || !got["cpu"] || got["memory"] || got["pids"] || got["short"] || got["#subsys_name"] {
		t.Fatalf("parseProcCgroups = %v; want cpuset and cpu only (memory unmounted, pids disabled)", got)
	}
}

func TestParseFilesystems(t *testing.T) {
	got := parseFilesystems("nodev\tsysfs\nnodev\toverlay\n\text4\n\n")
	if !got["overlay"] || !got["ext4"] || got["nodev"] {
		t.Fatalf("parseFilesystems = %v", got)
	}
}

func FuzzProcParsers(f *testing.F) {
	f.Add("#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpu\t1\t3\t1\n")
	f.Add("nodev\toverlay\n")
	f.Add("6.1.0-18-amd64")
	f.Fuzz(func(t *testing.T, s string) {
		parseProcCgroups(s)
		parseFilesystems(s)
		parseControllers(s)
		judgeLinux(LinuxFacts{Kernel: s, Controllers: parseControllers(s), Filesystems: parseFilesystems(s)}, true)
	})
}

func TestJudgeWindows(t *testing.T) {
	on, off, pending := winhost.FeatureEnabled, winhost.FeatureDisabled, winhost.FeatureEnablePending
	tests := []struct {
		name   string
		f      WindowsFacts
		hyperV bool
		want   windowsVerdict
	}{
		{name: "containers on", f: WindowsFacts{Containers: on}, want: winReady},
		{name: "containers off", f: WindowsFacts{Containers: off}, want: winEnable},
		{name: "containers pending", f: WindowsFacts{Containers: pending}, want: winReboot},
		{name: "hyper-v not asked, off", f: WindowsFacts{Containers: on, HyperV: off}, want: winReady},
		{name: "hyper-v asked, off", f: WindowsFacts{Containers: on, HyperV: off}, hyperV: true, want: winEnable},
		{name: "hyper-v asked, pending", f: WindowsFacts{Containers: on, HyperV: pending}, hyperV: true, want: winReboot},
		{name: "one pending, one off: enable first", f: WindowsFacts{Containers: pending, HyperV: off}, hyperV: true, want: winEnable},
		{name: "unknown state", f: WindowsFacts{Containers: "?"}, want: winEnable},
	}
	for _, tc := range tests {
		if got := judgeWindows(tc.f, tc.hyperV); got != tc.want {
			t.Errorf("%s: judgeWindows = %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestSettingsAsk(t *testing.T) {
	tests := []struct {
		name            string
		settings        map[string]any
		overlay, hyperV bool
	}{
		{name: "none", settings: nil, overlay: true},
		{name: "overlay2", settings: map[string]any{"storage-driver": "overlay2"}, overlay: true},
		{name: "vfs", settings: map[string]any{"storage-driver": "vfs"}},
		{name: "hyperv isolation", settings: map[string]any{"exec-opts": []any{"native.cgroupdriver=systemd", "isolation=hyperv"}}, overlay: true, hyperV: true},
		{name: "process isolation", settings: map[string]any{"exec-opts": []any{"isolation=process"}}, overlay: true},
		{name: "exec-opts not a list", settings: map[string]any{"exec-opts": "isolation=hyperv"}, overlay: true},
	}
	for _, tc := range tests {
		if o, h := NeedsOverlay(tc.settings), HyperVAsked(tc.settings); o != tc.overlay || h != tc.hyperV {
			t.Errorf("%s: overlay %v hyperV %v, want %v %v", tc.name, o, h, tc.overlay, tc.hyperV)
		}
	}
}
