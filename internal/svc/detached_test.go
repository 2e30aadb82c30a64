//go:build !windows

package svc

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// childEnv makes the test binary act as a detached agent: "serve" runs
// until SIGTERM, "stubborn" ignores SIGTERM, "exit" fails at once.
const childEnv = "BERTH_SVC_TEST_CHILD"

func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) {
	case "":
		os.Exit(m.Run())
	case "exit":
		fmt.Println("child: config broken, exiting")
		os.Exit(3)
	}
	sig := make(chan os.Signal, 1)
	if os.Getenv(childEnv) == "stubborn" {
		signal.Ignore(syscall.SIGTERM)
	} else {
		signal.Notify(sig, syscall.SIGTERM)
	}
	fmt.Printf("child %d: running, args %q\n", os.Getpid(), os.Args[1:])
	select {
	case <-sig:
		fmt.Println("child: stopping on SIGTERM")
		os.Exit(0)
	case <-time.After(2 * time.Minute): // a leaked child ends by itself
		os.Exit(1)
	}
}

// detachedChild describes this test binary started as a detached agent in
// mode, with its files in a fresh folder, and stops it when the test ends.
func detachedChild(t *testing.T, mode string) Detached {
	t.Helper()
	t.Setenv(childEnv, mode) // the child inherits it
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	d := DetachedIn(t.TempDir(), exe, "run", "--config", "/etc/berth/agent.yaml")
	t.Cleanup(func() {
		if pid, running := DetachedPid(d.PidFile); running {
			p, _ := os.FindProcess(pid)
			_ = p.Kill()
		}
	})
	return d
}

func TestStartDetachedRunsOnceAndStops(t *testing.T) {
	d := detachedChild(t, "serve")
	ctx := context.Background()
	pid, err := StartDetached(ctx, d)
	if err != nil {
		t.Fatalf("StartDetached: %v", err)
	}
	if got, running := DetachedPid(d.PidFile); !running || got != pid {
		t.Fatalf("DetachedPid = %d, %v; want %d, running", got, running, pid)
	}
	// Already running: nothing new starts, the same pid comes back.
	again, err := StartDetached(ctx, d)
	if err != nil || again != pid {
		t.Fatalf("second StartDetached = %d, %v; want %d", again, err, pid)
	}
	// Its own session: not this test's process group, which a guest agent
	// kills on a timeout.
	if pgid, err := syscall.Getpgid(pid); err != nil || pgid == syscall.Getpgrp() {
		t.Errorf("child's process group = %d, %v; want one of its own", pgid, err)
	}
	if err := StopDetached(ctx, d.PidFile, 10*time.Second); err != nil {
		t.Fatalf("StopDetached: %v", err)
	}
	if _, running := DetachedPid(d.PidFile); running {
		t.Error("still running after StopDetached")
	}
	if _, err := os.Stat(d.PidFile); !os.IsNotExist(err) {
		t.Errorf("pid file after stop: %v; want it removed", err)
	}
	out, _ := os.ReadFile(d.LogFile)
	for _, want := range []string{fmt.Sprintf("child %d: running", pid), `"run" "--config"`, "stopping on SIGTERM"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("log %s lacks %q:\n%s", d.LogFile, want, out)
		}
	}
	// Stopping a stopped agent succeeds.
	if err := StopDetached(ctx, d.PidFile, time.Second); err != nil {
		t.Errorf("second StopDetached: %v", err)
	}
}

