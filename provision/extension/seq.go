package extension

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/berthhq/berth/internal/atomicfile"
)

// SeqStore remembers the most recent sequence number whose settings were
// applied: an mrseq file in the handler folder on Linux, the guest agent's
// HandlerState registry value on Windows.
type SeqStore interface {
	// Get returns the applied sequence number; ok is false when none is.
	Get() (seq int, ok bool, err error)
	Set(seq int) error
	Clear() error
	// CopyFrom takes the number over from an older version of the handler
	// (update runs before that version is uninstalled).
	CopyFrom(oldVersion string) error
}

// mrseqFile is the Linux store: a file holding the number, next to
// HandlerEnvironment.json, as azure-extension-platform keeps it.
type mrseqFile struct {
	root, name string
}

const mrseqName = "mrseq"

func (m mrseqFile) path() string { return filepath.Join(m.root, mrseqName) }

func (m mrseqFile) Get() (int, bool, error) {
	return readMrseq(m.path())
}

func readMrseq(path string) (int, bool, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("read the applied sequence number: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || n < 0 {
		// A damaged file is treated as none: the settings are applied
		// again, which changes nothing when they did not change.
		return 0, false, nil
	}
	return n, true, nil
}

func (m mrseqFile) Set(seq int) error {
	if err := atomicfile.Write(m.path(), []byte(strconv.Itoa(seq)), 0o600); err != nil {
		return fail(CodeHostWrite, fmt.Errorf("record the applied sequence number: %w", err))
	}
	return nil
}

func (m mrseqFile) Clear() error {
	if err := os.Remove(m.path()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("forget the applied sequence number: %w", err)
	}
	return nil
}

// CopyFrom reads <Publisher.Type>-<old>/mrseq beside this handler's folder.
func (m mrseqFile) CopyFrom(oldVersion string) error {
	if m.name == "" || !validVersion(oldVersion) {
		return nil
	}
	n, ok, err := readMrseq(filepath.Join(filepath.Dir(m.root), m.name+"-"+oldVersion, mrseqName))
	if err != nil || !ok {
		return err
	}
	return m.Set(n)
}

// validVersion refuses a version that could climb out of the folder.
func validVersion(v string) bool {
	if v == "" || v == "NOT_RUN" || len(v) > 64 {
		return false
	}
	for _, r := range v {
		if !(r >= '0' && r <= '9' || r == '.' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '-' || r == '_') {
			return false
		}
	}
	return !strings.Contains(v, "..")
}
