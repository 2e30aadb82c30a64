package extension

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/smallstep/pkcs7"
)

func FuzzParseSettings(f *testing.F) {
	for _, s := range []string{
		``, `{}`, `{"runtimeSettings":[]}`, `{"runtimeSettings":[{},{}]}`,
		`{"runtimeSettings":[{"handlerSettings":{"publicSettings":{"engine":{"flavor":"docker"}}}}]}`,
		`{"runtimeSettings":[{"handlerSettings":{"protectedSettings":"QQ==","protectedSettingsCertThumbprint":"` + strings.Repeat("A", 40) + `"}}]}`,
		`{"runtimeSettings":[{"handlerSettings":{"protectedSettings":"QQ=="}}]}`,
		`{"runtimeSettings":[{"handlerSettings":{"publicSettings":"x"}}]} trailing`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseSettings(data)
		if err != nil {
			if CodeOf(err) < CodeSettingsUnreadable || CodeOf(err) > CodeThumbprintMissing {
				t.Fatalf("settings error with code %v: %v", CodeOf(err), err)
			}
			return
		}
		if s.Protected != "" && !thumbprintRE.MatchString(s.Thumbprint) {
			t.Fatalf("protected settings accepted with thumbprint %q", s.Thumbprint)
		}
		if s.Public != nil && !json.Valid(s.Public) {
			t.Fatalf("public settings not JSON: %q", s.Public)
		}
	})
}

func FuzzParseHandlerEnv(f *testing.F) {
	f.Add([]byte(`[{"name":"B","version":1.0,"handlerEnvironment":{"logFolder":"/l","configFolder":"/c","statusFolder":"/s","heartbeatFile":"/h","eventsFolder":"/e"}}]`))
	f.Add([]byte(`[{"name":"B","version":"1","handlerEnvironment":{"configFolder":"C:\\P\\RuntimeSettings","statusFolder":"C:\\P\\status"}}]`))
	f.Add([]byte(`[{},{}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := ParseHandlerEnv(data)
		if err == nil && (e.ConfigFolder == "" || e.StatusFolder == "") {
			t.Fatalf("accepted without the folders it needs: %+v", e)
		}
	})
}

func FuzzParseProtected(f *testing.F) {
	f.Add([]byte(`{"control":{"token":"t"},"cache":{"storage":[{"url":"https://a","sas":"s"}],"upstreams":{"r":{"username":"u","password":"p"}}}}`))
	f.Add([]byte(`{"control":{"token":1}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParseProtected(data)
		if err != nil {
			if CodeOf(err) != CodeProtectedInvalid {
				t.Fatalf("code %v: %v", CodeOf(err), err)
			}
			return
		}
		// Whatever parsed must compose or be refused with a code.
		if _, _, err := ComposeConfig(json.RawMessage(`{"cache":{"storage":[{"url":"https://a"}]}}`), p, "/s"); err != nil && CodeOf(err) != CodeSecretConflict {
			t.Fatalf("compose: code %v: %v", CodeOf(err), err)
		}
	})
}

func FuzzEncodeStatus(f *testing.F) {
	f.Add("success", "ok", "step", "done", 3)
	f.Add("bogus", strings.Repeat("x\x00é", 1000), "\xff", "weird", 200)
	f.Fuzz(func(t *testing.T, state, msg, subName, subMsg string, n int) {
		s := NewStatus(OpEnable, State(state), CodeProvision, msg)
		for i := 0; i < n%300; i++ {
			s.Substatus = append(s.Substatus, Substatus{Name: subName, Status: State(state), FormattedMessage: &Message{Lang: "en", Message: subMsg}})
		}
		data := EncodeStatus(s, time.Unix(0, 0))
		if len(data) > MaxStatusFileSize {
			t.Fatalf("%d bytes", len(data))
		}
		var items []statusItem
		if err := json.Unmarshal(data, &items); err != nil || len(items) != 1 {
			t.Fatalf("not a one-element array: %v", err)
		}
		if validState(items[0].Status.Status) != items[0].Status.Status {
			t.Fatalf("status %q", items[0].Status.Status)
		}
		for _, sub := range items[0].Status.Substatus {
			if validState(sub.Status) != sub.Status {
				t.Fatalf("substatus status %q", sub.Status)
			}
		}
	})
}

// fuzzCert is a throwaway RSA certificate for FuzzDecryptEnveloped.
func fuzzCert(f *testing.F) (*x509.Certificate, *rsa.PrivateKey) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		f.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "fuzz"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		f.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		f.Fatal(err)
	}
	return cert, key
}

func FuzzDecryptEnveloped(f *testing.F) {
	cert, key := fuzzCert(f)
	for _, alg := range []int{pkcs7.EncryptionAlgorithmDESCBC, pkcs7.EncryptionAlgorithmAES128CBC, pkcs7.EncryptionAlgorithmAES256CBC, pkcs7.EncryptionAlgorithmAES256GCM} {
		pkcs7.ContentEncryptionAlgorithm = alg
		der, err := pkcs7.Encrypt([]byte(`{"control":{"token":"t"}}`), []*x509.Certificate{cert})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(der)
	}
	pkcs7.ContentEncryptionAlgorithm = pkcs7.EncryptionAlgorithmDESCBC
	f.Add([]byte{0x30, 0x80, 0x06, 0x00, 0x00, 0x00})
	f.Fuzz(func(t *testing.T, der []byte) {
		if _, err := DecryptEnveloped(der, cert, key); err != nil && CodeOf(err) != CodeDecrypt {
			t.Fatalf("code %v: %v", CodeOf(err), err)
		}
	})
}

func FuzzEncodeEvent(f *testing.F) {
	f.Add("engine", "done", "1.0")
	f.Add("\x00", strings.Repeat("\x01", 7000), "")
	f.Fuzz(func(t *testing.T, task, msg, version string) {
		data := EncodeEvent(Event{TaskName: task, Message: msg, Version: version})
		if len(data) > maxEventSize {
			t.Fatalf("%d bytes", len(data))
		}
		var list []Event
		if err := json.Unmarshal(data, &list); err != nil || len(list) != 1 || len(list[0].Message) > maxEventMessage {
			t.Fatalf("bad event file: %v", err)
		}
	})
}
