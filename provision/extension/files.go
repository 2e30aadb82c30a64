package extension

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/berthhq/berth/internal/atomicfile"
)

// WriteSecrets makes dir hold exactly secrets: each a file readable by its
// owner only (0600 in a 0700 folder; on Windows an ACL of SYSTEM and
// Administrators), written only when its value differs, and files of
// secrets no longer given removed. It reports whether anything changed.
func WriteSecrets(dir string, secrets []Secret) (bool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, failf(CodeHostWrite, "create the secrets folder %s: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return false, failf(CodeHostWrite, "restrict the secrets folder %s: %w", dir, err)
	}
	if err := protectDir(dir); err != nil {
		return false, failf(CodeHostWrite, "restrict the secrets folder %s: %w", dir, err)
	}
	changed := false
	keep := map[string]bool{}
	for _, s := range secrets {
		keep[s.Name] = true
		path := filepath.Join(dir, s.Name)
		w, err := atomicfile.WriteIfChanged(path, s.Value, 0o600)
		if err != nil {
			return false, failf(CodeHostWrite, "write the secret file %s: %w", path, err)
		}
		if err := os.Chmod(path, 0o600); err != nil {
			return false, failf(CodeHostWrite, "restrict the secret file %s: %w", path, err)
		}
		changed = changed || w
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false, failf(CodeHostWrite, "list the secrets folder %s: %w", dir, err)
	}
	for _, e := range entries {
		if keep[e.Name()] || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
			return false, failf(CodeHostWrite, "remove the secret no longer given %s: %w", e.Name(), err)
		}
		changed = true
	}
	return changed, nil
}

// writeConfig writes the agent config when it differs. It holds no secret
// (only the paths of the secret files), so it is readable by all, as
// agent.yaml is.
func writeConfig(path string, data []byte) (bool, error) {
	changed, err := atomicfile.WriteIfChanged(path, data, 0o644)
	if err != nil {
		return false, failf(CodeHostWrite, "write the agent config %s: %w", path, err)
	}
	return changed, nil
}

// agentBinary is where the service's binary lives: outside the handler
// folder, which the guest agent deletes on every update.
func (h *Handler) agentBinary(stateDir string) string {
	name := "berth-agent"
	if runtime.GOOS == "windows" {
		name += ".exe"
	}
	return filepath.Join(stateDir, BinDir, name)
}

// installBinary copies this binary to agentBinary when it differs, and
// reports whether it did (the service must then restart to run it).
func (h *Handler) installBinary(stateDir string) (bool, error) {
	dst := h.agentBinary(stateDir)
	if h.Executable == "" || sameFile(h.Executable, dst) {
		return false, nil
	}
	same, err := sameContent(h.Executable, dst)
	if err != nil {
		return false, failf(CodeHostWrite, "compare the agent binary: %w", err)
	}
	if same {
		return false, nil
	}
	data, err := os.ReadFile(h.Executable)
	if err != nil {
		return false, failf(CodeHostWrite, "read the handler binary: %w", err)
	}
	// A running binary cannot be replaced on Windows, but it can be
	// renamed: move it aside first.
	old := dst + ".old"
	os.Remove(old)
	if err := os.Rename(dst, old); err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, failf(CodeHostWrite, "move the old agent binary aside: %w", err)
	}
	if err := atomicfile.Write(dst, data, 0o755); err != nil {
		return false, failf(CodeHostWrite, "install the agent binary: %w", err)
	}
	os.Remove(old) // fails while the old agent still runs on Windows; next time then
	return true, nil
}

func sameFile(a, b string) bool {
	ia, err1 := os.Stat(a)
	ib, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(ia, ib)
}

// sameContent compares two files by SHA-256; a missing dst differs.
func sameContent(src, dst string) (bool, error) {
	hd, err := fileHash(dst)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	hs, err := fileHash(src)
	if err != nil {
		return false, err
	}
	return bytes.Equal(hs, hd), nil
}

func fileHash(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return h.Sum(nil), nil
}

// removalPlan lists what uninstall removes from the state folder's
// entries: all of them except a kept path and the folders on the way to
// one (those are walked into by the caller). keep holds absolute paths.
func removalPlan(stateDir string, entries []string, keep []string) (remove, descend []string) {
	for _, name := range entries {
		p := filepath.Join(stateDir, name)
		switch relation(p, keep) {
		case "kept":
		case "ancestor":
			descend = append(descend, p)
		default:
			remove = append(remove, p)
		}
	}
	return remove, descend
}

// relation says whether p is one of keep, above one, or neither.
func relation(p string, keep []string) string {
	for _, k := range keep {
		k = filepath.Clean(k)
		if samePath(p, k) {
			return "kept"
		}
		if rel, err := filepath.Rel(p, k); err == nil && rel != "." && !strings.HasPrefix(rel, "..") && !filepath.IsAbs(rel) {
			return "ancestor"
		}
	}
	return ""
}

func samePath(a, b string) bool {
	if runtime.GOOS == "windows" {
		return strings.EqualFold(filepath.Clean(a), filepath.Clean(b))
	}
	return filepath.Clean(a) == filepath.Clean(b)
}

// removeState empties dir except the kept paths, and removes dir when
// nothing is kept in it. Every failure is collected, not just the first.
func removeState(dir string, keep []string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name()
	}
	remove, descend := removalPlan(dir, names, keep)
	var errs []error
	for _, p := range remove {
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range descend {
		if err := removeState(p, keep); err != nil {
			errs = append(errs, err)
		}
	}
	if relation(dir, keep) == "" {
		os.Remove(dir) // empty now, unless something failed above
	}
	return errors.Join(errs...)
}
