// Package extzip builds the Azure VM extension package of berth-agent:
// dist/berth-extension-<version>-<os>.zip with HandlerManifest.json at its
// root (a one-element JSON array, the shape WALinuxAgent and the Windows
// guest agent read) and the agent binary under bin/. The zip is
// deterministic: fixed entry order, one fixed modification time
// (SOURCE_DATE_EPOCH), fixed modes, so two builds of one commit give the
// same bytes.
package extzip

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"
)

// Options say what goes into one extension zip.
type Options struct {
	// OS is "linux" or "windows".
	OS string
	// Manifest is the HandlerManifest.json for OS (packaging/HandlerManifest.json,
	// packaging/HandlerManifest.windows.json).
	Manifest []byte
	// Binary is the agent executable built for OS.
	Binary io.Reader
	// ModTime is every entry's modification time (SOURCE_DATE_EPOCH).
	ModTime time.Time
}

// BinaryPath is where the agent sits inside the zip for goos, as the
// manifest's commands name it (with / on every OS: zip paths use it).
func BinaryPath(goos string) string {
	if goos == "windows" {
		return "bin/berth-agent.exe"
	}
	return "bin/berth-agent"
}

// FileName is the zip's name in dist/. A version that is not a plain
// version string (git describe's output: letters, digits, ".", "-", "+")
// is refused: it becomes part of a path.
func FileName(version, goos string) (string, error) {
	if version == "" || strings.Trim(version, ".") == "" || strings.ContainsFunc(version, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(".-+_", r))
	}) {
		return "", fmt.Errorf("extension zip: version %q: want letters, digits and . - + _ only", version)
	}
	return fmt.Sprintf("berth-extension-%s-%s.zip", version, goos), nil
}

// dosEpoch is the earliest time a zip's DOS date field holds.
var dosEpoch = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)

// Build writes the zip o describes to w.
func Build(w io.Writer, o Options) error {
	if o.OS != "linux" && o.OS != "windows" {
		return fmt.Errorf("extension zip: os %q: want linux or windows", o.OS)
	}
	if err := CheckManifest(o.Manifest, o.OS); err != nil {
		return err
	}
	bin, err := io.ReadAll(o.Binary)
	if err != nil {
		return fmt.Errorf("extension zip: read the agent binary: %w", err)
	}
	if len(bin) == 0 {
		return errors.New("extension zip: the agent binary is empty")
	}
	mtime := o.ModTime.UTC()
	if mtime.Before(dosEpoch) {
		mtime = dosEpoch
	}
	files := map[string]struct {
		data []byte
		mode os.FileMode
	}{
		"HandlerManifest.json": {o.Manifest, 0o644},
		BinaryPath(o.OS):       {bin, 0o755},
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	zw := zip.NewWriter(w)
	for _, n := range names {
		h := &zip.FileHeader{Name: n, Method: zip.Deflate, Modified: mtime}
		h.SetMode(files[n].mode)
		f, err := zw.CreateHeader(h)
		if err != nil {
			return fmt.Errorf("extension zip: %s: %w", n, err)
		}
		if _, err := f.Write(files[n].data); err != nil {
			return fmt.Errorf("extension zip: %s: %w", n, err)
		}
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("extension zip: %w", err)
	}
	return nil
}

// manifest is the part of HandlerManifest.json Berth checks.
type manifest struct {
	Version         float64 `json:"version"`
	HandlerManifest struct {
		Install                 string `json:"installCommand"`
		Uninstall               string `json:"uninstallCommand"`
		Update                  string `json:"updateCommand"`
		Enable                  string `json:"enableCommand"`
		Disable                 string `json:"disableCommand"`
		RebootAfterInstall      *bool  `json:"rebootAfterInstall"`
		ReportHeartbeat         *bool  `json:"reportHeartbeat"`
		UpdateMode              string `json:"updateMode"`
		ContinueOnUpdateFailure *bool  `json:"continueOnUpdateFailure"`
	} `json:"handlerManifest"`
}

// CheckManifest checks a HandlerManifest.json for goos against the guest
// agents' contract (anchors §1.1): a JSON array of exactly one element;
// every handler command is the agent binary of this zip, as goos writes a
// relative path, running `extension <command>`; booleans are JSON booleans
// (WALinuxAgent accepts "true" with a warning; Berth does not ship one);
// updateMode is one of the two the guest agent knows.
func CheckManifest(b []byte, goos string) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var ms []manifest
	if err := dec.Decode(&ms); err != nil {
		return fmt.Errorf("HandlerManifest.json: %w", err)
	}
	if dec.More() {
		return errors.New("HandlerManifest.json: data after the array")
	}
	if len(ms) != 1 {
		return fmt.Errorf("HandlerManifest.json: %d elements; the guest agent reads exactly one", len(ms))
	}
	m := ms[0].HandlerManifest
	bin := BinaryPath(goos)
	if goos == "windows" {
		bin = strings.ReplaceAll(bin, "/", `\`)
	}
	for name, cmd := range map[string]string{"install": m.Install, "uninstall": m.Uninstall, "update": m.Update, "enable": m.Enable, "disable": m.Disable} {
		if want := bin + " extension " + name; cmd != want {
			return fmt.Errorf("HandlerManifest.json: %sCommand is %q; want %q", name, cmd, want)
		}
	}
	if m.RebootAfterInstall == nil || m.ReportHeartbeat == nil || m.ContinueOnUpdateFailure == nil {
		return errors.New("HandlerManifest.json: rebootAfterInstall, reportHeartbeat and continueOnUpdateFailure must be set, as JSON booleans")
	}
	if m.UpdateMode != "UpdateWithInstall" && m.UpdateMode != "UpdateWithoutInstall" {
		return fmt.Errorf("HandlerManifest.json: updateMode %q: want UpdateWithInstall or UpdateWithoutInstall", m.UpdateMode)
	}
	return nil
}

// Entries lists a zip's entries in order with their modes and times, for
// tests and for the build's own check of its output.
func Entries(b []byte) ([]string, error) {
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, f := range zr.File {
		out = append(out, fmt.Sprintf("%s %v %s", f.Name, f.Mode(), f.Modified.UTC().Format(time.RFC3339)))
		if path.Clean(f.Name) != f.Name || strings.HasPrefix(f.Name, "/") {
			return nil, fmt.Errorf("entry %q is not a clean relative path", f.Name)
		}
	}
	return out, nil
}
