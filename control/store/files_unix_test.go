//go:build unix

package store_test

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/berthhq/berth/control/store"
	"github.com/google/go-cmp/cmp"
)

// TestSQLiteFilesOwnerOnly: the database, its -wal and its -shm hold every
// host's reports and the hashes of tokens and sessions; other users of the
// control host may not read them, whatever the umask. Files left readable
// by an older version are narrowed at the next open.
func TestSQLiteFilesOwnerOnly(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("mode bits are the read-only flag on Windows; the folder's ACL decides")
	}
	old := syscall.Umask(0o022) // the usual umask, whatever the test runner's
	t.Cleanup(func() { syscall.Umask(old) })
	ctx := context.Background()
	modes := func(path string) map[string]os.FileMode {
		t.Helper()
		m := map[string]os.FileMode{}
		for _, p := range []string{path, path + "-wal", path + "-shm"} {
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatalf("stat: %v", err)
			}
			m[filepath.Base(p)] = fi.Mode().Perm()
		}
		return m
	}
	want := func(path string) map[string]os.FileMode {
		b := filepath.Base(path)
		return map[string]os.FileMode{b: 0o600, b + "-wal": 0o600, b + "-shm": 0o600}
	}
	path := filepath.Join(t.TempDir(), "new", "control.db")
	s, err := store.Open(ctx, "sqlite://"+path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, _, err := s.IssueToken(ctx, store.RoleOperator, "alice", time.Now()); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want(path), modes(path)); diff != "" {
		t.Errorf("a new store's files (-want +got):\n%s", diff)
	}

	// A store an older version left 0644 (and its WAL and shared memory
	// with it) is narrowed.
	loose := filepath.Join(t.TempDir(), "control.db")
	s2, err := store.Open(ctx, "sqlite://"+loose, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s2.IssueToken(ctx, store.RoleOperator, "bob", time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{loose, loose + "-wal", loose + "-shm"} {
		if err := os.Chmod(p, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s3, err := store.Open(ctx, "sqlite://"+loose, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s3.Close()
	s2.Close()
	if diff := cmp.Diff(want(loose), modes(loose)); diff != "" {
		t.Errorf("an old store's files after open (-want +got):\n%s", diff)
	}
}
