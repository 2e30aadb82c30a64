//go:build linux

package imagetest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/testenv"
	"github.com/berthhq/berth/internal/testenv/dockerd"
	"github.com/berthhq/berth/internal/testenv/registry"
)

// startDockerd runs the machine's dockerd in a dockerd.Host and stops it
// when the test ends.
func startDockerd(t *testing.T) *dockerd.Host {
	t.Helper()
	h := dockerd.NewHost(t)
	logf, err := os.Create(filepath.Join(h.Dir, "dockerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("dockerd", "-H", h.Endpoint,
		"--data-root", h.Settings["data-root"].(string),
		"--exec-root", h.Settings["exec-root"].(string),
		"--pidfile", h.Settings["pidfile"].(string),
		"--bridge", "none", "--iptables=false", "--ip6tables=false")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dockerd: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(exited) }()
	// Registered after dockerd.NewHost's cleanup, so it runs before it.
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := h.Docker(ctx, "version")
		cancel()
		if err == nil {
			return h
		}
		select {
		case <-exited:
			out, _ := os.ReadFile(filepath.Join(h.Dir, "dockerd.log"))
			t.Fatalf("dockerd exited: %s", testenv.Tail(out, 4<<10))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("dockerd did not answer within 60s: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

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
