package logging

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berthhq/berth/internal/secret"
)

// events records what the handler would write to the Event Log.
type events []string

func (e *events) Warning(id uint32, msg string) error {
	*e = append(*e, fmt.Sprintf("warning %d: %s", id, msg))
	return nil
}

func (e *events) Error(id uint32, msg string) error {
	*e = append(*e, fmt.Sprintf("error %d: %s", id, msg))
	return nil
}

// Warnings and errors only, one event each with its level's ID, as text
// without the time; attributes, groups and redaction as in the files.
func TestEventHandler(t *testing.T) {
	tests := []struct {
		name, level string
		want        []string
	}{
		{"info level", "info", []string{
			`warning 2: level=WARN msg="control unreachable" host=h1 control.url=https://c.example control.err=timeout`,
			`error 3: level=ERROR msg="engine failed" host=h1 control.key=REDACTED`,
		}},
		{"error level", "error", []string{
			`error 3: level=ERROR msg="engine failed" host=h1 control.key=REDACTED`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lv, err := ParseLevel(tt.level)
			if err != nil {
				t.Fatal(err)
			}
			var got events
			log := slog.New(newEventHandler(&got, lv)).With("host", "h1").WithGroup("control")
			log.Info("engine running")
			log.Warn("control unreachable", "url", "https://c.example", "err", "timeout")
			log.Error("engine failed", "key", secret.Value("s3cr3t-key"))
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// Without the Event Log (its source not registered) the logger says so
// once in the file and logs on to the file and stderr.
func TestOpenWithoutEventLog(t *testing.T) {
	systemLog = func(slog.Level) (slog.Handler, io.Closer, error) {
		return nil, nil, errors.New("the Event Log source berth-agent is not registered")
	}
	t.Cleanup(func() { systemLog = openSystemLog })
	path := filepath.Join(t.TempDir(), "logs", "agent.log")
	var stderr bytes.Buffer
	log, closeLog, err := Open(Options{Path: path, Level: "info", Stderr: &stderr, EventLog: true})
	if err != nil {
		t.Fatal(err)
	}
	log.Warn("cache tier down", "tier", "blob")
	if err := closeLog(); err != nil {
		t.Fatal(err)
	}
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for name, got := range map[string]string{"file": string(file), "stderr": stderr.String()} {
		if strings.Count(got, "not registered") != 1 || !strings.Contains(got, `"msg":"cache tier down"`) {
			t.Errorf("%s:\n%s\nwant the Event Log's absence said once, then the warning, as JSON", name, got)
		}
	}
}
