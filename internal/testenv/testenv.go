// Package testenv is what the starters of the real components Berth's tests
// run against share: the gate Need (a missing component skips the test
// locally and fails it under CI=true, so CI can never go green by
// skipping), free loopback ports, the repository's root and small buffers.
// Each component has its own package below: azurite, registry, entra,
// dockerd (dockerd and containerd), postgres and chromium.
package testenv

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// InCI reports whether the tests run in CI, where nothing may be skipped.
func InCI() bool { return os.Getenv("CI") == "true" }

// Need stops the test when a component is missing: a skip on a developer's
// machine, a failure in CI.
func Need(t testing.TB, what string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if InCI() {
		t.Fatalf("%s is required under CI=true: %v (run scripts/install-test-deps.sh)", what, err)
	}
	t.Skipf("%s not available: %v (run scripts/install-test-deps.sh)", what, err)
}

// NeedBinary is Need for a program on PATH; it returns the program's path.
func NeedBinary(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	Need(t, name, err)
	return p
}

// NeedRoot is Need for tests that must run as root (dockerd).
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Need(t, "root", os.ErrPermission)
	}
}

// FreePort returns a loopback address with a port nobody listens on now.
func FreePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

// RepoRoot returns the folder holding the module's go.mod, found by walking
// up from the test's working directory.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("find repo root: %v", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("find repo root: no go.mod above the working directory")
		}
		dir = parent
	}
}

// Tail returns the last n bytes of b, for error messages.
func Tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// Buffer is a bytes.Buffer that a child process's output (or a server's
// log) may write to while the test reads it.
type Buffer struct {
	// Max, when positive, is how many bytes it keeps: once it holds more,
	// further writes are dropped (and reported as written), so that a
	// chatty child cannot fill the memory of a long test.
	Max int

	mu sync.Mutex
	b  bytes.Buffer
}

// Write implements io.Writer.
func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.Max > 0 && l.b.Len() > l.Max {
		return len(p), nil
	}
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *Buffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Len returns how many bytes it holds.
func (l *Buffer) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Len()
}
