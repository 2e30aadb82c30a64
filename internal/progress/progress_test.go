package progress

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestLine(t *testing.T) {
	for _, tc := range []struct {
		done, total int64
		want        string
	}{
		{0, 100, "[>         ]   0% 0B/100B"},
		{50, 100, "[=====>    ]  50% 50B/100B"},
		{100, 100, "[==========] 100% 100B/100B"},
		{200, 100, "[==========] 100% 100B/100B"},
		{3 << 20, -1, "3.0MiB"},
	} {
		got := Line("download", tc.done, tc.total, 10)
		if !strings.HasSuffix(got, tc.want) {
			t.Errorf("Line(%d, %d) = %q, want suffix %q", tc.done, tc.total, got, tc.want)
		}
	}
}

func TestLogsWithoutTerminal(t *testing.T) {
	var buf bytes.Buffer
	r := New(nil, false, slog.New(slog.NewTextHandler(&buf, nil)))
	for i := int64(0); i <= 1000; i++ {
		r.Update("download 1.0", i, 1000)
	}
	n := strings.Count(buf.String(), "stage=")
	// One per 10%: 0,10,…,100.
	if n != 11 {
		t.Errorf("logged %d progress lines, want 11:\n%s", n, buf.String())
	}
}

func TestMultiRedrawsInPlace(t *testing.T) {
	var buf bytes.Buffer
	m := NewMulti(&buf, true, nil)
	m.Set("aaaa", "Downloading", 1, 10)
	m.Set("bbbb", "Waiting", 0, 0)
	m.Done()
	out := buf.String()
	if !strings.Contains(out, "\x1b[1A") && !strings.Contains(out, "\x1b[2A") {
		t.Errorf("second draw does not move the cursor back: %q", out)
	}
	if !strings.Contains(out, "bbbb Waiting") || !strings.Contains(out, "aaaa Downloading") {
		t.Errorf("lines missing: %q", out)
	}
}

func TestMultiLogsStatusChanges(t *testing.T) {
	var buf bytes.Buffer
	m := NewMulti(nil, false, slog.New(slog.NewTextHandler(&buf, nil)))
	for i := int64(0); i < 100; i++ {
		m.Set("layer", "Downloading", i, 100)
	}
	m.Set("layer", "Pull complete", 100, 100)
	if n := strings.Count(buf.String(), "item=layer"); n != 2 {
		t.Errorf("logged %d lines for 2 status changes:\n%s", n, buf.String())
	}
}
