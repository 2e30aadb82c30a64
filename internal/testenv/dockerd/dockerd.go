//go:build linux

package dockerd

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/testenv"
)

// Host is an isolated place for one test's Docker Engine: its own
// socket, exec root, data root and pid file under a temporary folder, no
// bridge and no iptables, so several can run beside each other and beside
// any engine the machine has.
type Host struct {
	Dir      string // the agent's state folder for this test
	Endpoint string // unix://…/docker.sock
	Settings map[string]any
}

// NewHost prepares a Host and registers a cleanup that removes
// every container, stops every engine process under it and unmounts what
// the engine left mounted, so that the folder can be removed.
func NewHost(t testing.TB) *Host {
	t.Helper()
	testenv.NeedRoot(t)
	testenv.NeedBinary(t, "dockerd")
	// Unix socket paths are limited to 108 bytes: keep the folder short.
	dir, err := os.MkdirTemp("", "berth-")
	if err != nil {
		t.Fatal(err)
	}
	h := &Host{
		Dir:      dir,
		Endpoint: "unix://" + filepath.Join(dir, "docker.sock"),
		Settings: map[string]any{
			"exec-root": filepath.Join(dir, "exec"),
			"pidfile":   filepath.Join(dir, "docker.pid"),
			"data-root": filepath.Join(dir, "data"),
			"bridge":    "none",
			"iptables":  false,
			"ip6tables": false,
		},
	}
	t.Cleanup(func() { h.Destroy(t) })
	return h
}

// Docker runs the docker CLI against this host's engine.
func (h *Host) Docker(ctx context.Context, args ...string) ([]byte, error) {
	return exec.CommandContext(ctx, "docker", append([]string{"-H", h.Endpoint}, args...)...).CombinedOutput()
}

// Destroy removes containers, stops engine processes and unmounts.
func (h *Host) Destroy(t testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if out, err := h.Docker(ctx, "ps", "-aq"); err == nil {
		if ids := strings.Fields(string(out)); len(ids) > 0 {
			_, _ = h.Docker(ctx, append([]string{"rm", "-f"}, ids...)...)
		}
	}
	KillUnder(h.Dir, syscall.SIGTERM, 20*time.Second)
	KillUnder(h.Dir, syscall.SIGKILL, 5*time.Second)
	UnmountUnder(h.Dir)
	if err := os.RemoveAll(h.Dir); err != nil {
		t.Logf("remove %s: %v", h.Dir, err)
	}
}

// KillUnder signals every process whose executable lies under dir and waits
// up to wait for them to go.
func KillUnder(dir string, sig syscall.Signal, wait time.Duration) {
	deadline := time.Now().Add(wait)
	for first := true; ; first = false {
		pids := pidsUnder(dir)
		if len(pids) == 0 {
			return
		}
		if first {
			for _, p := range pids {
				_ = syscall.Kill(p, sig)
			}
		}
		if time.Now().After(deadline) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func pidsUnder(dir string) []int {
	entries, _ := os.ReadDir("/proc")
	prefix := filepath.Clean(dir) + "/"
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		exe, err := os.Readlink("/proc/" + e.Name() + "/exe")
		if err != nil || !strings.HasPrefix(exe, prefix) {
			continue
		}
		if st, err := os.ReadFile("/proc/" + e.Name() + "/stat"); err == nil {
			if i := strings.LastIndexByte(string(st), ')'); i > 0 && i+2 < len(st) && st[i+2] == 'Z' {
				continue
			}
		}
		pids = append(pids, pid)
	}
	return pids
}

// UnmountUnder lazily unmounts every mount point below dir, deepest first.
func UnmountUnder(dir string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	prefix := filepath.Clean(dir) + "/"
	var points []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], prefix) {
			points = append(points, f[4])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(points)))
	for _, p := range points {
		_ = syscall.Unmount(p, syscall.MNT_DETACH)
	}
}

// BusyboxImage imports a tiny real image (Debian's static busybox) into the
// engine at endpoint as ref.
func BusyboxImage(t testing.TB, h *Host, ref string) {
	t.Helper()
	bb := "/bin/busybox"
	if _, err := os.Stat(bb); err != nil {
		testenv.Need(t, "busybox-static", err)
	}
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin", "busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, l := range []string{"sh", "sleep", "echo", "cat", "ls", "true"} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", l)); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("sh", "-c", `tar -C "$1" -c . | docker -H "$2" import - "$3"`, "sh", root, h.Endpoint, ref)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("import busybox image: %v: %s", err, out)
	}
}
