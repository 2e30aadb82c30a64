package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthhq/berth/control/server"
	"github.com/berthhq/berth/control/wire"
)

// writeCert writes a self-signed certificate for 127.0.0.1 with serial
// and its key to dir, and returns the file paths and the certificate.
func writeCert(t *testing.T, dir string, serial int64) (string, string, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               pkix.Name{CommonName: "berth-control test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	// Written beside and renamed, as renewal tools do.
	for path, block := range map[string]*pem.Block{certFile: {Type: "CERTIFICATE", Bytes: der}, keyFile: {Type: "EC PRIVATE KEY", Bytes: kder}} {
		if err := os.WriteFile(path+".new", pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".new", path); err != nil {
			t.Fatal(err)
		}
	}
	return certFile, keyFile, cert
}

// TestServeTLS: serve --tls-cert/--tls-key speaks https with the
// certificate, refuses plain http, and serves a renewed certificate
// without a restart.
func TestServeTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, cert := writeCert(t, dir, 1)
	cfg, err := server.LoadTLS(certFile, keyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, fixtureOptions{Options: func(o *server.Options) { o.TLS = cfg }})
	if f.Server.Scheme() != "https" {
		t.Errorf("Scheme() = %q", f.Server.Scheme())
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- f.Server.ListenAndServe(ctx, "127.0.0.1:0", func(a net.Addr) { addr <- a.String() }) }()
	a := <-addr
	serial := func(pool *x509.CertPool) (int64, error) {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true}}
		resp, err := c.Get("https://" + a + "/healthz")
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return 0, err
		}
		return resp.TLS.PeerCertificates[0].SerialNumber.Int64(), nil
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	if got, err := serial(pool); err != nil || got != 1 {
		t.Fatalf("https GET /healthz: serial %d, %v", got, err)
	}
	if resp, err := http.Get("http://" + a + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("plain http on the TLS port answered 200")
		}
	}
	// Renewed in place: the next handshake after the check interval
	// serves the new certificate.
	defer server.SetCertCheckEvery(0)()
	_, _, renewed := writeCert(t, dir, 2)
	pool.AddCert(renewed)
	if got, err := serial(pool); err != nil || got != 2 {
		t.Errorf("after renewal: serial %d, %v; want 2", got, err)
	}
	// A renewal that does not load (a key that is not the certificate's)
	// keeps the certificate in use.
	if err := os.WriteFile(keyFile, []byte("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := serial(pool); err != nil || got != 2 {
		t.Errorf("after a broken renewal: serial %d, %v; want 2 still", got, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("ListenAndServe: %v", err)
	}
}

func TestLoadTLSErrors(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _ := writeCert(t, dir, 1)
	other := t.TempDir()
	_, otherKey, _ := writeCert(t, other, 2)
	if cfg, err := server.LoadTLS("", "", nil); cfg != nil || err != nil {
		t.Errorf("LoadTLS without files = %v, %v; want nil, nil", cfg, err)
	}
	for _, tt := range []struct{ name, cert, key, want string }{
		{"cert alone", certFile, "", "go together"},
		{"key alone", "", keyFile, "go together"},
		{"missing cert", filepath.Join(dir, "nope.pem"), keyFile, "nope.pem"},
		{"not PEM", keyFile, keyFile, "want PEM files"},
		{"another certificate's key", certFile, otherKey, "want PEM files"},
	} {
		if _, err := server.LoadTLS(tt.cert, tt.key, nil); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: LoadTLS = %v, want an error saying %q", tt.name, err, tt.want)
		}
	}
}

// TestLongPollOverTLS: a long poll over https is answered on a change and
// at shutdown whether the client speaks HTTP/1.1 (the connection is taken
// over) or HTTP/2 (the poll waits in its handler).
func TestLongPollOverTLS(t *testing.T) {
	certFile, keyFile, cert := writeCert(t, t.TempDir(), 1)
	cfg, err := server.LoadTLS(certFile, keyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, fixtureOptions{Options: func(o *server.Options) { o.TLS = cfg }})
	f.ack(t, f.AgentA, "vm-a", heartbeat(1, "Healthy", nil))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- f.Server.ListenAndServe(ctx, "127.0.0.1:0", func(a net.Addr) { addr <- a.String() }) }()
	base := "https://" + <-addr
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	clients := map[string]*http.Client{
		"HTTP/1.1": {Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}},
		"HTTP/2.0": {Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}},
	}
	poll := func(c *http.Client, etag string) (*http.Response, error) {
		req, _ := http.NewRequest(http.MethodGet, base+wire.DesiredPath("vm-a")+"?wait=1m", nil)
		req.Header.Set("Authorization", "Bearer "+f.AgentA)
		req.Header.Set("If-None-Match", etag)
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		return resp, err
	}
	version := 0
	for proto, c := range clients {
		version++
		resp, err := poll(c, `"x"`)
		if err != nil || resp.Proto != proto {
			t.Fatalf("%s: first GET: %v %v", proto, resp, err)
		}
		got := make(chan *http.Response, 1)
		go func() { r, _ := poll(c, resp.Header.Get("ETag")); got <- r }()
		time.Sleep(200 * time.Millisecond)
		f.pin(t, "vm-a", fmt.Sprintf("25.0.%d", version))
		if r := <-got; r == nil || r.StatusCode != 200 || r.Header.Get("ETag") == resp.Header.Get("ETag") {
			t.Errorf("%s: the poll after the pin: %v", proto, r)
		}
	}
	// Shutdown answers the polls of both at once.
	answers := make(chan *http.Response, len(clients))
	for _, c := range clients {
		resp, _ := poll(c, `"x"`)
		go func() { r, _ := poll(c, resp.Header.Get("ETag")); answers <- r }()
	}
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	cancel()
	if err := <-done; err != nil || time.Since(start) > 5*time.Second {
		t.Errorf("shutdown with polls open: %v after %s", err, time.Since(start))
	}
	for range clients {
		if r := <-answers; r == nil || r.StatusCode != http.StatusNotModified {
			t.Errorf("a poll at shutdown: %v", r)
		}
	}
}
