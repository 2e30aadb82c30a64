//go:build linux

package dockerd

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/testenv"
)

// ContainerdHost is an isolated place for one test's containerd: its own
// socket, root, state and opt folders under a temporary folder, so that it
// runs beside any containerd the machine has (whose /run/containerd and
// /var/lib/containerd it never touches).
type ContainerdHost struct {
	Dir      string // the agent's state folder for this test
	Endpoint string // unix://…/containerd.sock
	Socket   string // the socket's path, for ctr --address
	DataRoot string // containerd's root, for engine.dataRoot
	// Settings go into engine.settings: the state folder and the opt
	// plugin's folder, which default to machine-wide paths.
	Settings map[string]any
}

// NewContainerdHost prepares a ContainerdHost and registers a cleanup that
// stops every process under it and unmounts what containerd left mounted,
// so that the folder can be removed.
func NewContainerdHost(t testing.TB) *ContainerdHost {
	t.Helper()
	testenv.NeedRoot(t)
	testenv.NeedBinary(t, "containerd")
	testenv.NeedBinary(t, "ctr")
	// Unix socket paths are limited to 108 bytes: keep the folder short.
	dir, err := os.MkdirTemp("", "berth-")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "containerd.sock")
	h := &ContainerdHost{
		Dir:      dir,
		Endpoint: "unix://" + sock,
		Socket:   sock,
		DataRoot: filepath.Join(dir, "root"),
		Settings: map[string]any{
			"state": filepath.Join(dir, "state"),
			"plugins": map[string]any{
				"io.containerd.internal.v1.opt": map[string]any{"path": filepath.Join(dir, "opt")},
			},
		},
	}
	t.Cleanup(func() { h.Destroy(t) })
	return h
}

// Ctr runs ctr against this host's containerd.
func (h *ContainerdHost) Ctr(ctx context.Context, args ...string) ([]byte, error) {
	return exec.CommandContext(ctx, "ctr", append([]string{"--address", h.Socket}, args...)...).CombinedOutput()
}

// Destroy stops engine processes and unmounts.
func (h *ContainerdHost) Destroy(t testing.TB) {
	KillUnder(h.Dir, syscall.SIGTERM, 20*time.Second)
	KillUnder(h.Dir, syscall.SIGKILL, 5*time.Second)
	UnmountUnder(h.Dir)
	if err := os.RemoveAll(h.Dir); err != nil {
		t.Logf("remove %s: %v", h.Dir, err)
	}
}
