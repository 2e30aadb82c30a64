//go:build !windows

package extension_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berthhq/berth/provision/extension"
	"github.com/berthhq/berth/provision/extension/waagenttest"
)

// settingsJSON builds a settings file from one handlerSettings object.
func settingsJSON(t *testing.T, hs map[string]any) []byte {
	t.Helper()
	data, err := json.Marshal(map[string]any{"runtimeSettings": []any{map[string]any{"handlerSettings": hs}}})
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestHostileSettingsAreRefused feeds enable each kind of bad settings the
// issue lists: each must end in an error status with its clarification
// code and a message that says what is wrong, exit non-zero, and leave the
// host untouched (no config, no secret, no service).
func TestHostileSettingsAreRefused(t *testing.T) {
	v := newVM(t)
	good, _ := json.Marshal(map[string]any{"control": map[string]any{"token": "t"}})
	otherThumb, otherCrt, _ := v.NewCertificate("someone-else")
	os.Remove(filepath.Join(v.LibDir, otherThumb+".prv")) // only the public half left on this VM
	corrupt := func() string {
		der, _ := base64.StdEncoding.DecodeString(v.Encrypt(good, v.CertFile))
		der[len(der)-5] ^= 0xff // inside the encrypted content: bad padding or garbage
		der[len(der)-20] ^= 0xff
		return base64.StdEncoding.EncodeToString(der)
	}
	truncated := func() string {
		der, _ := base64.StdEncoding.DecodeString(v.Encrypt(good, v.CertFile))
		return base64.StdEncoding.EncodeToString(der[:len(der)/2])
	}
	pub := v.public(nil)
	cases := []struct {
		name     string
		settings []byte
		code     extension.Code
		mention  string
	}{
		{"not JSON", []byte("{runtimeSettings: nope"), extension.CodeSettingsNotJSON, "not the settings JSON"},
		{"two runtimeSettings", []byte(`{"runtimeSettings":[{"handlerSettings":{}},{"handlerSettings":{}}]}`), extension.CodeSettingsCount, "exactly 1"},
		{"no runtimeSettings", []byte(`{"runtimeSettings":[]}`), extension.CodeSettingsCount, "exactly 1"},
		{"public settings not an object", settingsJSON(t, map[string]any{"publicSettings": []int{1}}), extension.CodeSettingsNotJSON, "not a JSON object"},
		{"protected without thumbprint", settingsJSON(t, map[string]any{"publicSettings": pub, "protectedSettings": v.Encrypt(good, v.CertFile)}), extension.CodeThumbprintMissing, "without protectedSettingsCertThumbprint"},
		{"thumbprint with a path in it", settingsJSON(t, map[string]any{"publicSettings": pub, "protectedSettings": v.Encrypt(good, v.CertFile), "protectedSettingsCertThumbprint": "../../etc/passwd"}), extension.CodeThumbprintMissing, "not 40 hex digits"},
		{"certificate not on this VM", settingsJSON(t, map[string]any{"publicSettings": pub, "protectedSettings": v.Encrypt(good, otherCrt), "protectedSettingsCertThumbprint": otherThumb}), extension.CodeCertificate, ".prv"},
		{"wrong certificate", settingsJSON(t, map[string]any{"publicSettings": pub, "protectedSettings": v.Encrypt(good, otherCrt), "protectedSettingsCertThumbprint": v.Thumbprint}), extension.CodeDecrypt, "not encrypted for the certificate"},
		{"corrupt ciphertext", settingsJSON(t, map[string]any{"publicSettings": pub, "protectedSettings": corrupt(), "protectedSettingsCertThumbprint": v.Thumbprint}), extension.CodeDecrypt, "protectedSettings"},
		{"truncated ciphertext", settingsJSON(t, map[string]any{"publicSettings": pub, "protectedSettings": truncated(), "protectedSettingsCertThumbprint": v.Thumbprint}), extension.CodeDecrypt, "protectedSettings"},
		{"not base64", settingsJSON(t, map[string]any{"publicSettings": pub, "protectedSettings": "%%%not base64%%%", "protectedSettingsCertThumbprint": v.Thumbprint}), extension.CodeDecrypt, "not base64"},
		{"unknown config key", settingsJSON(t, map[string]any{"publicSettings": v.public(map[string]any{"engin": map[string]any{}})}), extension.CodeConfigInvalid, `"engin"`},
		{"secret inline in public settings", settingsJSON(t, map[string]any{"publicSettings": v.public(map[string]any{"control": map[string]any{"url": "https://c.example.com", "token": "leak"}})}), extension.CodeConfigInvalid, "secrets never go in the config"},
		{"unknown protected key", settingsJSON(t, map[string]any{"publicSettings": pub, "protectedSettings": v.Encrypt([]byte(`{"control":{"tokn":"x"}}`), v.CertFile), "protectedSettingsCertThumbprint": v.Thumbprint}), extension.CodeProtectedInvalid, `"tokn"`},
		{"protected not an object", settingsJSON(t, map[string]any{"publicSettings": pub, "protectedSettings": v.Encrypt([]byte(`["x"]`), v.CertFile), "protectedSettingsCertThumbprint": v.Thumbprint}), extension.CodeProtectedInvalid, "not a JSON object"},
		{"secret given twice", settingsJSON(t, map[string]any{"publicSettings": v.public(map[string]any{"control": map[string]any{"url": "https://c.example.com", "tokenFile": "/etc/t"}}), "protectedSettings": v.Encrypt(good, v.CertFile), "protectedSettingsCertThumbprint": v.Thumbprint}), extension.CodeSecretConflict, "give one"},
		{"storage secret for an unknown url", settingsJSON(t, map[string]any{"publicSettings": pub, "protectedSettings": v.Encrypt([]byte(`{"cache":{"storage":[{"url":"https://a.blob.core.windows.net/c","sas":"sv=1"}]}}`), v.CertFile), "protectedSettingsCertThumbprint": v.Thumbprint}), extension.CodeSecretConflict, "not one of publicSettings"},
		{"huge file", append([]byte(`{"runtimeSettings":[{"handlerSettings":{"publicSettings":{"agent":{"labels":{"x":"`), bytes.Repeat([]byte("a"), extension.MaxSettingsSize)...), extension.CodeSettingsTooLarge, "more than"},
	}
	for seq, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// Each case starts from an untouched host, so that one case
			// let through does not fail the next ones.
			defer v.reset()
			v.WriteRawSettings(v1, seq, c.settings)
			r := v.run("enable", seq)
			if r.ExitCode == 0 {
				t.Errorf("enable accepted it: %s", r.Output)
			}
			st := v.status(seq)
			if st.Status != "error" || st.Clarification() != int(c.code) {
				t.Errorf("status = %s code %d, want error with clarification %d (%s): %s", st.Status, st.Clarification(), c.code, c.code, st.Message)
			}
			if !strings.Contains(st.Message, c.mention) {
				t.Errorf("status message %q does not say %q", st.Message, c.mention)
			}
			if strings.Contains(st.Message, "leak") || strings.Contains(r.Output, "leak") {
				t.Errorf("the inline secret's value was echoed")
			}
			if !hasEvent(t, v.Handler(v1).EventsFolder, "Error", c.code.String()) {
				t.Errorf("no Error event with %s", c.code)
			}
			if _, err := os.Stat(v.configPath); !os.IsNotExist(err) {
				t.Errorf("bad settings wrote the config")
			}
			if s := v.service(); s.Installed || s.Starts > 0 {
				t.Errorf("bad settings touched the service: %+v", s)
			}
		})
	}
}

