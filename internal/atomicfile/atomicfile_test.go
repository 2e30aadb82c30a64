package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteReplacesAndLeavesNoTemp(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a", "daemon.json")
	for _, content := range []string{"one", "two"} {
		if err := Write(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		got, _ := os.ReadFile(p)
		if string(got) != content {
			t.Fatalf("content = %q, want %q", got, content)
		}
	}
	entries, _ := os.ReadDir(filepath.Dir(p))
	if len(entries) != 1 {
		t.Fatalf("folder holds %d entries, want only the file (no temp left)", len(entries))
	}
	changed, err := WriteIfChanged(p, []byte("two"), 0o644)
	if err != nil || changed {
		t.Fatalf("WriteIfChanged same content = %v, %v; want false", changed, err)
	}
	changed, err = WriteIfChanged(p, []byte("three"), 0o644)
	if err != nil || !changed {
		t.Fatalf("WriteIfChanged new content = %v, %v; want true", changed, err)
	}
}
