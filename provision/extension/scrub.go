package extension

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/berthhq/berth/internal/atomicfile"
)

// ScrubSettings rewrites a settings file without its protectedSettings and
// thumbprint once they are applied, so the encrypted secrets do not stay in
// the guest agent's folder (CSE blanks its settings files for the same
// reason). publicSettings are kept: an enable that the guest agent repeats
// for the same sequence number still finds the config. The modification
// time is kept too, since the newest settings file picks the sequence
// number when ConfigSequenceNumber is not set. It reports whether it
// rewrote the file; a file without protected settings is left alone.
func ScrubSettings(path string) (bool, error) {
	info, err := os.Stat(path)
	if err != nil {
		return false, fmt.Errorf("scrub %s: %w", path, err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return false, fmt.Errorf("scrub %s: %w", path, err)
	}
	var f struct {
		RuntimeSettings []struct {
			HandlerSettings map[string]json.RawMessage `json:"handlerSettings"`
		} `json:"runtimeSettings"`
	}
	if json.Unmarshal(trimBOM(data), &f) != nil || len(f.RuntimeSettings) != 1 {
		return false, nil // not ours to fix: the parse already refused it
	}
	h := f.RuntimeSettings[0].HandlerSettings
	if _, ok := h["protectedSettings"]; !ok {
		return false, nil
	}
	delete(h, "protectedSettings")
	delete(h, "protectedSettingsCertThumbprint")
	out, err := json.Marshal(f)
	if err != nil {
		return false, fmt.Errorf("scrub %s: %w", path, err)
	}
	if err := atomicfile.Write(path, out, info.Mode().Perm()); err != nil {
		return false, fmt.Errorf("scrub %s: %w", path, err)
	}
	if err := os.Chtimes(path, info.ModTime(), info.ModTime()); err != nil {
		return true, fmt.Errorf("scrub %s: keep its time: %w", path, err)
	}
	return true, nil
}
