package secretlog

import (
	"encoding/base64"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The scanner finds a secret in each form it can take in a log, and
// names the file and line without the secret.
func TestScanFinds(t *testing.T) {
	const key = "Eby8vdM02xNOcqFlqUwJ/K1SZ+FPTOtr=="
	const sas = "se=2026&sig=abc%2Fdef&sp=rl"
	const odd = "k>>>???~~~>>>"
	secrets := map[string]string{key: "storage account key", sas: "SAS token", odd: "odd key"}
	tests := []struct {
		name, line, wantForm string
	}{
		{"plain", `{"msg":"auth","key":"` + key + `"}`, "as written"},
		{"JSON-escaped", `{"msg":"url","q":"se=2026\u0026sig=abc%2Fdef\u0026sp=rl"}`, "JSON"},
		{"URL-escaped", "GET /x?k=" + url.QueryEscape(key), "URL-escaped"},
		{"base64", "basic " + base64.StdEncoding.EncodeToString([]byte(key)), "base64"},
		{"base64url", "t=" + base64.RawURLEncoding.EncodeToString([]byte(odd)), "base64url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "logs", "agent.log")
			os.MkdirAll(filepath.Dir(p), 0o750)
			if err := os.WriteFile(p, []byte("first line\n"+tt.line+"\n"), 0o640); err != nil {
				t.Fatal(err)
			}
			hits := Scan(Files(filepath.Dir(p)), secrets)
			if len(hits) != 1 || hits[0].Line != 2 || hits[0].Source != p || hits[0].Form != tt.wantForm {
				t.Fatalf("hits %v, want one on %s:2 as %s", hits, p, tt.wantForm)
			}
			msg := hits[0].String()
			if strings.Contains(msg, key) || strings.Contains(msg, sas) || strings.Contains(msg, odd) {
				t.Errorf("the report shows the secret: %s", msg)
			}
		})
	}
	if hits := Scan([]Source{{Name: "clean", Text: func() string { return `{"key":"REDACTED"}` }}}, secrets); len(hits) != 0 {
		t.Errorf("hits in a clean log: %v", hits)
	}
}

// recorder is a testing.TB that keeps what would fail the test.
type recorder struct {
	testing.TB
	errs     []string
	cleanups []func()
}

func (r *recorder) Errorf(f string, a ...any) { r.errs = append(r.errs, f) }
func (r *recorder) Helper()                   {}
func (r *recorder) Logf(string, ...any)       {}
func (r *recorder) Cleanup(f func())          { r.cleanups = append(r.cleanups, f) }

// The guard fails the test at its end when a registered log holds a
// registered secret, and not when it does not.
func TestGuardFailsTheTest(t *testing.T) {
	for _, leak := range []bool{false, true} {
		r := &recorder{TB: t}
		dir := t.TempDir()
		g := For(r)
		g.Secret("control token", "tok-0123456789abcdef")
		g.Logs(dir)
		out := "berth-agent: started\n"
		if leak {
			out += "token tok-0123456789abcdef\n"
		}
		g.Output("stderr", func() string { return out })
		os.WriteFile(filepath.Join(dir, "agent.log"), []byte(out), 0o640)
		for i := len(r.cleanups) - 1; i >= 0; i-- {
			r.cleanups[i]()
		}
		if want := map[bool]int{false: 0, true: 2}[leak]; len(r.errs) != want {
			t.Errorf("leak=%v: %d failures %v, want %d (the file and the stderr)", leak, len(r.errs), r.errs, want)
		}
	}
}
