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

// StartWatched runs the machine's dockerd in a new Host — an engine the
// agent watches but does not manage (engine.managed false, engine.endpoint
// the Host's) — and stops it when the test ends. Its log is dockerd.log in
// the Host's folder.
func StartWatched(t testing.TB) *Host {
	t.Helper()
	h := NewHost(t)
	bin := testenv.NeedBinary(t, "dockerd")
	logf, err := os.Create(filepath.Join(h.Dir, "dockerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-H", h.Endpoint,
		"--data-root", h.Settings["data-root"].(string), "--exec-root", h.Settings["exec-root"].(string),
		"--pidfile", h.Settings["pidfile"].(string), "--bridge", "none", "--iptables=false", "--ip6tables=false")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dockerd: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(exited) }()
	// Registered after NewHost's cleanup, so it runs before it.
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
