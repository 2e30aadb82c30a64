package logging

import (
	"bufio"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"
)

// writeLines logs n numbered lines of about 200 bytes each through a JSON
// logger on File(path, r), then closes it.
func writeLines(t *testing.T, path string, r Rotation, n int) {
	t.Helper()
	w, err := File(path, r)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewJSONHandler(w, nil))
	pad := strings.Repeat("x", 150)
	for i := range n {
		log.Info("line", "seq", i, "pad", pad)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// logFiles lists path and its rotated files, oldest first (lumberjack's
// names sort by time).
func logFiles(t *testing.T, path string) []string {
	t.Helper()
	prefix := strings.TrimSuffix(filepath.Base(path), ".log") + "-"
	ents, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	var rotated []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			rotated = append(rotated, filepath.Join(filepath.Dir(path), e.Name()))
		}
	}
	sort.Strings(rotated)
	return append(rotated, path)
}

// readSeqs reads every line of files as JSON and returns the seq fields
// in order; a line that is not JSON fails the test.
func readSeqs(t *testing.T, files []string) []int {
	t.Helper()
	var seqs []int
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		for n := 1; sc.Scan(); n++ {
			var rec struct{ Seq *int }
			if err := json.Unmarshal(sc.Bytes(), &rec); err != nil || rec.Seq == nil {
				t.Fatalf("%s:%d is not a JSON log line (%v): %.80s", f, n, err, sc.Text())
			}
			seqs = append(seqs, *rec.Seq)
		}
		fh.Close()
	}
	return seqs
}

// Past the size limit the file rotates; with room for every rotated file
// nothing is lost or split across a rotation: every line whole, in order.
func TestFileRotatesWithoutLoss(t *testing.T) {
	path := filepath.Join(t.TempDir(), "logs", "agent.log")
	const n = 18000 // ~4 MiB: three or four rotations at 1 MiB
	writeLines(t, path, Rotation{MaxMiB: 1, Keep: 10}, n)
	files := logFiles(t, path)
	if len(files) < 4 {
		t.Fatalf("files %v, want agent.log and at least 3 rotated", files)
	}
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > 1<<20 {
			t.Errorf("%s is %d bytes, over the 1 MiB limit", f, fi.Size())
		}
	}
	seqs := readSeqs(t, files)
	if len(seqs) != n {
		t.Fatalf("%d lines read back, want %d", len(seqs), n)
	}
	for i, s := range seqs {
		if s != i {
			t.Fatalf("line %d has seq %d: lines lost or out of order across a rotation", i, s)
		}
	}
}

// Keep bounds the rotated files; the newest lines survive.
func TestFileKeepsCount(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.log")
	const n = 30000 // ~6 MiB: five rotations
	writeLines(t, path, Rotation{MaxMiB: 1, Keep: 2}, n)
	// lumberjack removes old files in its own goroutine after a rotation.
	var files []string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if files = logFiles(t, path); len(files) <= 3 {
			break
		}
	}
	if len(files) != 3 {
		t.Fatalf("files %v, want agent.log and 2 rotated", files)
	}
	seqs := readSeqs(t, files)
	if seqs[len(seqs)-1] != n-1 {
		t.Errorf("last line has seq %d, want %d", seqs[len(seqs)-1], n-1)
	}
	for i := 1; i < len(seqs); i++ {
		if seqs[i] != seqs[i-1]+1 {
			t.Fatalf("seq %d follows %d in the kept files", seqs[i], seqs[i-1])
		}
	}
}

// The log folder and files are not world-readable; rotated files keep it.
func TestFileModes(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("the state folder's ACL governs on Windows")
	}
	dir := filepath.Join(t.TempDir(), "logs")
	path := filepath.Join(dir, "agent.log")
	writeLines(t, path, Rotation{MaxMiB: 1, Keep: 3}, 8000)
	want := map[string]os.FileMode{dir: 0o750}
	for _, f := range logFiles(t, path) {
		want[f] = 0o640
	}
	if len(want) < 3 {
		t.Fatalf("no rotation happened: %v", want)
	}
	for p, m := range want {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != m {
			t.Errorf("%s has mode %o, want %o", p, got, m)
		}
	}
}

// A folder the agent cannot write is an error that names it.
func TestFileRefusesUnwritableFolder(t *testing.T) {
	if runtime.GOOS == "windows" || os.Geteuid() == 0 {
		t.Skip("needs a folder this user cannot write")
	}
	ro := t.TempDir()
	if err := os.Chmod(ro, 0o500); err != nil {
		t.Fatal(err)
	}
	_, err := File(filepath.Join(ro, "logs", "agent.log"), Rotation{})
	if err == nil || !strings.Contains(err.Error(), "log folder") {
		t.Errorf("File in a read-only folder: %v, want an error naming the log folder", err)
	}
}
