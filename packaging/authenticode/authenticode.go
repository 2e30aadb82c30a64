// Package authenticode signs Windows executables and MSIs with
// osslsigncode and verifies them. Without a timestamp URL the signing time
// is the one given (the build's SOURCE_DATE_EPOCH) and the signature is
// deterministic: osslsigncode with an RSA key and -time gives the same
// bytes twice (packaging-anchors §2). An ECDSA signature is randomised, so
// an ECDSA key is refused unless a timestamp is asked for, which is never
// reproducible anyway.
package authenticode

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"time"
)

// Tool is the signing program; its Debian package has the same name.
const Tool = "osslsigncode"

// SignOptions say what to sign with what.
type SignOptions struct {
	// In is the unsigned file; Out is where the signed file goes (not In).
	In, Out string
	// CertFile is the PEM certificate chain, leaf first; KeyFile its PEM
	// private key.
	CertFile, KeyFile string
	// Description is the signed program name Windows shows (-n).
	Description string
	// TimestampURL is an RFC 3161 timestamp server; empty for none.
	TimestampURL string
	// Time is the signing time used without a timestamp server.
	Time time.Time
}

func tool() (string, error) {
	p, err := exec.LookPath(Tool)
	if err != nil {
		return "", fmt.Errorf("%s is not installed (apt-get install %s, or scripts/install-test-deps.sh): %w", Tool, Tool, err)
	}
	return p, nil
}

// Sign writes o.In signed to o.Out.
func Sign(ctx context.Context, o SignOptions) error {
	if o.In == "" || o.Out == "" || o.In == o.Out {
		return fmt.Errorf("sign %q: want an input and a different output file", o.In)
	}
	if err := checkKey(o.CertFile, o.KeyFile, o.TimestampURL != ""); err != nil {
		return fmt.Errorf("sign %s: %w", o.In, err)
	}
	bin, err := tool()
	if err != nil {
		return fmt.Errorf("sign %s: %w", o.In, err)
	}
	args := []string{"sign", "-certs", o.CertFile, "-key", o.KeyFile, "-h", "sha256", "-n", o.Description}
	if o.TimestampURL != "" {
		args = append(args, "-ts", o.TimestampURL)
	} else {
		args = append(args, "-time", strconv.FormatInt(o.Time.Unix(), 10))
	}
	// osslsigncode refuses to overwrite; a rerun replaces the old output.
	if err := os.Remove(o.Out); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("sign %s: %w", o.In, err)
	}
	args = append(args, "-in", o.In, "-out", o.Out)
	if out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput(); err != nil {
		_ = os.Remove(o.Out)
		return fmt.Errorf("sign %s with %s: %w: %s", o.In, Tool, err, bytes.TrimSpace(out))
	}
	return nil
}

// checkKey loads the pair so that a wrong file is named before
// osslsigncode runs, and refuses a key whose signatures are randomised
// when the output must be reproducible.
func checkKey(certFile, keyFile string, timestamped bool) error {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return fmt.Errorf("certificate %s and key %s (PEM): %w", certFile, keyFile, err)
	}
	if _, ok := pair.PrivateKey.(*rsa.PrivateKey); !ok && !timestamped {
		return fmt.Errorf("key %s is a %T: only RSA signatures are reproducible (ECDSA ones are randomised); use an RSA code-signing key, or set a timestamp URL (timestamped signatures are never reproducible)", keyFile, pair.PrivateKey)
	}
	return nil
}

// Verify checks file's signature against the CA certificates in caFile.
func Verify(ctx context.Context, file, caFile string) error {
	bin, err := tool()
	if err != nil {
		return fmt.Errorf("verify %s: %w", file, err)
	}
	out, err := exec.CommandContext(ctx, bin, "verify", "-CAfile", caFile, "-in", file).CombinedOutput()
	if err != nil {
		return fmt.Errorf("verify %s against %s: %w: %s", file, caFile, err, lastLines(out, 3))
	}
	return nil
}

func lastLines(b []byte, n int) []byte {
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return bytes.Join(lines, []byte(" | "))
}
