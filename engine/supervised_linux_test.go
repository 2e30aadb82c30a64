package engine

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// An engine that exits on SIGTERM but is not reaped yet (its parent is a
// killed agent's reaper, here this test) still counts: dockerd refuses to
// start while its pid file names a pid that /proc has. Stop returns only
// once the exited daemon is reaped.
func TestStopWaitsUntilTheDaemonIsReaped(t *testing.T) {
	dir := t.TempDir()
	exe := standIn(t, dir, "/bin/sleep")
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

// standIn copies the program at src to <dir>/1.0/dockerd, where Supervised
// takes it for an engine daemon.
func standIn(t *testing.T, dir, src string) string {
	t.Helper()
	exe := filepath.Join(dir, "1.0", "dockerd")
	if err := os.MkdirAll(filepath.Dir(exe), 0o755); err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(src)
	if err != nil {
		t.Skipf("no %s to stand in for an engine daemon", src)
	}
	defer in.Close()
	out, err := os.OpenFile(exe, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return exe
}

func TestParseStat(t *testing.T) {
	// Fields 4 to 51 do not matter here; 48 of them.
	mid := strings.Repeat("0 ", 48)
	tests := []struct {
		name, line string
		want       procStat
	}{
		{"running", "12 (dockerd) S " + mid + "0", procStat{state: 'S', exitCode: 0}},
		{"exited 0", "12 (dockerd) Z " + mid + "0", procStat{state: 'Z', exitCode: 0}},
		{"killed by SIGTERM", "12 (dockerd) Z " + mid + "15", procStat{state: 'Z', exitCode: 15}},
		{"exited 1", "12 (dockerd) Z " + mid + "256", procStat{state: 'Z', exitCode: 256}},
		{"name with spaces and parens", "12 (a) b (c) Z " + mid + "9", procStat{state: 'Z', exitCode: 9}},
		{"old kernel: no exit code", "12 (dockerd) Z 1 12 12", procStat{state: 'Z', exitCode: -1}},
		{"garbage exit code", "12 (dockerd) Z " + mid + "x", procStat{state: 'Z', exitCode: -1}},
		{"no parenthesis", "12 dockerd Z", procStat{exitCode: -1}},
		{"nothing after the name", "12 (dockerd)", procStat{exitCode: -1}},
		{"empty", "", procStat{exitCode: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parseStat(tt.line)
			if got != tt.want {
				t.Errorf("parseStat(%q) = %+v, want %+v", tt.line, got, tt.want)
			}
		})
	}
}
