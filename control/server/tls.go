package server

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// certCheckEvery is how often a handshake looks whether the certificate
// files changed. Certificates are renewed in place (ACME, cert-manager,
// a Key Vault sync) days before they expire, so a minute is plenty, and
// no handshake pays for a stat more often. A variable for tests.
var certCheckEvery = time.Minute

// LoadTLS reads a PEM certificate (with its chain) and its private key for
// serve --tls-cert/--tls-key and returns the TLS configuration to serve
// with. Both files must be given, or neither (nil, nil). The files are read
// again when they change, so a renewed certificate is served without a
// restart; a renewal that cannot be read keeps the certificate in use and
// logs why.
func LoadTLS(certFile, keyFile string, log *slog.Logger) (*tls.Config, error) {
	switch {
	case certFile == "" && keyFile == "":
		return nil, nil
	case certFile == "" || keyFile == "":
		return nil, errors.New("--tls-cert and --tls-key go together: give the certificate (PEM, with its chain) and its private key, or neither")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &certFiles{cert: certFile, key: keyFile, log: log.With("component", "tls")}
	if err := c.load(); err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: c.get,
	}, nil
}

// certFiles serves a certificate from files, reloading them on change.
type certFiles struct {
	cert, key string
	log       *slog.Logger

	mu      sync.Mutex
	current *tls.Certificate
	stamp   string    // the files' sizes and times when loaded
	checked time.Time // last look at the files
}

// stamp identifies the files' versions without reading them.
func (c *certFiles) stampNow() (string, error) {
	var s string
	for _, p := range []string{c.cert, c.key} {
		fi, err := os.Stat(p)
		if err != nil {
			return "", err
		}
		s += fmt.Sprintf("%d.%d;", fi.Size(), fi.ModTime().UnixNano())
	}
	return s, nil
}

func (c *certFiles) load() error {
	stamp, err := c.stampNow()
	if err != nil {
		return fmt.Errorf("TLS certificate: %w", err)
	}
	pair, err := tls.LoadX509KeyPair(c.cert, c.key)
	if err != nil {
		return fmt.Errorf("TLS certificate %s with key %s: %w (want PEM files: the certificate and its chain, and its private key)", c.cert, c.key, err)
	}
	c.mu.Lock()
	c.current, c.stamp, c.checked = &pair, stamp, time.Now()
	c.mu.Unlock()
	return nil
}

// get is tls.Config.GetCertificate.
func (c *certFiles) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	cur, stamp := c.current, c.stamp
	due := time.Since(c.checked) >= certCheckEvery
	if due {
		c.checked = time.Now()
	}
	c.mu.Unlock()
	if !due {
		return cur, nil
	}
	now, err := c.stampNow()
	if err != nil || now == stamp {
		if err != nil {
			c.log.Warn("cannot look at the TLS certificate files; serving the one loaded", "cert", c.cert, "err", err)
		}
		return cur, nil
	}
	if err := c.load(); err != nil {
		c.log.Warn("the TLS certificate files changed but do not load; serving the one loaded", "err", err)
		return cur, nil
	}
	c.log.Info("loaded the renewed TLS certificate", "cert", c.cert)
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.current, nil
}