// TestDecryptsWhatOpenSSLProduces checks the pure-Go decryption against
// `openssl cms -encrypt` with its defaults (3DES, PKCS#1 v1.5) and the
// variants a publisher or Azure may use.
func TestDecryptsWhatOpenSSLProduces(t *testing.T) {
	v := newVM(t)
	plain := []byte(`{"control":{"token":"t"}}`)
	cfgFolder := v.Handler(v1).ConfigFolder
	for _, opts := range [][]string{nil, {"-aes256"}, {"-aes128"}, {"-des3"}, {"-aes256", "-keyopt", "rsa_padding_mode:oaep"},
		{"-aes128", "-keyopt", "rsa_padding_mode:oaep", "-keyopt", "rsa_oaep_md:sha256"}} {
		t.Run(strings.Join(append([]string{"openssl"}, opts...), " "), func(t *testing.T) {
			got, err := extension.DecryptWithFiles(cfgFolder, v.Thumbprint, v.Encrypt(plain, v.CertFile, opts...))
			if err != nil || !bytes.Equal(got, plain) {
				t.Errorf("decrypt = %q, %v", got, err)
			}
		})
	}
}

// hasEvent reports whether the events folder holds an event of level whose
// message mentions text.
func hasEvent(t *testing.T, folder, level, text string) bool {
	t.Helper()
	events, err := waagenttest.Events(folder)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		if e["EventLevel"] == level && strings.Contains(e["Message"].(string), text) {
			return true
		}
	}
	return false
}
