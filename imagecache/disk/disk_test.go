package disk

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/berthhq/berth/imagecache/cas"
	"github.com/berthhq/berth/imagecache/tiertest"
	"github.com/berthhq/berth/internal/statedb"
)

// newDisk opens a started tier in a fresh folder with its own agent.db.
func newDisk(t *testing.T, o Options) *Disk {
	t.Helper()
	if o.Dir == "" {
		o.Dir = filepath.Join(t.TempDir(), "cache")
	}
	if o.DB == nil {
		db, err := statedb.Open(filepath.Join(t.TempDir(), "agent.db"))
		if err != nil {
			t.Fatal(err)
		}
		o.DB = db
	}
	d, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := d.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return d
}

func TestConformance(t *testing.T) {
	tiertest.Run(t, func(t *testing.T) cas.Tier {
		parent := t.TempDir()
		dir := filepath.Join(parent, "cache")
		d := newDisk(t, Options{Dir: dir, MaxSize: 1 << 30})
		t.Cleanup(func() { checkContained(t, parent, "cache", "agent.db") })
		return d
	})
}

// checkContained fails when parent holds anything but names: a hostile ref
// name must not have written beside the cache folder.
func checkContained(t *testing.T, parent string, names ...string) {
	t.Helper()
	ents, err := os.ReadDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !slices.Contains(names, e.Name()) {
			t.Errorf("%s appeared beside the cache folder", e.Name())
		}
	}
	// And nothing under the cache but its three folders.
	ents, err = os.ReadDir(filepath.Join(parent, "cache"))
	if err != nil {
		return
	}
	for _, e := range ents {
		if !slices.Contains([]string{"blobs", "tmp", "refs"}, e.Name()) {
			t.Errorf("cache/%s appeared", e.Name())
		}
	}
}

func putBlob(t *testing.T, d *Disk, seed uint64, n int) cas.Digest {
	t.Helper()
	b := tiertest.Content(seed, n)
	dg := cas.FromBytes(b)
	if err := d.Put(t.Context(), dg, int64(n), bytes.NewReader(b)); err != nil {
		t.Fatalf("Put: %v", err)
	}
	return dg
}

func touch(t *testing.T, d *Disk, dg cas.Digest) {
	t.Helper()
	rc, _, err := d.Open(t.Context(), dg, 0)
	if err != nil {
		t.Fatalf("Open %s: %v", dg, err)
	}
	rc.Close()
}

func present(t *testing.T, d *Disk, dgs ...cas.Digest) []bool {
	t.Helper()
	var out []bool
	for _, dg := range dgs {
		_, err := d.Stat(t.Context(), dg)
		if err != nil && !errors.Is(err, cas.ErrNotFound) {
			t.Fatal(err)
		}
		out = append(out, err == nil)
	}
	return out
}

func TestEvictsLeastRecentlyUsed(t *testing.T) {
	const kib = 1 << 10
	d := newDisk(t, Options{MaxSize: 100 * kib})
	a := putBlob(t, d, 1, 30*kib)
	b := putBlob(t, d, 2, 30*kib)
	c := putBlob(t, d, 3, 30*kib)
	touch(t, d, a) // a is now more recent than b and c
	// 120 KiB > 100 KiB: evict down to 90 KiB, least recently used first.
	e := putBlob(t, d, 4, 30*kib)
	if diff := cmp.Diff([]bool{true, false, true, true}, present(t, d, a, b, c, e)); diff != "" {
		t.Errorf("after the 4th Put, present a,b,c,e (-want +got):\n%s", diff)
	}
	st := d.Stats()
	if st.Blobs != 3 || st.Bytes != 90*kib || st.Evictions != 1 || st.EvictedBytes != 30*kib {
		t.Errorf("Stats = %+v", st)
	}
	if _, err := os.Stat(d.blobPath(b.Hex())); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("evicted blob's file: %v", err)
	}

	// A blob being read is never evicted, even when it is the oldest.
	rc, _, err := d.Open(t.Context(), c, 0)
	if err != nil {
		t.Fatal(err)
	}
	touch(t, d, a)
	touch(t, d, e)
	// Order now: c (open), a, e. Another 30 KiB must evict a, not c.
	f := putBlob(t, d, 5, 30*kib)
	if diff := cmp.Diff([]bool{false, true, true, true}, present(t, d, a, c, e, f)); diff != "" {
		t.Errorf("with c open, present a,c,e,f (-want +got):\n%s", diff)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, tiertest.Content(3, 30*kib)) {
		t.Errorf("reading the open blob: %d bytes, %v", len(got), err)
	}

	// Prune to a target, then to nothing.
	res, err := d.Prune(t.Context(), 40*kib)
	if err != nil || res.Blobs != 2 || res.Bytes != 60*kib {
		t.Errorf("Prune(40 KiB) = %+v, %v; want 2 blobs, 60 KiB", res, err)
	}
	if res, err := d.Prune(t.Context(), 0); err != nil || res.Blobs != 1 || d.Stats().Blobs != 0 {
		t.Errorf("Prune(0) = %+v, %v; Stats %+v", res, err, d.Stats())
	}

	// A blob bigger than the whole cache is refused.
	big := tiertest.Content(6, 101*kib)
	if err := d.Put(t.Context(), cas.FromBytes(big), int64(len(big)), bytes.NewReader(big)); err == nil {
		t.Error("Put of a blob larger than maxSize succeeded")
	}
}

