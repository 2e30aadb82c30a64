// Package logging builds the agent's structured loggers (log/slog): JSON
// lines for files and services, text for a person at a terminal, log files
// that rotate by size and count (lumberjack) so that a chatty host cannot
// fill its disk, a handler that fans one record out to several places,
// and on Windows one that puts warnings and errors in the Event Log.
// docs/logs.md says where each process logs.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
)

// New returns a logger writing to w in format "json" or "text" at level
// ("debug", "info", "warn", "error").
func New(w io.Writer, format, level string) (*slog.Logger, error) {
	h, err := NewHandler(w, format, level)
	if err != nil {
		return nil, err
	}
	return slog.New(h), nil
}

// NewHandler is New's handler, for a branch of Fanout.
func NewHandler(w io.Writer, format, level string) (slog.Handler, error) {
	lv, err := ParseLevel(level)
	if err != nil {
		return nil, err
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "json":
		return slog.NewJSONHandler(w, opts), nil
	case "text":
		return slog.NewTextHandler(w, opts), nil
	}
	return nil, fmt.Errorf("log format %q: want json or text", format)
}

// ParseLevel reads "debug", "info", "warn" or "error".
func ParseLevel(level string) (slog.Level, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return 0, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	return lv, nil
}

// IsTerminal reports whether f is a character device (a terminal).
func IsTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// LevelFromEnv returns BERTH_LOG_LEVEL lower-cased, or def.
func LevelFromEnv(def string) string {
	if v := os.Getenv("BERTH_LOG_LEVEL"); v != "" {
		return strings.ToLower(v)
	}
	return def
}
