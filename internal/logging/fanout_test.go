package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("stderr is closed") }

// Each branch keeps its level and format, and sees the attributes and
// groups added before the fan-out was split.
func TestFanoutBranches(t *testing.T) {
	var js, txt bytes.Buffer
	h := Fanout(
		slog.NewJSONHandler(&js, &slog.HandlerOptions{Level: slog.LevelDebug}),
		slog.NewTextHandler(&txt, &slog.HandlerOptions{Level: slog.LevelWarn}),
	)
	log := slog.New(h).With("host", "h1").WithGroup("engine")
	log.Debug("probe", "n", 1)
	log.Warn("engine down", "version", "27.1")

	lines := strings.Split(strings.TrimSpace(js.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("JSON branch got %d lines, want 2 (debug and warn): %s", len(lines), js.String())
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[1]), &rec); err != nil {
		t.Fatal(err)
	}
	if rec["host"] != "h1" || rec["engine"].(map[string]any)["version"] != "27.1" {
		t.Errorf("JSON branch lost the attributes or the group: %s", lines[1])
	}
	if got := strings.TrimSpace(txt.String()); strings.Count(got, "\n") != 0 || !strings.Contains(got, "host=h1 engine.version=27.1") || strings.Contains(got, "probe") {
		t.Errorf("text branch = %q, want the one warn line with host=h1 engine.version=27.1", got)
	}
	if !h.Enabled(context.Background(), slog.LevelDebug) {
		t.Error("fan-out disabled for debug although one branch takes it")
	}
	if Fanout(slog.NewTextHandler(&txt, nil)).Enabled(context.Background(), slog.LevelDebug) {
		t.Error("fan-out enabled for debug although no branch takes it")
	}
}

// A branch that fails does not keep the record from the next one.
func TestFanoutFailingBranch(t *testing.T) {
	var file bytes.Buffer
	h := Fanout(slog.NewJSONHandler(failWriter{}, nil), slog.NewJSONHandler(&file, nil))
	err := h.Handle(context.Background(), slog.NewRecord(time.Now(), slog.LevelError, "cache down", 0))
	if err == nil || !strings.Contains(err.Error(), "stderr is closed") {
		t.Errorf("Handle = %v, want the failing branch's error", err)
	}
	if !strings.Contains(file.String(), "cache down") {
		t.Error("the file branch lost the record because the stderr branch failed")
	}
}
