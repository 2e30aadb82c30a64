package engine

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A daemon stopped before it finished starting leaves its pid file behind,
// and its zombie stays until its reaper collects it: init, for the orphan
// of a killed agent, which may take seconds or never come (here the test,
// its parent, never reaps it until the end). dockerd refuses to start
// while its pid file names a pid that /proc has. Stop must not wait for
// the reap, and the next Start must still succeed: the stand-in for the new
// dockerd runs dockerd's own pid-file check.
func TestStartAfterStopOfAnUnreapedDaemon(t *testing.T) {
	dir := t.TempDir()
	exe := standIn(t, dir, "/bin/sleep")
	old := exec.Command(exe, "600")
	if err := old.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = old.Process.Kill(); _ = old.Wait() })
	pidFile := filepath.Join(dir, "docker.pid")
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(old.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}

	s := &Supervised{Dir: dir, Exe: "dockerd", StopTimeout: 5 * time.Second}
	if st, err := s.State(context.Background()); err != nil || !st.Running {
		t.Fatalf("State before Stop = %+v, %v; want the stand-in daemon running", st, err)
	}
	start := time.Now()
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("Stop took %v: it waited for a reap that may never come", took)
	}
	if st, ok := readStat(old.Process.Pid); !ok || st.state != 'Z' {
		t.Fatalf("after Stop the old daemon is %q (in /proc: %v); want an unreaped zombie for this test", st.state, ok)
	}

	// dockerd's check (pidfile.New): the file names a pid /proc has.
	out := filepath.Join(dir, "new-daemon")
	check := `if [ -f "$1" ] && [ -e "/proc/$(cat "$1")" ]; then echo "pid file found" >"$2"; else echo started >"$2"; fi`
	d := Daemon{Name: "docker", Path: "/bin/sh", Args: []string{"-c", check, "sh", pidFile, out}, PIDFile: pidFile}
	if err := s.Start(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	var got []byte
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if b, err := os.ReadFile(out); err == nil && strings.HasSuffix(string(b), "\n") {
			got = b
			break
		}
	}
	if strings.TrimSpace(string(got)) != "started" {
		t.Errorf("the new daemon said %q, want %q", strings.TrimSpace(string(got)), "started")
	}
}

// A pid file is removed only when it names a zombie: one that names a live
// process stops dockerd, as it should, and one dockerd would ignore is left
// to it.
func TestPIDFileStale(t *testing.T) {
	// The pids that are zombies whose exit has finished; 11 lives.
	unreaped := func(pid int) bool { return pid == 10 }
	tests := []struct {
		name      string
		data      string
		wantPID   int
		wantStale bool
	}{
		{"a zombie", "10", 10, true},
		{"a zombie, with a newline", "10\n", 10, true},
		{"a zombie, spaces around", "  10 \t\n", 10, true},
		{"a live daemon", "11", 11, false},
		{"not in /proc, or not a zombie", "99", 99, false},
		{"empty", "", 0, false},
		{"not a number", "docker", 0, false},
		{"two numbers", "10 11", 0, false},
		{"negative", "-10", 0, false},
		{"zero", "0", 0, false},
		{"plus sign", "+10", 10, true},
		{"beyond Linux's pid limit", "4194305", 0, false},
		{"huge", "99999999999999999999999", 0, false},
		{"long padding, as dockerd reads it", strings.Repeat(" ", 100) + "10", 10, true},
		{"beyond 4 KiB", strings.Repeat(" ", 4096) + "10", 0, false},
		{"NUL", "10\x00", 0, false},
		{"hex", "0xa", 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pid, stale := pidFileStale([]byte(tc.data), unreaped)
			if pid != tc.wantPID || stale != tc.wantStale {
				t.Errorf("pidFileStale(%q) = %d, %v; want %d, %v", tc.data, pid, stale, tc.wantPID, tc.wantStale)
			}
		})
	}
}

func FuzzParsePIDFile(f *testing.F) {
	for _, seed := range []string{"10", "10\n", " 7 ", "", "-1", "0", "4194304", "4194305", "0xa", "+3", "1e3", "\x00"} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		pid, ok := parsePIDFile(data)
		if !ok {
			if pid != 0 {
				t.Errorf("parsePIDFile(%q) = %d, false; want 0 when refused", data, pid)
			}
			return
		}
		if pid <= 0 || pid > maxPID {
			t.Errorf("parsePIDFile(%q) = %d, outside 1..%d", data, pid, maxPID)
		}
		if strconv.Itoa(pid) != strings.TrimLeft(strings.TrimSpace(string(data)), "+0") {
			t.Errorf("parsePIDFile(%q) = %d, which the file does not say", data, pid)
		}
	})
}

// Stop waits until a stopped daemon has finished exiting (gone, or a
// zombie whose files are closed), not until it is reaped.
func TestExitDone(t *testing.T) {
	tests := []struct {
		name    string
		ps      procStat
		ok      bool
		threads int
		want    bool
	}{
		{"gone from /proc", procStat{exitCode: -1}, false, 0, true},
		{"a zombie", procStat{state: 'Z', exitCode: 0}, true, 1, true},
		{"killed, a zombie", procStat{state: 'Z', exitCode: 9}, true, 1, true},
		{"a zombie whose task list is gone too", procStat{state: 'Z', exitCode: 0}, true, 0, true},
		{"main thread a zombie, others still exiting", procStat{state: 'Z', exitCode: -1}, true, 12, false},
		{"still exiting (running)", procStat{state: 'R', exitCode: -1}, true, 1, false},
		{"still exiting (disk sleep)", procStat{state: 'D', exitCode: -1}, true, 3, false},
		{"sleeping", procStat{state: 'S', exitCode: -1}, true, 20, false},
		{"stat unparsable", procStat{exitCode: -1}, true, 1, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := exitDone(tc.ps, tc.ok, tc.threads); got != tc.want {
				t.Errorf("exitDone(%+v, %v, %d) = %v, want %v", tc.ps, tc.ok, tc.threads, got, tc.want)
			}
		})
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
