package logging

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"gopkg.in/natefinch/lumberjack.v2"
)

// Rotation bounds one log file: it is rotated when a write would take it
// past MaxMiB, and Keep rotated files stay beside it (the oldest go). The
// bound on disk is MaxMiB × (Keep+1).
type Rotation struct {
	MaxMiB int
	Keep   int
}

// DefaultRotation is the agent's and the launcher's: at most 120 MiB of
// logs each, days of an ordinary host's info lines.
var DefaultRotation = Rotation{MaxMiB: 20, Keep: 5}

// File returns a writer appending to path that rotates as r says (zero
// fields take DefaultRotation's). Rotated files are named
// <name>-<UTC time>.<ext> beside it, and kept uncompressed so that an
// operator can open them with what Windows has (Notepad, Get-Content).
//
// The folder is made 0750 and the file 0640 (on Unix; lumberjack would
// make them 0755 and 0600): the agent's group may read its logs, others
// not. Rotated files keep the mode. On Windows the state folder's ACL
// (set by the MSI and `service install`) governs.
func File(path string, r Rotation) (io.WriteCloser, error) {
	if r.MaxMiB <= 0 {
		r.MaxMiB = DefaultRotation.MaxMiB
	}
	if r.Keep <= 0 {
		r.Keep = DefaultRotation.Keep
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("make the log folder %s: %w (check the state folder's owner and mode)", dir, err)
	}
	// lumberjack opens an existing file as it is and gives a rotated
	// file's successor the old one's mode; creating it first sets 0640.
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open the log file %s: %w (check the state folder's owner and mode)", path, err)
	}
	f.Close()
	return &lumberjack.Logger{Filename: path, MaxSize: r.MaxMiB, MaxBackups: r.Keep}, nil
}