func TestStopDetachedKillsAfterTimeout(t *testing.T) {
	d := detachedChild(t, "stubborn")
	ctx := context.Background()
	pid, err := StartDetached(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	if err := StopDetached(ctx, d.PidFile, 500*time.Millisecond); err != nil {
		t.Fatalf("StopDetached: %v", err)
	}
	if d := time.Since(began); d < 500*time.Millisecond {
		t.Errorf("stopped after %v, before the timeout: SIGTERM was not ignored?", d)
	}
	if err := syscall.Kill(pid, 0); err == nil {
		if _, running := DetachedPid(d.PidFile); running {
			t.Errorf("pid %d still runs", pid)
		}
	}
}

func TestStartDetachedReportsAnEarlyExit(t *testing.T) {
	d := detachedChild(t, "exit")
	_, err := StartDetached(context.Background(), d)
	if err == nil || !strings.Contains(err.Error(), "exited at once") || !strings.Contains(err.Error(), d.LogFile) {
		t.Fatalf("StartDetached = %v; want an error naming the log", err)
	}
	if _, err := os.Stat(d.PidFile); !os.IsNotExist(err) {
		t.Errorf("pid file of a dead agent left: %v", err)
	}
}

// TestStalePidFile: a pid file left by a crash names a pid that is gone,
// or one reused by another process (here: this test itself, with a wrong
// start time). Neither is "running", StopDetached must not signal it, and
// StartDetached starts a new agent.
func TestStalePidFile(t *testing.T) {
	d := detachedChild(t, "serve")
	for name, content := range map[string]string{
		"pid reused by another process": formatPidFile(os.Getpid(), "1"),
		"pid gone":                      formatPidFile(1<<22+12345, "1"),
		"old format, pid only":          strconv.Itoa(os.Getpid()) + "\n",
		"garbage":                       "not a pid\n",
	} {
		t.Run(name, func(t *testing.T) {
			if err := os.MkdirAll(filepath.Dir(d.PidFile), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(d.PidFile, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			if pid, running := DetachedPid(d.PidFile); running {
				t.Fatalf("DetachedPid = %d, running; want not running", pid)
			}
			// Would SIGTERM this very test if it trusted the pid.
			if err := StopDetached(context.Background(), d.PidFile, time.Second); err != nil {
				t.Fatalf("StopDetached: %v", err)
			}
			if err := os.WriteFile(d.PidFile, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			pid, err := StartDetached(context.Background(), d)
			if err != nil {
				t.Fatal(err)
			}
			if pid == os.Getpid() {
				t.Fatal("StartDetached trusted a reused pid")
			}
			if err := StopDetached(context.Background(), d.PidFile, 10*time.Second); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestParsePidFile(t *testing.T) {
	tests := []struct {
		name, in string
		pid      int
		start    string
		wantErr  bool
	}{
		{"ours", "4711\n123456\n", 4711, "123456", false},
		{"no trailing newline", "4711\n123456", 4711, "123456", false},
		{"pid only", "4711\n", 0, "", true},
		{"negative pid", "-1\n5\n", 0, "", true},
		{"zero pid", "0\n5\n", 0, "", true},
		{"pid with spaces", " 4711\n5\n", 0, "", true},
		{"start not a number", "4711\n5x\n", 0, "", true},
		{"empty start", "4711\n\n", 0, "", true},
		{"three lines", "4711\n5\n6\n", 0, "", true},
		{"huge", strings.Repeat("9", 300) + "\n5\n", 0, "", true},
		{"pid overflow", "99999999999999999999\n5\n", 0, "", true},
		{"empty", "", 0, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pid, start, err := parsePidFile(tc.in)
			if (err != nil) != tc.wantErr || pid != tc.pid || start != tc.start {
				t.Errorf("parsePidFile(%q) = %d, %q, %v; want %d, %q, error %v", tc.in, pid, start, err, tc.pid, tc.start, tc.wantErr)
			}
		})
	}
}

func FuzzParsePidFile(f *testing.F) {
	for _, s := range []string{"4711\n123456\n", "4711\n", "", "0\n0\n", "-1\n5\n", "1\n\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		pid, start, err := parsePidFile(s)
		if err != nil {
			return
		}
		if pid <= 0 || start == "" {
			t.Fatalf("accepted pid %d, start %q", pid, start)
		}
		// What it accepts, it writes back the same.
		p2, s2, err := parsePidFile(formatPidFile(pid, start))
		if err != nil || p2 != pid || s2 != start {
			t.Fatalf("round trip of %d %q = %d %q %v", pid, start, p2, s2, err)
		}
	})
}

// TestStartDetachedConcurrently: two starts at once (two handler
// commands) must start one agent, not two that fight over agent.db.
func TestStartDetachedConcurrently(t *testing.T) {
	d := detachedChild(t, "serve")
	const n = 4
	pids := make(chan int, n)
	errs := make(chan error, n)
	for range n {
		go func() {
			pid, err := StartDetached(context.Background(), d)
			pids <- pid
			errs <- err
		}()
	}
	seen := map[int]bool{}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
		seen[<-pids] = true
	}
	if len(seen) != 1 {
		t.Errorf("%d starts at once gave pids %v; want one agent", n, seen)
	}
	out, _ := os.ReadFile(d.LogFile)
	if c := strings.Count(string(out), ": running"); c != 1 {
		t.Errorf("%d agents started; want 1:\n%s", c, out)
	}
	if err := StopDetached(context.Background(), d.PidFile, 10*time.Second); err != nil {
		t.Fatal(err)
	}
}

// RecordPid names a process another one can find (and stop) later, told
// apart from a reuse of its pid.
func TestRecordPid(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	if err := RecordPid(pidFile, os.Getpid()); err != nil {
		t.Fatal(err)
	}
	if pid, running := DetachedPid(pidFile); pid != os.Getpid() || !running {
		t.Fatalf("DetachedPid = %d, %v; want this process, running", pid, running)
	}
	if err := RecordPid(pidFile, 1<<30); err == nil {
		t.Fatal("RecordPid of a process that does not exist succeeded")
	}
}
