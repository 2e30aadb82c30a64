package logging

import (
	"context"
	"log/slog"
	"strings"
	"sync"
)

// EventSource is the Windows Event Log source the agent writes under. The
// MSI and `berth-agent service install` register it (as EventCreate.exe's
// messages, so that the text shows); the agent only writes.
const EventSource = "berth-agent"

// Event IDs as EventCreate and kardianos/service number them.
const (
	eventWarning = 2
	eventError   = 3
)

// maxEventText keeps a message under the Event Log's limit of 31,839
// characters per string.
const maxEventText = 31000

// eventWriter is the Event Log as the handler uses it: *eventlog.Log on
// Windows, a recorder in tests.
type eventWriter interface {
	Warning(eid uint32, msg string) error
	Error(eid uint32, msg string) error
}

// eventHandler writes records at warn and above (or above min, if higher)
// as one text line each, without the time: the Event Log stamps its own.
type eventHandler struct {
	out  *eventOut
	text slog.Handler
}

// eventOut turns the text handler's one write per record into one event,
// of the level of the record being handled.
type eventOut struct {
	w     eventWriter
	mu    sync.Mutex
	level slog.Level
}

func newEventHandler(w eventWriter, min slog.Level) slog.Handler {
	out := &eventOut{w: w}
	opts := &slog.HandlerOptions{Level: max(min, slog.LevelWarn), ReplaceAttr: dropTime}
	return &eventHandler{out: out, text: slog.NewTextHandler(out, opts)}
}

func dropTime(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}

func (h *eventHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.text.Enabled(ctx, l)
}

func (h *eventHandler) Handle(ctx context.Context, r slog.Record) error {
	h.out.mu.Lock()
	defer h.out.mu.Unlock()
	h.out.level = r.Level
	return h.text.Handle(ctx, r)
}

func (h *eventHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &eventHandler{out: h.out, text: h.text.WithAttrs(as)}
}

func (h *eventHandler) WithGroup(name string) slog.Handler {
	return &eventHandler{out: h.out, text: h.text.WithGroup(name)}
}

// Write is called with out.mu held, once per record.
func (o *eventOut) Write(p []byte) (int, error) {
	msg := strings.TrimSuffix(string(p), "\n")
	if len(msg) > maxEventText {
		msg = msg[:maxEventText] + "…"
	}
	var err error
	if o.level >= slog.LevelError {
		err = o.w.Error(eventError, msg)
	} else {
		err = o.w.Warning(eventWarning, msg)
	}
	return len(p), err
}
