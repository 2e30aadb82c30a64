package statedb_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/berthhq/berth/internal/statedb"
	"github.com/berthhq/berth/internal/statedb/statedbtest"
)

type rec struct{ N int }

// Every damage leaves a database that works; a damage that is found is
// moved aside (the copy kept, byte for byte) and remembered; a torn meta
// page is rewritten with the records kept (issue 9, item 5).
func TestDamagedFileIsReplaced(t *testing.T) {
	for _, dm := range statedbtest.Damages() {
		t.Run(dm.Name, func(t *testing.T) {
			ctx := context.Background()
			path := filepath.Join(t.TempDir(), "agent.db")
			statedbtest.Sample(t, path)
			want := dm.Want(t, path)
			dm.Do(t, path)
			damaged, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			at := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
			db, err := statedb.OpenWith(ctx, path, statedb.Options{Now: func() time.Time { return at }})
			if err != nil {
				t.Fatalf("OpenWith: %v", err)
			}
			copies := db.Copies()
			r, rebuilt, err := db.LastRebuild(ctx)
			if err != nil {
				t.Fatalf("LastRebuild: %v", err)
			}
			t.Logf("want %s; rebuilt %v (%s)", want, rebuilt, r.Reason)
			switch {
			case rebuilt:
				if want == statedbtest.Repaired {
					t.Errorf("a torn meta page made the file be replaced; it is rewritten from the sound one")
				}
				if len(copies) != 1 || r.Copy != copies[0] || !r.At.Equal(at) || r.Reason == "" {
					t.Errorf("rebuild %+v; copies %v", r, copies)
				}
				if kept, err := os.ReadFile(r.Copy); err != nil || string(kept) != string(damaged) {
					t.Errorf("the damaged copy %s is not the damaged file byte for byte (%v)", r.Copy, err)
				}
			case want == statedbtest.Replaced:
				t.Fatalf("the damage was not found: copies %v", copies)
			case len(copies) != 0:
				t.Fatalf("copies %v without a rebuild record", copies)
			case want == statedbtest.Repaired && !statedbtest.SampleIntact(ctx, db):
				t.Errorf("a torn meta page was rewritten, but the records are gone")
			}
			// Whatever happened, the database works.
			if err := db.Put(ctx, "outbox", "new", rec{N: 7}); err != nil {
				t.Fatalf("Put after the damage: %v", err)
			}
			var got rec
			if found, err := db.Get(ctx, "outbox", "new", &got); err != nil || !found || got.N != 7 {
				t.Fatalf("Get after the damage = %v, %v, %+v", found, err, got)
			}
		})
	}
}

// A directory in the place of agent.db is not moved (the agent did not put
// it there; it may be a mount point): every use fails with ErrUnusable
// naming the path and the fix, and once it is gone the agent creates the
// file again without a restart.
func TestDirectoryInPlace(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "agent.db")
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	db, err := statedb.OpenWith(ctx, path, statedb.Options{})
	if err != nil {
		t.Fatalf("OpenWith: %v", err)
	}
	for name, err := range map[string]error{
		"Put":   db.Put(ctx, "b", "k", rec{1}),
		"Get":   func() error { _, err := db.Get(ctx, "b", "k", &rec{}); return err }(),
		"Probe": db.Probe(ctx),
	} {
		if !errors.Is(err, statedb.ErrUnusable) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "is a directory, not a file") || !strings.Contains(err.Error(), "remove or rename it") {
			t.Errorf("%s = %v; want ErrUnusable naming %s and the fix", name, err, path)
		}
	}
	if fi, err := os.Stat(path); err != nil || !fi.IsDir() {
		t.Errorf("the directory was moved (%v)", err)
	}
	if c := db.Copies(); len(c) != 0 {
		t.Errorf("copies %v", c)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := db.Put(ctx, "b", "k", rec{1}); err != nil {
		t.Errorf("Put once the directory is gone: %v", err)
	}
}

// immutable makes path read-only even for root (chattr +i), or skips.
func immutable(t *testing.T, path string) {
	t.Helper()
	if out, err := exec.Command("chattr", "+i", path).CombinedOutput(); err != nil {
		t.Skipf("chattr +i: %v: %s (a read-only file needs it when the tests run as root)", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("chattr", "-i", path).Run() })
}

// A sound file the agent may not write still reads; writes fail with
// ErrUnusable naming the path and the fix; nothing is moved.
func TestReadOnlyFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "agent.db")
	statedbtest.Sample(t, path)
	if err := os.Chmod(path, 0o400); err != nil {
		t.Fatal(err)
	}
	immutable(t, path)
	db, err := statedb.OpenWith(ctx, path, statedb.Options{})
	if err != nil {
		t.Fatalf("OpenWith: %v", err)
	}
	if !statedbtest.SampleIntact(ctx, db) {
		t.Error("a read-only file cannot be read")
	}
	for name, err := range map[string]error{"Put": db.Put(ctx, "b", "k", rec{1}), "Probe": db.Probe(ctx)} {
		if !errors.Is(err, statedb.ErrUnusable) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "chattr -i") {
			t.Errorf("%s = %v; want ErrUnusable naming %s and the fix", name, err, path)
		}
	}
	if c := db.Copies(); len(c) != 0 {
		t.Errorf("a sound read-only file was moved: %v", c)
	}
}

