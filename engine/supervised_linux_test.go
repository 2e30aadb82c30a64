package engine

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// An engine that exits on SIGTERM but is not reaped yet (its parent is a
// killed agent's reaper, here this test) still counts: dockerd refuses to
// start while its pid file names a pid that /proc has. Stop returns only
// once the exited daemon is reaped.
func TestStopWaitsUntilTheDaemonIsReaped(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "1.0", "dockerd")
	if err := os.MkdirAll(filepath.Dir(exe), 0o755); err != nil {
		t.Fatal(err)
	}
	src, err := os.Open("/bin/sleep")
	if err != nil {
		t.Skip("no /bin/sleep to stand in for an engine daemon")
	}
	dst, err := os.OpenFile(exe, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	src.Close()
	dst.Close()

	cmd := exec.Command(exe, "600")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	const reapAfter = 700 * time.Millisecond
	reaped := make(chan time.Time, 1)
	go func() {
		// Not reaped until well after SIGTERM has killed it.
		for !zombie(cmd.Process.Pid) {
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(reapAfter)
		_ = cmd.Wait()
		reaped <- time.Now()
	}()

	s := &Supervised{Dir: dir, Exe: "dockerd", StopTimeout: 5 * time.Second}
	if st, err := s.State(context.Background()); err != nil || !st.Running {
		t.Fatalf("State before Stop = %+v, %v; want the stand-in daemon running", st, err)
	}
	start := time.Now()
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	select {
	case at := <-reaped:
		if stopped.Before(at) {
			t.Errorf("Stop returned %v before the daemon was reaped", at.Sub(stopped))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the daemon was never reaped")
	}
	if took := stopped.Sub(start); took < reapAfter {
		t.Errorf("Stop took %v; it cannot have waited for the reap %v after the exit", took, reapAfter)
	}
}
