// Package progress shows how far a long step is: a redrawn bar on a
// terminal, and a log line every so often when nobody watches one.
package progress

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// Reporter renders progress updates. It is safe for concurrent use.
type Reporter struct {
	w        io.Writer // terminal, or nil to log instead
	log      *slog.Logger
	mu       sync.Mutex
	stage    string
	lastDraw time.Time
	lastLog  time.Time
	lastPct  int64
}

// New returns a Reporter drawing on w when terminal is true, else logging
// through log.
func New(w io.Writer, terminal bool, log *slog.Logger) *Reporter {
	r := &Reporter{log: log}
	if terminal {
		r.w = w
	}
	return r
}

// Update is told that stage has done of total units (bytes, or seconds of a
// wait); total -1 means unknown.
func (r *Reporter) Update(stage string, done, total int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	newStage := stage != r.stage
	if newStage && r.w != nil && r.stage != "" {
		fmt.Fprintln(r.w)
	}
	if newStage {
		r.stage, r.lastPct = stage, -1
	}
	pct := int64(-1)
	if total > 0 {
		pct = min(done*100/total, 100)
	}
	if r.w != nil {
		if !newStage && now.Sub(r.lastDraw) < 100*time.Millisecond && pct != 100 {
			return
		}
		r.lastDraw = now
		fmt.Fprintf(r.w, "\r%s", Line(stage, done, total, 30))
		return
	}
	// Without a terminal: a line when a stage starts, every 10%, or 10 s.
	if newStage || (pct >= 0 && pct/10 != r.lastPct/10) || now.Sub(r.lastLog) > 10*time.Second {
		r.lastLog, r.lastPct = now, pct
		if r.log != nil {
			r.log.Info("progress", "stage", stage, "done", done, "total", total, "percent", pct)
		}
	}
}

// Done ends the current bar's line.
func (r *Reporter) Done() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.w != nil && r.stage != "" {
		fmt.Fprintln(r.w)
	}
	r.stage = ""
}

// Line renders one progress line with a bar width characters wide.
func Line(stage string, done, total int64, width int) string {
	if total <= 0 {
		return fmt.Sprintf("%-28s %s", stage, human(done))
	}
	done = min(done, total)
	filled := int(done * int64(width) / total)
	bar := strings.Repeat("=", filled)
	if filled < width {
		bar += ">" + strings.Repeat(" ", width-filled-1)
	}
	return fmt.Sprintf("%-28s [%s] %3d%% %s/%s", stage, bar, done*100/total, human(done), human(total))
}

func human(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1fGiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1fKiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%dB", n)
}