// A damaged file that cannot be moved aside (immutable) gives a clear
// error naming the path and the fix, every time, and no crash; once it can
// be moved, the next use replaces it.
func TestDamagedFileThatCannotBeMoved(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "agent.db")
	statedbtest.Sample(t, path)
	if err := os.Truncate(path, 3*statedbtest.PageSize); err != nil {
		t.Fatal(err)
	}
	immutable(t, path)
	db, err := statedb.OpenWith(ctx, path, statedb.Options{})
	if err != nil {
		t.Fatalf("OpenWith: %v", err)
	}
	for range 2 {
		err := db.Put(ctx, "b", "k", rec{1})
		if !errors.Is(err, statedb.ErrUnusable) || !strings.Contains(err.Error(), "cannot be moved aside") || !strings.Contains(err.Error(), path) {
			t.Errorf("Put = %v; want ErrUnusable saying it cannot be moved aside", err)
		}
	}
	if err := exec.Command("chattr", "-i", path).Run(); err != nil {
		t.Fatal(err)
	}
	if err := db.Put(ctx, "b", "k", rec{1}); err != nil {
		t.Fatalf("Put once the file can be moved: %v", err)
	}
	if _, rebuilt, _ := db.LastRebuild(ctx); !rebuilt || len(db.Copies()) != 1 {
		t.Errorf("rebuilt %v, copies %v; want the file replaced", rebuilt, db.Copies())
	}
}

// A panic of the caller's own transaction code on a sound file is not
// damage: the file stays.
func TestPanicInTransactionOfASoundFile(t *testing.T) {
	ctx := context.Background()
	db, _ := openSample(t)
	err := db.Update(ctx, func(*bolt.Tx) error { panic("a bug") })
	if err == nil || !strings.Contains(err.Error(), "a bug") {
		t.Errorf("Update = %v; want the panic as an error", err)
	}
	if c := db.Copies(); len(c) != 0 || !statedbtest.SampleIntact(ctx, db) {
		t.Errorf("a sound file was replaced after a panic of the caller's: copies %v", c)
	}
}

// At most three damaged copies are kept.
func TestDamagedCopiesArePruned(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "agent.db")
	at := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	var names []string
	for i := range 5 {
		if err := os.WriteFile(path, []byte("not a database, but long enough to be taken for one: "+strings.Repeat("x", 9000)), 0o600); err != nil {
			t.Fatal(err)
		}
		db, err := statedb.OpenWith(ctx, path, statedb.Options{Now: func() time.Time { return at.Add(time.Duration(i) * time.Hour) }})
		if err != nil {
			t.Fatal(err)
		}
		names = db.Copies()
	}
	if len(names) != 3 || !strings.HasSuffix(names[0], "agent.db.damaged-20261204T120000.000Z") || !strings.HasSuffix(names[2], "agent.db.damaged-20261204T140000.000Z") {
		t.Errorf("copies %v; want the newest three", names)
	}
}

// A file damaged while the agent runs (not at its start) is found by the
// transactions that meet it, and replaced once, however many meet it at
// the same time; every one of them then lands in the new file. Truncated,
// the file is refused before bbolt opens it; with its bucket pages zeroed,
// bbolt opens it and panics inside the transaction.
func TestDamagedWhileRunning(t *testing.T) {
	for name, damage := range map[string]func(t *testing.T, path string){
		"truncated": func(t *testing.T, path string) {
			if err := os.Truncate(path, 3*statedbtest.PageSize); err != nil {
				t.Fatal(err)
			}
		},
		"bucket pages zeroed": func(t *testing.T, path string) {
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			for id, kind := range statedbtest.PageKinds(t, path) {
				if kind == "branch" || kind == "leaf" {
					if _, err := f.WriteAt(make([]byte, statedbtest.PageSize), id*statedbtest.PageSize); err != nil {
						t.Fatal(err)
					}
				}
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			db, path := openSample(t)
			damage(t, path)
			var wg sync.WaitGroup
			for i := range 8 {
				wg.Go(func() {
					if err := db.Put(ctx, "queue", fmt.Sprint(i), rec{N: i}); err != nil {
						t.Errorf("Put %d: %v", i, err)
					}
				})
			}
			wg.Wait()
			r, _, _ := db.LastRebuild(ctx)
			if c := db.Copies(); len(c) != 1 {
				t.Fatalf("copies %v; want one", c)
			}
			t.Logf("replaced: %s", r.Reason)
			for i := range 8 {
				var got rec
				if found, err := db.Get(ctx, "queue", fmt.Sprint(i), &got); err != nil || !found || got.N != i {
					t.Errorf("record %d: %v, %v, %+v", i, found, err, got)
				}
			}
		})
	}
}

// openSample opens a sound sample file.
func openSample(t *testing.T) (*statedb.DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agent.db")
	statedbtest.Sample(t, path)
	db, err := statedb.OpenWith(context.Background(), path, statedb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return db, path
}
