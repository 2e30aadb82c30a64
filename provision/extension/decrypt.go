package extension

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"

	"github.com/smallstep/pkcs7"
)

// maxCertFileSize bounds the read of a .crt or .prv file.
const maxCertFileSize = 1 << 20

// CertFiles returns where WALinuxAgent keeps the certificate of a
// thumbprint: <THUMBPRINT>.crt and .prv in /var/lib/waagent, which is the
// parent of the handler folder, that is configFolder/../..
func CertFiles(configFolder, thumbprint string) (crt, prv string) {
	dir := filepath.Dir(filepath.Dir(filepath.Clean(configFolder)))
	return filepath.Join(dir, thumbprint+".crt"), filepath.Join(dir, thumbprint+".prv")
}

// DecodeProtected base64-decodes protectedSettings.
func DecodeProtected(b64 string) ([]byte, error) {
	der, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(b64), ""))
	if err != nil {
		return nil, failf(CodeDecrypt, "protectedSettings is not base64: %v", err)
	}
	return der, nil
}

// DecryptWithFiles decrypts protectedSettings (base64 of DER EnvelopedData)
// with the certificate and private key of thumbprint, read from the files
// WALinuxAgent lays out. The certificate's SHA-1 must be the thumbprint.
func DecryptWithFiles(configFolder, thumbprint, b64 string) ([]byte, error) {
	der, err := DecodeProtected(b64)
	if err != nil {
		return nil, err
	}
	crtPath, prvPath := CertFiles(configFolder, thumbprint)
	cert, err := readCert(crtPath, thumbprint)
	if err != nil {
		return nil, err
	}
	key, err := readKey(prvPath)
	if err != nil {
		return nil, err
	}
	if pub, ok := cert.PublicKey.(*rsa.PublicKey); !ok || !pub.Equal(key.Public()) {
		return nil, failf(CodeCertificate, "%s does not hold the private key of %s", prvPath, crtPath)
	}
	return DecryptEnveloped(der, cert, key)
}

// DecryptEnveloped decrypts DER (or BER) PKCS#7/CMS EnvelopedData for cert:
// RSA PKCS#1 v1.5 or OAEP key transport, AES-CBC, AES-GCM or 3DES content,
// which covers what `openssl cms -encrypt` and the Azure platform produce.
func DecryptEnveloped(der []byte, cert *x509.Certificate, key crypto.PrivateKey) (out []byte, err error) {
	defer func() {
		// The parser works on outside data; a panic in it must not take
		// the handler down without a status.
		if r := recover(); r != nil {
			out, err = nil, failf(CodeDecrypt, "protectedSettings are corrupt (the PKCS#7 parser failed: %v)", r)
		}
	}()
	p7, err := pkcs7.Parse(der)
	if err != nil {
		return nil, failf(CodeDecrypt, "protectedSettings are not PKCS#7 enveloped data: %v", err)
	}
	plain, err := p7.Decrypt(cert, key)
	switch {
	case errors.Is(err, pkcs7.ErrNotEncryptedContent):
		return nil, failf(CodeDecrypt, "protectedSettings are PKCS#7 but not enveloped (encrypted) data")
	case err != nil && strings.Contains(err.Error(), "no enveloped recipient"):
		return nil, failf(CodeDecrypt, "protectedSettings were not encrypted for the certificate %s (serial %s): the thumbprint names the wrong certificate", thumbprintOf(cert), cert.SerialNumber)
	case err != nil:
		return nil, failf(CodeDecrypt, "decrypt protectedSettings with certificate %s: %v (the data are corrupt or not for this certificate)", thumbprintOf(cert), err)
	}
	return plain, nil
}

func thumbprintOf(cert *x509.Certificate) string {
	sum := sha1.Sum(cert.Raw)
	return strings.ToUpper(hex.EncodeToString(sum[:]))
}

func readPEMFile(path string) ([]byte, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, failf(CodeCertificate, "the certificate file %s cannot be read: %v; the guest agent writes it from the goal state's certificates", path, err)
	}
	if info.Size() > maxCertFileSize {
		return nil, failf(CodeCertificate, "%s is larger than %d bytes", path, maxCertFileSize)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, failf(CodeCertificate, "read %s: %v", path, err)
	}
	return data, nil
}

// readCert reads a PEM certificate and checks its thumbprint.
func readCert(path, thumbprint string) (*x509.Certificate, error) {
	data, err := readPEMFile(path)
	if err != nil {
		return nil, err
	}
	for block, rest := pem.Decode(data); block != nil; block, rest = pem.Decode(rest) {
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, failf(CodeCertificate, "%s: %v", path, err)
		}
		if got := thumbprintOf(cert); got != strings.ToUpper(thumbprint) {
			return nil, failf(CodeCertificate, "%s has thumbprint %s, not %s", path, got, thumbprint)
		}
		return cert, nil
	}
	return nil, failf(CodeCertificate, "%s holds no PEM certificate", path)
}

// readKey reads a PEM RSA private key, PKCS#8 or PKCS#1.
func readKey(path string) (*rsa.PrivateKey, error) {
	data, err := readPEMFile(path)
	if err != nil {
		return nil, err
	}
	for block, rest := pem.Decode(data); block != nil; block, rest = pem.Decode(rest) {
		switch block.Type {
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			if err != nil {
				return nil, failf(CodeCertificate, "%s: %v", path, err)
			}
			rk, ok := k.(*rsa.PrivateKey)
			if !ok {
				return nil, failf(CodeCertificate, "%s holds a %T key; Azure's VM certificates are RSA", path, k)
			}
			return rk, nil
		case "RSA PRIVATE KEY":
			k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
			if err != nil {
				return nil, failf(CodeCertificate, "%s: %v", path, err)
			}
			return k, nil
		}
	}
	return nil, failf(CodeCertificate, "%s holds no PEM private key", path)
}