func TestReserveNeed(t *testing.T) {
	for _, tc := range []struct {
		max, total, reserved, n, want int64
	}{
		{100, 0, 0, 100, 0},
		{100, 60, 0, 30, -10},
		{100, 60, 30, 30, 20},
		{100, 0, 90, 20, 10},
		{100, 100, 0, 0, 0},
	} {
		if got := reserveNeed(tc.max, tc.total, tc.reserved, tc.n); got != tc.want {
			t.Errorf("reserveNeed(%d, %d, %d, %d) = %d, want %d", tc.max, tc.total, tc.reserved, tc.n, got, tc.want)
		}
	}
}

// TestReserve: reservations and blobs together stay within MaxSize;
// blobs are evicted to make room, but not those being read.
func TestReserve(t *testing.T) {
	const kib = 1 << 10
	d := newDisk(t, Options{MaxSize: 100 * kib})
	a := putBlob(t, d, 1, 30*kib)
	b := putBlob(t, d, 2, 30*kib)
	relA, err := d.Reserve(30 * kib) // 90 KiB: fits
	if err != nil {
		t.Fatal(err)
	}
	relB, err := d.Reserve(30 * kib) // 120 KiB: a goes
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]bool{false, true}, present(t, d, a, b)); diff != "" {
		t.Errorf("after reserving 60 KiB, present a,b (-want +got):\n%s", diff)
	}
	rc, _, err := d.Open(t.Context(), b, 0) // b is being read: it stays
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Reserve(20 * kib); !errors.Is(err, ErrNoRoom) {
		t.Errorf("reserving past MaxSize beside a blob being read: %v, want ErrNoRoom", err)
	}
	if _, err := d.Reserve(101 * kib); !errors.Is(err, ErrNoRoom) {
		t.Errorf("reserving more than MaxSize: %v, want ErrNoRoom", err)
	}
	rc.Close()
	relA()
	relA() // a second release gives nothing back twice
	if _, err := d.Reserve(10 * kib); err != nil {
		t.Errorf("after a release: %v", err)
	}
	// A Put past the limit counts the reservations too.
	relB()
	c := putBlob(t, d, 3, 50*kib) // 30 b + 10 reserved + 50 c = 90: fits
	if diff := cmp.Diff([]bool{true, true}, present(t, d, b, c)); diff != "" {
		t.Errorf("present b,c (-want +got):\n%s", diff)
	}
	putBlob(t, d, 4, 20*kib) // 110: evict down to 90−10 reserved
	if got := d.Stats().Bytes; got > 80*kib {
		t.Errorf("blobs hold %d KiB beside 10 KiB reserved; want at most 80", got/kib)
	}
}

func TestIndexSurvivesRestart(t *testing.T) {
	const kib = 1 << 10
	dir := filepath.Join(t.TempDir(), "cache")
	db, err := statedb.Open(filepath.Join(t.TempDir(), "agent.db"))
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Dir: dir, MaxSize: 100 * kib, DB: db}
	d1, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := d1.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	a := putBlob(t, d1, 1, 30*kib)
	b := putBlob(t, d1, 2, 30*kib)
	c := putBlob(t, d1, 3, 30*kib)
	touch(t, d1, a) // only in memory until Close flushes it
	if err := d1.Close(); err != nil {
		t.Fatal(err)
	}
	var rec record
	if ok, err := db.Get(t.Context(), IndexBucket, a.Hex(), &rec); err != nil || !ok || rec.Size != 30*kib {
		t.Fatalf("index record of a: %+v, %v, %v", rec, ok, err)
	}

	// Files keep their write order in mtime (a oldest), so only the
	// persisted access times can tell that b is the least recently used.
	d2 := newDisk(t, o)
	if st := d2.Stats(); st.Blobs != 3 || st.Bytes != 90*kib {
		t.Fatalf("after restart Stats = %+v", st)
	}
	e := putBlob(t, d2, 4, 30*kib)
	if diff := cmp.Diff([]bool{true, false, true, true}, present(t, d2, a, b, c, e)); diff != "" {
		t.Errorf("after restart and a 4th Put, present a,b,c,e (-want +got):\n%s", diff)
	}
}

