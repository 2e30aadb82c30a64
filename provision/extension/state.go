package extension

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/berthhq/berth/internal/atomicfile"
)

// Files under the agent's state folder.
const (
	// StateFile tells the agent service where the guest agent expects the
	// status (written by enable, read by Attach).
	StateFile = "extension.json"
	// resultFile keeps the last status the agent service wrote, so that an
	// enable of new settings that change nothing can report it at once.
	resultFile = "extension-result.json"
	// updateFile marks an update in progress, so that the old version's
	// uninstall keeps what the new version goes on using.
	updateFile = "extension-update.json"
	// SecretsDir holds the secrets from protected settings.
	SecretsDir = "secrets"
	// BinDir holds the copy of the agent binary the service runs, outside
	// the handler folder that the guest agent deletes on update.
	BinDir = "bin"
)

// HandlerState is <stateDir>/extension.json.
type HandlerState struct {
	StatusFolder  string `json:"statusFolder"`
	HeartbeatFile string `json:"heartbeatFile"`
	EventsFolder  string `json:"eventsFolder"`
	ConfigFolder  string `json:"configFolder"`
	LogFolder     string `json:"logFolder"`
	Sequence      int    `json:"sequence"`
	Name          string `json:"name"`
	Version       string `json:"version"`
}

func stateFor(e Env, seq int) HandlerState {
	return HandlerState{StatusFolder: e.StatusFolder, HeartbeatFile: e.HeartbeatFile, EventsFolder: e.EventsFolder,
		ConfigFolder: e.ConfigFolder, LogFolder: e.LogFolder, Sequence: seq, Name: e.Name, Version: e.Version}
}

// writeJSON writes v to path atomically when it differs.
func writeJSON(path string, v any, perm os.FileMode) (bool, error) {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	changed, err := atomicfile.WriteIfChanged(path, append(data, '\n'), perm)
	if err != nil {
		return false, fail(CodeHostWrite, err)
	}
	return changed, nil
}

// readJSON reads path into v; ok is false when the file does not exist.
func readJSON(path string, v any) (bool, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read %s: %w", path, err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return false, fmt.Errorf("read %s: %w", path, err)
	}
	return true, nil
}

// ReadHandlerState reads <stateDir>/extension.json; ok is false when the
// host was not provisioned through the extension.
func ReadHandlerState(stateDir string) (HandlerState, bool, error) {
	var s HandlerState
	ok, err := readJSON(filepath.Join(stateDir, StateFile), &s)
	return s, ok, err
}

// lastResult is <stateDir>/extension-result.json: the last final status the
// agent wrote, and for which sequence number.
type lastResult struct {
	Sequence int    `json:"sequence"`
	Status   Status `json:"status"`
}

func readResult(stateDir string) (lastResult, bool) {
	var r lastResult
	ok, err := readJSON(filepath.Join(stateDir, resultFile), &r)
	return r, ok && err == nil
}

// updateMarker is <stateDir>/extension-update.json.
type updateMarker struct {
	From string    `json:"from"`
	To   string    `json:"to"`
	At   time.Time `json:"at"`
}

// updateMarkerTTL bounds how long a marker protects an old version's
// uninstall: the guest agent runs update, then uninstall, within minutes.
const updateMarkerTTL = time.Hour

// keptForUpdate reports whether an uninstall of version runs as part of an
// update away from it (the new version's update wrote the marker), so
// that it must keep the service, config and state.
func keptForUpdate(m updateMarker, version string, now time.Time) bool {
	return m.From != "" && m.From == version && m.To != version && now.Sub(m.At) < updateMarkerTTL && !m.At.After(now.Add(time.Minute))
}
