package extension

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// MaxSettingsSize bounds a settings file: the agent config is at most 1 MiB
// and the protected settings, base64 of encrypted JSON, add a third; the
// rest is room. A larger file is refused before it is parsed.
const MaxSettingsSize = 4 << 20

// Settings is one runtimeSettings element's handlerSettings.
type Settings struct {
	// Public is the publicSettings JSON object (nil when absent).
	Public json.RawMessage
	// Protected is the base64 of the DER EnvelopedData ("" when absent).
	Protected string
	// Thumbprint is the SHA-1 thumbprint of the certificate Protected was
	// encrypted for, upper-case hex.
	Thumbprint string
}

type settingsFile struct {
	RuntimeSettings []struct {
		HandlerSettings struct {
			PublicSettings    json.RawMessage `json:"publicSettings"`
			ProtectedSettings json.RawMessage `json:"protectedSettings"`
			Thumbprint        json.RawMessage `json:"protectedSettingsCertThumbprint"`
		} `json:"handlerSettings"`
	} `json:"runtimeSettings"`
}

var thumbprintRE = regexp.MustCompile(`^[0-9A-Fa-f]{40}$`)

// ParseSettings parses a settings file. An empty file means no settings.
// The file must hold exactly one runtimeSettings element; publicSettings
// must be an object; protectedSettings a string with a 40-hex-digit
// thumbprint beside it.
func ParseSettings(data []byte) (Settings, error) {
	if len(data) > MaxSettingsSize {
		return Settings{}, failf(CodeSettingsTooLarge, "the settings file is %d bytes, more than the %d allowed", len(data), MaxSettingsSize)
	}
	data = trimBOM(data)
	if len(bytes.TrimSpace(data)) == 0 {
		return Settings{}, nil
	}
	var f settingsFile
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&f); err != nil {
		return Settings{}, failf(CodeSettingsNotJSON, "the settings file is not the settings JSON: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Settings{}, failf(CodeSettingsNotJSON, "the settings file is not the settings JSON: more data after the object")
	}
	if n := len(f.RuntimeSettings); n != 1 {
		return Settings{}, failf(CodeSettingsCount, "runtimeSettings holds %d elements, want exactly 1", n)
	}
	h := f.RuntimeSettings[0].HandlerSettings
	var s Settings
	if !isNull(h.PublicSettings) {
		if !isObject(h.PublicSettings) {
			return Settings{}, failf(CodeSettingsNotJSON, "publicSettings is not a JSON object")
		}
		s.Public = h.PublicSettings
	}
	if err := optionalString(h.ProtectedSettings, "protectedSettings", &s.Protected); err != nil {
		return Settings{}, err
	}
	if err := optionalString(h.Thumbprint, "protectedSettingsCertThumbprint", &s.Thumbprint); err != nil {
		return Settings{}, err
	}
	if s.Protected == "" {
		s.Thumbprint = "" // nothing to decrypt: the thumbprint is not used
		return s, nil
	}
	if s.Thumbprint == "" {
		return Settings{}, failf(CodeThumbprintMissing, "protectedSettings is given without protectedSettingsCertThumbprint; the guest agent always sends both")
	}
	if !thumbprintRE.MatchString(s.Thumbprint) {
		return Settings{}, failf(CodeThumbprintMissing, "protectedSettingsCertThumbprint %q is not 40 hex digits", clip(s.Thumbprint, 64))
	}
	s.Thumbprint = strings.ToUpper(s.Thumbprint)
	return s, nil
}

func isNull(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) == 0 || string(t) == "null"
}

func isObject(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) > 0 && t[0] == '{'
}

func optionalString(raw json.RawMessage, key string, dst *string) error {
	if isNull(raw) {
		return nil
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return failf(CodeSettingsNotJSON, "%s is not a string", key)
	}
	*dst = strings.TrimSpace(*dst)
	return nil
}

// clip shortens an outside value quoted in a message.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// SettingsPath returns the settings file of a sequence number.
func SettingsPath(configFolder string, seq int) string {
	return filepath.Join(configFolder, strconv.Itoa(seq)+".settings")
}

// ReadSettings reads and parses the settings file of seq. A missing file
// means no settings, as the guest agent writes none for a handler without
// any.
func ReadSettings(configFolder string, seq int) (Settings, error) {
	path := SettingsPath(configFolder, seq)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return Settings{}, nil
	}
	if err != nil {
		return Settings{}, failf(CodeSettingsUnreadable, "read %s: %w", path, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxSettingsSize+1))
	if err != nil {
		return Settings{}, failf(CodeSettingsUnreadable, "read %s: %w", path, err)
	}
	s, err := ParseSettings(data)
	if err != nil {
		return Settings{}, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// SeqEnv is the variable the guest agent sets to the sequence number.
const SeqEnv = "ConfigSequenceNumber"

// settingsFile names <n>.settings; multi-config names (<ext>.<n>.settings)
// are not Berth's (the manifest does not ask for multiple extensions).
var settingsName = regexp.MustCompile(`^([0-9]{1,9})\.settings$`)

// fileSeq is a settings file's sequence number and modification time.
type fileSeq struct {
	Seq     int
	ModTime time.Time
}

// PickSequence chooses the sequence number to process: ConfigSequenceNumber
// when set, else the most recently modified settings file, the highest
// number on a tie (azure-extension-platform's rule: numbers are not
// guaranteed to rise).
func PickSequence(env string, files []fileSeq) (int, error) {
	if env = strings.TrimSpace(env); env != "" {
		n, err := strconv.Atoi(env)
		if err != nil || n < 0 {
			return 0, failf(CodeSequence, "%s=%q is not a sequence number", SeqEnv, clip(env, 32))
		}
		return n, nil
	}
	if len(files) == 0 {
		return 0, failf(CodeSequence, "%s is not set and the config folder holds no <n>.settings file", SeqEnv)
	}
	best := files[0]
	for _, f := range files[1:] {
		if f.ModTime.After(best.ModTime) || (f.ModTime.Equal(best.ModTime) && f.Seq > best.Seq) {
			best = f
		}
	}
	return best.Seq, nil
}

// settingsFiles lists the <n>.settings files of the config folder.
func settingsFiles(configFolder string) ([]fileSeq, error) {
	entries, err := os.ReadDir(configFolder)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, failf(CodeSettingsUnreadable, "list %s: %w", configFolder, err)
	}
	var out []fileSeq
	for _, e := range entries {
		m := settingsName.FindStringSubmatch(e.Name())
		if m == nil || !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		n, _ := strconv.Atoi(m[1])
		out = append(out, fileSeq{Seq: n, ModTime: info.ModTime()})
	}
	return out, nil
}
