package registry

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TokenServerOptions configure StartTokenServer.
type TokenServerOptions struct {
	// Credentials, when set, are required for tokens: wrong ones get 401,
	// and so do none unless AnonymousPull is set. Without them every
	// request gets what it asks for.
	Credentials *Credentials
	// AnonymousPull gives requests without credentials tokens for pull
	// only (Docker Hub's behaviour for public images).
	AnonymousPull bool
	// TTL is the tokens' lifetime (default 5 minutes; the registry allows
	// a minute of clock leeway).
	TTL time.Duration
}

// TokenServer issues bearer tokens for a docker-registry started with
// Options.TokenAuth: the Docker token protocol
// (GET realm?service=&scope=) on a loopback httptest-style server, tokens
// signed ES256 with a key whose certificate chains to RootCertBundle.
type TokenServer struct {
	// URL is the server's base URL; Realm is its token endpoint.
	URL   string
	Realm string
	// Service and Issuer are what the tokens claim (aud and iss), and
	// what the registry is configured to expect.
	Service string
	Issuer  string
	// RootCertBundle is the PEM file of the CA the registry trusts.
	RootCertBundle string
	// Credentials are the ones required, if any.
	Credentials *Credentials

	opts    TokenServerOptions
	key     *ecdsa.PrivateKey
	leafDER []byte

	mu       sync.Mutex
	requests []TokenRequest
}

// TokenRequest is a request the token server has answered.
type TokenRequest struct {
	// User is the basic-auth user name given ("" when anonymous).
	User string
	// Service and Scopes are the query's.
	Service string
	Scopes  []string
	// Status is the answer's HTTP status.
	Status int
}

// StartTokenServer starts a token server on a free loopback port, with a
// CA and a signing certificate made for the test, and stops it when the
// test ends.
func StartTokenServer(t testing.TB, opts TokenServerOptions) *TokenServer {
	t.Helper()
	if opts.TTL <= 0 {
		opts.TTL = 5 * time.Minute
	}
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("token server: %v", err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "berth test token CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(48 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatalf("token server CA: %v", err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("token server: %v", err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "berth test token signer"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(48 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatalf("token server signer: %v", err)
	}
	bundle := filepath.Join(dir, "token-ca.pem")
	if err := os.WriteFile(bundle, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatalf("token server: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("token server: %v", err)
	}
	s := &TokenServer{
		URL:            "http://" + l.Addr().String(),
		Service:        "berth-test-registry",
		Issuer:         "berth-test-token-issuer",
		RootCertBundle: bundle,
		Credentials:    opts.Credentials,
		opts:           opts,
		key:            key,
		leafDER:        leafDER,
	}
	s.Realm = s.URL + "/token"
	mux := http.NewServeMux()
	mux.HandleFunc("GET /token", s.serveToken)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return s
}

// Requests returns the requests answered so far.
func (s *TokenServer) Requests() []TokenRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

func (s *TokenServer) record(r TokenRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, r)
}

func (s *TokenServer) serveToken(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	rec := TokenRequest{Service: q.Get("service"), Scopes: q["scope"]}
	user, pass, hasAuth := r.BasicAuth()
	rec.User = user
	pullOnly := false
	if c := s.opts.Credentials; c != nil {
		switch {
		case hasAuth && (user != c.User || pass != c.Password):
			rec.Status = http.StatusUnauthorized
		case !hasAuth && !s.opts.AnonymousPull:
			rec.Status = http.StatusUnauthorized
		case !hasAuth:
			pullOnly = true
		}
	}
	if rec.Status == 0 && rec.Service != s.Service {
		rec.Status = http.StatusBadRequest
	}
	if rec.Status != 0 {
		s.record(rec)
		if rec.Status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Basic realm="berth-test-token"`)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(rec.Status)
		_, _ = w.Write([]byte(`{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`))
		return
	}
	type access struct {
		Type    string   `json:"type"`
		Name    string   `json:"name"`
		Actions []string `json:"actions"`
	}
	grants := []access{}
	for _, sc := range rec.Scopes {
		for _, one := range strings.Fields(sc) {
			// type:name:actions, where name may hold a port's colon.
			first := strings.Index(one, ":")
			last := strings.LastIndex(one, ":")
			if first < 0 || last == first {
				continue
			}
			a := access{Type: one[:first], Name: one[first+1 : last], Actions: []string{}}
			for _, act := range strings.Split(one[last+1:], ",") {
				if act == "" || pullOnly && act != "pull" {
					continue
				}
				a.Actions = append(a.Actions, act)
			}
			grants = append(grants, a)
		}
	}
	now := time.Now()
	jti := make([]byte, 8)
	_, _ = rand.Read(jti)
	sub := user
	if sub == "" {
		sub = "anonymous"
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
		"iss":    s.Issuer,
		"sub":    sub,
		"aud":    s.Service,
		"exp":    now.Add(s.opts.TTL).Unix(),
		"nbf":    now.Add(-time.Minute).Unix(),
		"iat":    now.Unix(),
		"jti":    hex.EncodeToString(jti),
		"access": grants,
	})
	tok.Header["x5c"] = []string{base64.StdEncoding.EncodeToString(s.leafDER)}
	signed, err := tok.SignedString(s.key)
	if err != nil {
		rec.Status = http.StatusInternalServerError
		s.record(rec)
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	rec.Status = http.StatusOK
	s.record(rec)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"token":        signed,
		"access_token": signed,
		"expires_in":   int(s.opts.TTL / time.Second),
		"issued_at":    now.UTC().Format(time.RFC3339),
	})
}
