// Package authenticodetest makes a throwaway code-signing CA and an RSA
// leaf for tests of signing: the leaf is valid from 2000, long before any
// SOURCE_DATE_EPOCH a test signs with (osslsigncode refuses a signing time
// before the leaf's notBefore).
package authenticodetest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Files are a CA and a leaf signed by it, as PEM files.
type Files struct {
	CA, Cert, Key string
}

// NewCA writes a CA and an RSA code-signing leaf into a temp dir.
func NewCA(t testing.TB) Files { return newCA(t, false) }

// NewECDSA is NewCA with an ECDSA leaf key.
func NewECDSA(t testing.TB) Files { return newCA(t, true) }

func newCA(t testing.TB, ec bool) Files {
	t.Helper()
	dir := t.TempDir()
	from, to := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)
	caKey, err := rsa.GenerateKey(rand.Reader, 2048)
	must(t, err)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Berth Test CA"},
		NotBefore: from, NotAfter: to, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	must(t, err)
	var leafKey crypto.Signer
	if ec {
		leafKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	} else {
		leafKey, err = rsa.GenerateKey(rand.Reader, 2048)
	}
	must(t, err)
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "Berth Test Code Signing"},
		NotBefore: from, NotAfter: to, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
	}
	caCert, err := x509.ParseCertificate(caDER)
	must(t, err)
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, caCert, leafKey.Public(), caKey)
	must(t, err)
	keyDER, err := x509.MarshalPKCS8PrivateKey(leafKey)
	must(t, err)
	f := Files{CA: filepath.Join(dir, "ca.pem"), Cert: filepath.Join(dir, "cs.pem"), Key: filepath.Join(dir, "cs.key")}
	write(t, f.CA, "CERTIFICATE", caDER)
	write(t, f.Cert, "CERTIFICATE", leafDER)
	write(t, f.Key, "PRIVATE KEY", keyDER)
	return f
}

func write(t testing.TB, p, typ string, der []byte) {
	t.Helper()
	must(t, os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
