//go:build linux

package imagetest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/testenv"
	"github.com/berthhq/berth/internal/testenv/dockerd"
	"github.com/berthhq/berth/internal/testenv/registry"
)

// startDockerd runs the machine's dockerd in a dockerd.Host and stops it
// when the test ends.
func startDockerd(t *testing.T) *dockerd.Host { return dockerd.StartWatched(t) }

// TestSeededBusyboxRuns pulls SeedBusybox's image and its manifest list
// into a real dockerd and runs it.
func TestSeededBusyboxRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("dockerd is a real component: skipped with -short")
	}
	testenv.NeedRoot(t)
	reg := registry.Start(t, registry.Options{})
	SeedBusybox(t, reg.URL, "tools/busybox", "1")
	h := startDockerd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// dockerd treats 127.0.0.0/8 registries as insecure: plain http works.
	for _, ref := range []string{reg.Addr + "/tools/busybox:1", reg.Addr + "/tools/busybox:1-list"} {
		if out, err := h.Docker(ctx, "pull", ref); err != nil {
			t.Fatalf("pull %s: %v: %s", ref, err, out)
		}
		out, err := h.Docker(ctx, "run", "--rm", "--network", "none", ref, "echo", "hello from busybox")
		if err != nil || strings.TrimSpace(string(out)) != "hello from busybox" {
			t.Fatalf("run %s: %v: %s", ref, err, out)
		}
	}
}
