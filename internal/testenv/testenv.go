// Package testenv starts the real components Berth's tests run against
// (dockerd, Debian's registry, Azurite) on free loopback ports and cleans up
// after them. A missing component skips the test locally and fails it under
// CI=true, so CI can never go green by skipping.
package testenv

import (
	"bytes"
	"net"
	"os"
	"os/exec"
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

// Buffer is a bytes.Buffer that a child process's output (or a server's
// log) may write to while the test reads it.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write implements io.Writer.
func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *Buffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
