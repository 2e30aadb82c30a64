package logging

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berthhq/berth/internal/secret"
)

func TestSecretNeverLogged(t *testing.T) {
	var buf bytes.Buffer
	log, err := New(&buf, "json", "info")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("auth", "key", secret.Value("hunter2"), slog.Any("nested", map[string]any{"k": secret.Value("hunter2")}))
	if strings.Contains(buf.String(), "hunter2") {
		t.Fatalf("secret reached the log: %s", buf.String())
	}
}

func TestRotatingFileKeepsBound(t *testing.T) {
	p := filepath.Join(t.TempDir(), "agent.log")
	r := &RotatingFile{Path: p, MaxBytes: 100, Keep: 2}
	defer r.Close()
	line := []byte(strings.Repeat("x", 39) + "\n")
	for range 20 {
		if _, err := r.Write(line); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{p, p + ".1", p + ".2"} {
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if fi.Size() > 100 {
			t.Errorf("%s is %d bytes, over the 100 byte bound", name, fi.Size())
		}
	}
	if _, err := os.Stat(p + ".3"); err == nil {
		t.Error("kept more than 2 old files")
	}
}

func TestNewRefusesBadSettings(t *testing.T) {
	if _, err := New(os.Stderr, "xml", "info"); err == nil {
		t.Error("format xml accepted")
	}
	if _, err := New(os.Stderr, "json", "loud"); err == nil {
		t.Error("level loud accepted")
	}
}