func TestIndexRebuiltFromFolder(t *testing.T) {
	const kib = 1 << 10
	dir := filepath.Join(t.TempDir(), "cache")
	dbPath := filepath.Join(t.TempDir(), "agent.db")
	db, err := statedb.Open(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	d1, err := New(Options{Dir: dir, DB: db})
	if err != nil {
		t.Fatal(err)
	}
	a := putBlob(t, d1, 1, 10*kib)
	b := putBlob(t, d1, 2, 20*kib)
	if err := d1.Close(); err != nil {
		t.Fatal(err)
	}
	// Stale: b's file is gone and a stray upload is left in tmp/.
	if err := os.Remove(d1.blobPath(b.Hex())); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"leftover.part", "busy.part"} {
		if err := os.WriteFile(filepath.Join(dir, "tmp", name), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(filepath.Join(dir, "tmp", "leftover.part"), old, old); err != nil {
		t.Fatal(err)
	}
	d2 := newDisk(t, Options{Dir: dir, DB: db})
	if diff := cmp.Diff([]bool{true, false}, present(t, d2, a, b)); diff != "" {
		t.Errorf("present a,b (-want +got):\n%s", diff)
	}
	// The stale upload is removed; one written recently may belong to
	// another process using the folder.
	if ents, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(ents) != 1 || ents[0].Name() != "busy.part" {
		t.Errorf("tmp/ after start: %v, want only busy.part", ents)
	}
	var rec record
	if ok, _ := db.Get(t.Context(), IndexBucket, b.Hex(), &rec); ok {
		t.Error("the record of the vanished blob is still in agent.db after Start")
	}

	// Missing DB: a fresh agent.db, same folder.
	db2, err := statedb.Open(filepath.Join(t.TempDir(), "agent.db"))
	if err != nil {
		t.Fatal(err)
	}
	d3 := newDisk(t, Options{Dir: dir, DB: db2})
	if st := d3.Stats(); st.Blobs != 1 || st.Bytes != 10*kib {
		t.Errorf("rebuilt from the folder: Stats = %+v", st)
	}
	if ok, _ := db2.Get(t.Context(), IndexBucket, a.Hex(), &rec); !ok || rec.Size != 10*kib {
		t.Errorf("rebuilt index not written to the new agent.db: %+v", rec)
	}
}

func TestVerifyRemovesCorrupt(t *testing.T) {
	d := newDisk(t, Options{})
	good := putBlob(t, d, 1, 50_000)
	flipped := putBlob(t, d, 2, 50_000)
	truncated := putBlob(t, d, 3, 50_000)
	gone := putBlob(t, d, 4, 50_000)
	corrupt(t, d.blobPath(flipped.Hex()), func(b []byte) []byte { b[100] ^= 0x40; return b })
	corrupt(t, d.blobPath(truncated.Hex()), func(b []byte) []byte { return b[:len(b)-1] })
	if err := os.Remove(d.blobPath(gone.Hex())); err != nil {
		t.Fatal(err)
	}
	var seen []VerifyProgress
	removed, err := d.Verify(t.Context(), func(p VerifyProgress) { seen = append(seen, p) })
	if err != nil {
		t.Fatal(err)
	}
	want := []cas.Digest{flipped, truncated, gone}
	slices.Sort(want)
	slices.Sort(removed)
	if diff := cmp.Diff(want, removed); diff != "" {
		t.Errorf("Verify removed (-want +got):\n%s", diff)
	}
	if len(seen) != 4 || seen[3].Checked != 4 || seen[3].Total != 4 || seen[3].Bytes != 200_000 {
		t.Errorf("progress: %+v", seen)
	}
	if diff := cmp.Diff([]bool{true, false, false, false}, present(t, d, good, flipped, truncated, gone)); diff != "" {
		t.Errorf("present after Verify (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(d.blobPath(flipped.Hex())); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("corrupt file still on disk: %v", err)
	}
	if st := d.Stats(); st.Corrupt != 3 || st.Blobs != 1 {
		t.Errorf("Stats = %+v", st)
	}
	// The blob can be stored again.
	putBlob(t, d, 2, 50_000)
	if removed, err := d.Verify(t.Context(), nil); err != nil || len(removed) != 0 {
		t.Errorf("second Verify = %v, %v", removed, err)
	}
}

func TestOpenNoticesResizedFile(t *testing.T) {
	d := newDisk(t, Options{})
	dg := putBlob(t, d, 1, 10_000)
	corrupt(t, d.blobPath(dg.Hex()), func(b []byte) []byte { return append(b, 'x') })
	if _, _, err := d.Open(t.Context(), dg, 0); !errors.Is(err, cas.ErrNotFound) {
		t.Errorf("Open of a resized file = %v, want ErrNotFound", err)
	}
	if present(t, d, dg)[0] {
		t.Error("resized blob still indexed")
	}
}

func TestDeleteWhileOpen(t *testing.T) {
	d := newDisk(t, Options{})
	b := tiertest.Content(1, 200_000)
	dg := putBlob(t, d, 1, 200_000)
	rc, _, err := d.Open(t.Context(), dg, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if err := d.Delete(t.Context(), dg); err != nil {
		t.Fatalf("Delete while open: %v", err)
	}
	if present(t, d, dg)[0] {
		t.Error("deleted blob still indexed")
	}
	putBlob(t, d, 1, 200_000)
	got, err := io.ReadAll(rc)
	if err != nil || !bytes.Equal(got, b) {
		t.Errorf("the reader open before Delete read %d bytes, %v", len(got), err)
	}
}

func TestRefFileName(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"docker.io/library/busybox/tags/latest", "docker%2Eio%2Flibrary%2Fbusybox%2Ftags%2Flatest.ref"},
		{"Tag", "%54ag.ref"},
		{"con", "%63on.ref"},
		{"com1", "%63om1.ref"},
		{"com", "com.ref"},
		{"a%2Fb", "a%252%46b.ref"},
	} {
		if got := refFileName(tc.in); got != tc.want {
			t.Errorf("refFileName(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	long := refFileName(strings.Repeat("A", 100))
	if len(long) != 1+64+4 || long[0] != '~' {
		t.Errorf("long name: %q", long)
	}
}

func TestNoDBWritesOnRead(t *testing.T) {
	dbPath := filepath.Join(t.TempDir(), "agent.db")
	db, err := statedb.Open(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	d := newDisk(t, Options{DB: db})
	dg := putBlob(t, d, 1, 1000)
	if err := d.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	before, err := os.Stat(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	// Make any write visible in the modification time.
	old := before.ModTime().Add(-time.Hour)
	if err := os.Chtimes(dbPath, old, old); err != nil {
		t.Fatal(err)
	}
	for range 100 {
		touch(t, d, dg)
		if _, err := d.Stat(t.Context(), dg); err != nil {
			t.Fatal(err)
		}
	}
	after, err := os.Stat(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	if !after.ModTime().Equal(old) {
		t.Error("reads wrote agent.db; access times must be flushed in batches")
	}
}

func corrupt(t *testing.T, path string, fn func([]byte) []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, fn(b), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestFlushLoopWritesAccessTimes(t *testing.T) {
	db, err := statedb.Open(filepath.Join(t.TempDir(), "agent.db"))
	if err != nil {
		t.Fatal(err)
	}
	d := newDisk(t, Options{DB: db, FlushInterval: 20 * time.Millisecond})
	dg := putBlob(t, d, 1, 1000)
	var first record
	deadline := time.Now().Add(10 * time.Second)
	for {
		if ok, err := db.Get(t.Context(), IndexBucket, dg.Hex(), &first); err != nil {
			t.Fatal(err)
		} else if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the Put's index record was not flushed within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	touch(t, d, dg)
	for {
		var rec record
		if _, err := db.Get(t.Context(), IndexBucket, dg.Hex(), &rec); err != nil {
			t.Fatal(err)
		}
		if rec.ATime > first.ATime {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the access time was not flushed within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// `berth-agent cache prune` opens the tier beside the running daemon's; the
// daemon's figures and index must follow what it removed.
func TestDaemonFollowsPruneByAnotherProcess(t *testing.T) {
	const kib = 1 << 10
	dir := filepath.Join(t.TempDir(), "cache")
	db, err := statedb.Open(filepath.Join(t.TempDir(), "agent.db"))
	if err != nil {
		t.Fatal(err)
	}
	daemon := newDisk(t, Options{Dir: dir, DB: db, FlushInterval: 20 * time.Millisecond})
	for i := range 4 {
		putBlob(t, daemon, uint64(i+1), 30*kib)
	}
	if err := daemon.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	cli, err := New(Options{Dir: dir, DB: db})
	if err != nil {
		t.Fatal(err)
	}
	res, err := cli.Prune(t.Context(), 60*kib)
	if err != nil {
		t.Fatal(err)
	}
	if err := cli.Close(); err != nil {
		t.Fatal(err)
	}
	if res.Blobs != 2 {
		t.Fatalf("prune removed %d blobs, want 2", res.Blobs)
	}
	deadline := time.Now().Add(10 * time.Second)
	for daemon.Stats().Bytes != 60*kib {
		if time.Now().After(deadline) {
			t.Fatalf("the daemon still counts %+v 10s after the prune, want 60 KiB", daemon.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st := daemon.Stats(); st.Blobs != 2 {
		t.Errorf("daemon Stats after prune = %+v, want 2 blobs", st)
	}
}
