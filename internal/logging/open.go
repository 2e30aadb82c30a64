package logging

import (
	"errors"
	"io"
	"log/slog"
	"os"
)

// systemLog is openSystemLog; tests replace it.
var systemLog = openSystemLog

// Options say where a long-running process (the launcher, the agent, an
// extension command) logs.
type Options struct {
	// Path is the log file, JSON lines, rotated as Rotation says.
	Path     string
	Rotation Rotation
	// Level is the least level logged anywhere: debug, info, warn, error.
	Level string
	// Stderr, when set, gets every line too: JSON for journald or the
	// guest agent, text when it is a terminal.
	Stderr io.Writer
	// EventLog sends warnings and errors to the Windows Event Log too
	// (source EventSource), when the source is registered; elsewhere it
	// does nothing.
	EventLog bool
}

// Open builds the logger o describes and returns it with the function
// that closes its file and the Event Log. When the Event Log was asked
// for and cannot be used, the logger says so once and logs on without.
func Open(o Options) (*slog.Logger, func() error, error) {
	lv, err := ParseLevel(o.Level)
	if err != nil {
		return nil, nil, err
	}
	file, err := File(o.Path, o.Rotation)
	if err != nil {
		return nil, nil, err
	}
	closers := []io.Closer{file}
	closeAll := func() error {
		var errs []error
		for _, c := range closers {
			errs = append(errs, c.Close())
		}
		return errors.Join(errs...)
	}
	hs := []slog.Handler{slog.NewJSONHandler(file, &slog.HandlerOptions{Level: lv})}
	if o.Stderr != nil {
		opts := &slog.HandlerOptions{Level: lv}
		if f, ok := o.Stderr.(*os.File); ok && IsTerminal(f) {
			hs = append(hs, slog.NewTextHandler(o.Stderr, opts))
		} else {
			hs = append(hs, slog.NewJSONHandler(o.Stderr, opts))
		}
	}
	var eventErr error
	if o.EventLog {
		h, c, err := systemLog(lv)
		switch {
		case err != nil:
			eventErr = err
		case h != nil:
			hs = append(hs, h)
			closers = append(closers, c)
		}
	}
	log := slog.New(Fanout(hs...))
	if eventErr != nil {
		log.Info("warnings and errors go to the log files only, not to the Windows Event Log", "err", eventErr)
	}
	return log, closeAll, nil
}
