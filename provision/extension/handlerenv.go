package extension

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// HandlerEnvironmentFile is the file the guest agent writes at the handler
// root.
const HandlerEnvironmentFile = "HandlerEnvironment.json"

// maxHandlerEnvSize bounds the read of HandlerEnvironment.json; the real
// file is a few hundred bytes.
const maxHandlerEnvSize = 64 << 10

// Env is what HandlerEnvironment.json tells the handler.
type Env struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	// Root is the folder the file was found in: the handler's base folder.
	Root          string `json:"-"`
	LogFolder     string `json:"logFolder"`
	ConfigFolder  string `json:"configFolder"`
	StatusFolder  string `json:"statusFolder"`
	HeartbeatFile string `json:"heartbeatFile"`
	EventsFolder  string `json:"eventsFolder"`
}

// handlerEnvFile is the file's shape: a one-element array. version is a
// number in the Linux agent's file and a string in the Windows one.
type handlerEnvFile []struct {
	Name               string          `json:"name"`
	Version            json.RawMessage `json:"version"`
	HandlerEnvironment struct {
		LogFolder           string `json:"logFolder"`
		ConfigFolder        string `json:"configFolder"`
		StatusFolder        string `json:"statusFolder"`
		HeartbeatFile       string `json:"heartbeatFile"`
		EventsFolder        string `json:"eventsFolder"`
		EventsFolderPreview string `json:"eventsFolder_preview"`
	} `json:"handlerEnvironment"`
}

// ParseHandlerEnv parses HandlerEnvironment.json. configFolder and
// statusFolder are required; eventsFolder falls back to
// eventsFolder_preview.
func ParseHandlerEnv(data []byte) (Env, error) {
	data = trimBOM(data)
	var f handlerEnvFile
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&f); err != nil {
		return Env{}, fmt.Errorf("not the HandlerEnvironment JSON array: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Env{}, errors.New("not the HandlerEnvironment JSON array: more data after it")
	}
	if len(f) != 1 {
		return Env{}, fmt.Errorf("holds %d elements, want exactly 1", len(f))
	}
	h := f[0].HandlerEnvironment
	e := Env{Name: f[0].Name, Version: versionString(f[0].Version), LogFolder: h.LogFolder, ConfigFolder: h.ConfigFolder,
		StatusFolder: h.StatusFolder, HeartbeatFile: h.HeartbeatFile, EventsFolder: h.EventsFolder}
	if e.EventsFolder == "" {
		e.EventsFolder = h.EventsFolderPreview
	}
	for _, p := range []struct{ key, v string }{{"configFolder", e.ConfigFolder}, {"statusFolder", e.StatusFolder}} {
		if p.v == "" {
			return Env{}, fmt.Errorf("handlerEnvironment.%s is missing", p.key)
		}
	}
	for _, p := range []struct{ key, v string }{{"configFolder", e.ConfigFolder}, {"statusFolder", e.StatusFolder},
		{"heartbeatFile", e.HeartbeatFile}, {"eventsFolder", e.EventsFolder}, {"logFolder", e.LogFolder}} {
		if p.v != "" && !filepath.IsAbs(p.v) {
			return Env{}, fmt.Errorf("handlerEnvironment.%s %q is not an absolute path", p.key, p.v)
		}
	}
	return e, nil
}

// versionString reads the version as the guest agent wrote it: 1.0 or "1".
func versionString(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	return string(bytes.TrimSpace(raw))
}

// Retry policy while the guest agent may be rewriting the file (the
// handler design doc asks for retries with backoff).
var (
	handlerEnvAttempts = 5
	handlerEnvBackoff  = 200 * time.Millisecond
)

// FindHandlerEnv reads HandlerEnvironment.json next to the executable's
// folder or one folder up (bin/.. is the handler root), as every Azure Go
// extension library looks for it. A missing, empty or half-written file is
// retried with a doubling delay (the guest agent may be rewriting it); the
// last error says where it looked.
func FindHandlerEnv(ctx context.Context, exeDir string) (Env, error) {
	candidates := []string{exeDir, filepath.Dir(exeDir)}
	delay := handlerEnvBackoff
	var last error
	for attempt := 1; ; attempt++ {
		for _, dir := range candidates {
			e, err := readHandlerEnv(filepath.Join(dir, HandlerEnvironmentFile))
			if err == nil {
				e.Root = dir
				return e, nil
			}
			if !errors.Is(err, fs.ErrNotExist) || last == nil {
				last = err
			}
		}
		if attempt == handlerEnvAttempts {
			break
		}
		select {
		case <-ctx.Done():
			return Env{}, fail(CodeHandlerEnvironment, ctx.Err())
		case <-time.After(delay):
		}
		delay *= 2
	}
	return Env{}, failf(CodeHandlerEnvironment, "%s not usable in %s or %s after %d attempts: %w; the handler must run from the extension folder the guest agent laid out",
		HandlerEnvironmentFile, candidates[0], candidates[1], handlerEnvAttempts, last)
}

func readHandlerEnv(path string) (Env, error) {
	f, err := os.Open(path)
	if err != nil {
		return Env{}, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxHandlerEnvSize+1))
	if err != nil {
		return Env{}, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > maxHandlerEnvSize {
		return Env{}, fmt.Errorf("%s is larger than %d bytes", path, maxHandlerEnvSize)
	}
	e, err := ParseHandlerEnv(data)
	if err != nil {
		return Env{}, fmt.Errorf("%s: %w", path, err)
	}
	return e, nil
}

// trimBOM drops a UTF-8 byte order mark, which Windows tools put in front
// of JSON files and encoding/json refuses.
func trimBOM(data []byte) []byte { return bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) }
