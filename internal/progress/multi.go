package progress

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// Multi shows one line per item (the layers of an image pull), redrawn in
// place on a terminal; without one, a log line each time an item's status
// changes. It is safe for concurrent use.
type Multi struct {
	w     io.Writer // nil: log instead
	log   *slog.Logger
	mu    sync.Mutex
	order []string
	items map[string]*item
	drawn int // lines drawn last time, to move back over them
	last  time.Time
}

type item struct {
	status       string
	done, total  int64
	loggedStatus string
}

// NewMulti returns a Multi drawing on w when terminal is true, else logging
// through log.
func NewMulti(w io.Writer, terminal bool, log *slog.Logger) *Multi {
	m := &Multi{log: log, items: map[string]*item{}}
	if terminal {
		m.w = w
	}
	return m
}

// Set records an item's status and progress (total ≤ 0: unknown).
func (m *Multi) Set(id, status string, done, total int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	it, ok := m.items[id]
	if !ok {
		it = &item{}
		m.items[id] = it
		m.order = append(m.order, id)
	}
	it.status, it.done, it.total = status, done, total
	if m.w == nil {
		if it.loggedStatus != status && m.log != nil {
			it.loggedStatus = status
			m.log.Info("progress", "item", id, "status", status, "done", done, "total", total)
		}
		return
	}
	if time.Since(m.last) < 100*time.Millisecond {
		return
	}
	m.draw()
}

// Done draws the final state.
func (m *Multi) Done() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.w != nil {
		m.draw()
	}
}

func (m *Multi) draw() {
	m.last = time.Now()
	var b strings.Builder
	if m.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", m.drawn) // back to the first line
	}
	for _, id := range m.order {
		it := m.items[id]
		label := id
		if len(label) > 12 {
			label = label[:12]
		}
		b.WriteString("\x1b[2K") // clear the line
		if it.total > 0 && it.done < it.total {
			b.WriteString(Line(label+" "+it.status, it.done, it.total, 30))
		} else {
			fmt.Fprintf(&b, "%-28s", label+" "+it.status)
		}
		b.WriteByte('\n')
	}
	m.drawn = len(m.order)
	io.WriteString(m.w, b.String())
}
