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

// A daemon that shuts down by itself on SIGTERM (exit status 0, as dockerd
// does after removing its pid file) is not waited for until its reaper gets
// to it: the host's init may take seconds, which was most of the engine
// API's downtime in an upgrade (issue 9, item 14).
func TestStopDoesNotWaitForTheReapOfACleanExit(t *testing.T) {
	dir := t.TempDir()
	exe := standIn(t, dir, "/bin/bash")
	// bash as "dockerd": exits 0 on SIGTERM once it has said it is ready
	// (before that, SIGTERM kills it: an unclean exit).
	ready := filepath.Join(dir, "ready")
	cmd := exec.Command(exe, "-c", `trap "exit 0" TERM; : >"$1"; while :; do sleep 0.02; done`, "standin", ready)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the stand-in daemon never became ready")
		}
	}
	const reapAfter = 2 * time.Second
	reaped := make(chan struct{})
	go func() {
		defer close(reaped)
		for !zombie(cmd.Process.Pid) {
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(reapAfter)
		_ = cmd.Wait()
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-reaped })

	s := &Supervised{Dir: dir, Exe: "dockerd", StopTimeout: 5 * time.Second}
	start := time.Now()
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took >= reapAfter {
		t.Errorf("Stop took %v: it waited for the reap of a daemon that exited cleanly", took)
	}
	if st, err := s.State(context.Background()); err != nil || st.Running {
		t.Errorf("State after Stop = %+v, %v; want nothing running", st, err)
	}
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
			if tt.want.state == 'Z' && got.cleanExit() != (tt.want.exitCode == 0) {
				t.Errorf("cleanExit = %v", got.cleanExit())
			}
		})
	}
}
