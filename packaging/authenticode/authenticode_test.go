package authenticode

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/testenv"
	"github.com/berthhq/berth/packaging/authenticode/authenticodetest"
)

// windowsExe builds a small real Windows executable.
func windowsExe(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	if err := os.WriteFile(src, []byte("package main\n\nfunc main() { println(\"hi\") }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "hi.exe")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w -buildid=", "-o", exe, src)
	cmd.Env = append(os.Environ(), "GOOS=windows", "GOARCH=amd64", "CGO_ENABLED=0", "GO111MODULE=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build a windows exe: %v\n%s", err, out)
	}
	return exe
}

func needTool(t *testing.T) {
	t.Helper()
	testenv.NeedBinary(t, Tool)
}

// Two signings give the same bytes; the signature verifies against its
// CA and is refused with a flipped byte or another CA.
func TestSignTwiceVerify(t *testing.T) {
	needTool(t)
	ctx := context.Background()
	exe := windowsExe(t)
	ca := authenticodetest.NewCA(t)
	other := authenticodetest.NewCA(t)
	dir := t.TempDir()
	at := time.Unix(1733300000, 0)
	var signed [2][]byte
	for i := range signed {
		out := filepath.Join(dir, "signed.exe")
		if err := Sign(ctx, SignOptions{In: exe, Out: out, CertFile: ca.Cert, KeyFile: ca.Key, Description: "Berth Agent", Time: at}); err != nil {
			t.Fatal(err)
		}
		signed[i], _ = os.ReadFile(out)
	}
	if !bytes.Equal(signed[0], signed[1]) {
		t.Fatal("two signings of one exe differ")
	}
	good := filepath.Join(dir, "signed.exe")
	if err := Verify(ctx, good, ca.CA); err != nil {
		t.Fatalf("verify: %v", err)
	}
	if err := Verify(ctx, good, other.CA); err == nil {
		t.Error("verify accepted another CA")
	}
	bad := append([]byte(nil), signed[0]...)
	bad[len(bad)/3] ^= 0xff
	badFile := filepath.Join(dir, "bad.exe")
	if err := os.WriteFile(badFile, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Verify(ctx, badFile, ca.CA); err == nil {
		t.Error("verify accepted a flipped byte")
	}
	if err := Verify(ctx, exe, ca.CA); err == nil {
		t.Error("verify accepted an unsigned exe")
	}
}

func TestSignRefuses(t *testing.T) {
	needTool(t)
	ctx := context.Background()
	exe := windowsExe(t)
	ca := authenticodetest.NewCA(t)
	ec := authenticodetest.NewECDSA(t)
	out := filepath.Join(t.TempDir(), "o.exe")
	for _, tc := range []struct {
		name string
		o    SignOptions
		says string
	}{
		{"ecdsa", SignOptions{In: exe, Out: out, CertFile: ec.Cert, KeyFile: ec.Key}, "only RSA signatures are reproducible"},
		{"key of another cert", SignOptions{In: exe, Out: out, CertFile: ca.Cert, KeyFile: ec.Key}, "does not match"},
		{"no cert", SignOptions{In: exe, Out: out, CertFile: filepath.Join(t.TempDir(), "none.pem"), KeyFile: ca.Key}, "none.pem"},
		{"same in and out", SignOptions{In: exe, Out: exe, CertFile: ca.Cert, KeyFile: ca.Key}, "different output"},
		{"not an exe", SignOptions{In: ca.CA, Out: out, CertFile: ca.Cert, KeyFile: ca.Key}, "osslsigncode"},
	} {
		err := Sign(ctx, tc.o)
		if err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: Sign = %v; want an error saying %q", tc.name, err, tc.says)
		}
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a failed signing left its output behind")
	}
}
