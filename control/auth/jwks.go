package auth

import (
	"context"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Refresh limits of the signing keys. Entra publishes a new key well
// before signing with it, so an unknown kid is almost always a forgery;
// these keep a stream of them from turning into a stream of requests to
// Entra ID.
const (
	// KeyRefreshPerKid: an unknown kid triggers a refresh at most once
	// in this long.
	KeyRefreshPerKid = 5 * time.Minute
	// KeyRefreshFloor: no two refreshes (of any cause) start closer
	// than this, whatever kids arrive.
	KeyRefreshFloor = 30 * time.Second
	// KeyMaxAge: keys older than this are fetched again when next used,
	// so a key Entra withdrew stops being trusted within a day.
	KeyMaxAge = 24 * time.Hour
)

const (
	// fetchTimeout bounds one discovery + JWKS fetch, retries included.
	fetchTimeout = 15 * time.Second
	// warmupTimeout bounds New's first fetch.
	warmupTimeout = 5 * time.Second
	// maxDocument bounds what is read of a discovery document or JWKS.
	maxDocument = 1 << 20
	// minKeyBits refuses weak keys even from the IdP.
	minKeyBits = 2048
)

// keySet holds a tenant's signing keys and fetches them through OIDC
// discovery. One fetch runs at a time; lookups of known kids never wait
// for it.
type keySet struct {
	discovery string
	client    *http.Client
	log       *slog.Logger
	now       func() time.Time

	mu       sync.Mutex
	keys     map[string]*rsa.PublicKey
	fetched  time.Time            // last successful fetch
	lastTry  time.Time            // last fetch started
	tried    map[string]time.Time // unknown kids that started a fetch
	inflight chan struct{}        // closed when the running fetch ends
	jwksURI  string               // from discovery; "" to discover again
	lastErr  error                // of the last fetch
}

func newKeySet(discovery string, client *http.Client, log *slog.Logger, now func() time.Time) *keySet {
	return &keySet{discovery: discovery, client: client, log: log, now: now, tried: map[string]time.Time{}}
}

// warmUp fetches the keys once, for New.
func (k *keySet) warmUp(ctx context.Context) error {
	k.mu.Lock()
	return k.fetchLocked(ctx, "")
}

// key returns the public key named kid, refreshing the set when kid is
// unknown and the limits allow.
func (k *keySet) key(ctx context.Context, kid string) (*rsa.PublicKey, error) {
	k.mu.Lock()
	if pub, ok := k.keys[kid]; ok {
		if k.now().Sub(k.fetched) >= KeyMaxAge && k.inflight == nil && k.now().Sub(k.lastTry) >= KeyRefreshFloor {
			// This request pays for the periodic refresh; the old keys
			// stay if it fails, and pub stays valid for this token only
			// if it is still published.
			if err := k.fetchLocked(ctx, ""); err == nil {
				k.mu.Lock()
				pub, ok = k.keys[kid]
				k.mu.Unlock()
				if !ok {
					return nil, unauthenticated("signing key %s is no longer published by the tenant", claim(kid))
				}
			}
			return pub, nil
		}
		k.mu.Unlock()
		return pub, nil
	}
	if ch := k.inflight; ch != nil {
		// Someone is fetching already: wait for it rather than start
		// another, then look again.
		k.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %w: waiting for signing keys: %w", ErrUnauthenticated, ErrUnavailable, ctx.Err())
		}
		k.mu.Lock()
		pub, ok := k.keys[kid]
		err := k.missLocked(kid)
		k.mu.Unlock()
		if ok {
			return pub, nil
		}
		return nil, err
	}
	now := k.now()
	allowed := k.lastTry.IsZero() || now.Sub(k.lastTry) >= KeyRefreshFloor
	if t, seen := k.tried[kid]; seen && now.Sub(t) < KeyRefreshPerKid && len(k.keys) > 0 {
		allowed = false
	}
	if !allowed {
		err := k.missLocked(kid)
		k.mu.Unlock()
		k.log.Debug("unknown signing key; refresh rate-limited", "kid", claim(kid))
		return nil, err
	}
	for old, t := range k.tried {
		if now.Sub(t) >= KeyRefreshPerKid {
			delete(k.tried, old)
		}
	}
	// tried holds at most KeyRefreshPerKid/KeyRefreshFloor entries: one
	// per fetch, and fetches are KeyRefreshFloor apart.
	k.tried[kid] = now
	_ = k.fetchLocked(ctx, kid)
	k.mu.Lock()
	pub, ok := k.keys[kid]
	err := k.missLocked(kid)
	k.mu.Unlock()
	if ok {
		return pub, nil
	}
	return nil, err
}

// missLocked is the error for a kid not in the set.
func (k *keySet) missLocked(kid string) error {
	if len(k.keys) == 0 {
		msg := "no signing keys fetched from Entra ID yet"
		if k.lastErr != nil {
			msg += ": " + k.lastErr.Error()
		}
		return fmt.Errorf("%w: %w: %s", ErrUnauthenticated, ErrUnavailable, msg)
	}
	return unauthenticated("unknown signing key %s: not among the tenant's published keys", claim(kid))
}

// fetchLocked fetches the key set. Called with k.mu held, it releases it
// for the duration of the fetch and returns with it released.
func (k *keySet) fetchLocked(ctx context.Context, cause string) error {
	ch := make(chan struct{})
	k.inflight = ch
	k.lastTry = k.now()
	jwksURI := k.jwksURI
	k.mu.Unlock()

	// The fetch serves every request waiting for it, so one caller giving
	// up must not cancel it.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
	defer cancel()
	keys, uri, err := k.fetch(fctx, jwksURI)

	k.mu.Lock()
	defer k.mu.Unlock()
	k.inflight = nil
	close(ch)
	k.lastErr = err
	if err != nil {
		// Discover again next time: the JWKS may have moved.
		k.jwksURI = ""
		k.log.Warn("fetch Entra ID signing keys", "discovery", k.discovery, "cause", cause, "err", err)
		return err
	}
	k.jwksURI = uri
	k.keys = keys
	k.fetched = k.now()
	kids := make([]string, 0, len(keys))
	for kid := range keys {
		kids = append(kids, kid)
	}
	k.log.Info("fetched Entra ID signing keys", "jwks", uri, "kids", kids, "unknownKid", cause != "")
	return nil
}

// fetch discovers the JWKS URI when it is not known and reads the keys.
func (k *keySet) fetch(ctx context.Context, jwksURI string) (map[string]*rsa.PublicKey, string, error) {
	if jwksURI == "" {
		var doc struct {
			JWKSURI string `json:"jwks_uri"`
		}
		if err := k.getJSON(ctx, k.discovery, &doc); err != nil {
			return nil, "", fmt.Errorf("OIDC discovery: %w", err)
		}
		if doc.JWKSURI == "" {
			return nil, "", fmt.Errorf("OIDC discovery %s names no jwks_uri", k.discovery)
		}
		if err := checkFetchURL(doc.JWKSURI); err != nil {
			return nil, "", fmt.Errorf("OIDC discovery jwks_uri: %w", err)
		}
		jwksURI = doc.JWKSURI
	}
	var set jwkSet
	if err := k.getJSON(ctx, jwksURI, &set); err != nil {
		return nil, "", fmt.Errorf("JWKS: %w", err)
	}
	keys, skipped := set.rsaKeys()
	for _, s := range skipped {
		k.log.Debug("JWKS key skipped", "reason", s)
	}
	if len(keys) == 0 {
		return nil, "", fmt.Errorf("JWKS %s has no usable RSA signing key", jwksURI)
	}
	return keys, jwksURI, nil
}

func (k *keySet) getJSON(ctx context.Context, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := k.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDocument))
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocument+1))
	if err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	if len(body) > maxDocument {
		return fmt.Errorf("GET %s: document larger than %d bytes", u, maxDocument)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	return nil
}

// jwkSet is a JSON Web Key Set (RFC 7517) as far as RSA signing keys go.
type jwkSet struct {
	Keys []jwk `json:"keys"`
}

type jwk struct {
	Kty string `json:"kty"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	Kid string `json:"kid"`
	N   string `json:"n"`
	E   string `json:"e"`
}

// rsaKeys returns the set's RSA signature keys by kid, and why others
// were skipped.
func (s jwkSet) rsaKeys() (map[string]*rsa.PublicKey, []string) {
	keys := map[string]*rsa.PublicKey{}
	var skipped []string
	for _, j := range s.Keys {
		pub, err := j.rsaPublicKey()
		if err != nil {
			skipped = append(skipped, fmt.Sprintf("kid %q: %v", j.Kid, err))
			continue
		}
		if _, dup := keys[j.Kid]; dup {
			skipped = append(skipped, fmt.Sprintf("kid %q: listed twice; the first is kept", j.Kid))
			continue
		}
		keys[j.Kid] = pub
	}
	return keys, skipped
}

func (j jwk) rsaPublicKey() (*rsa.PublicKey, error) {
	switch {
	case j.Kty != "RSA":
		return nil, fmt.Errorf("kty %q is not RSA", j.Kty)
	case j.Use != "" && j.Use != "sig":
		return nil, fmt.Errorf("use %q is not sig", j.Use)
	case j.Alg != "" && j.Alg != "RS256":
		return nil, fmt.Errorf("alg %q is not RS256", j.Alg)
	case j.Kid == "":
		return nil, errors.New("no kid")
	}
	nb, err := b64uint(j.N)
	if err != nil {
		return nil, fmt.Errorf("n: %w", err)
	}
	eb, err := b64uint(j.E)
	if err != nil {
		return nil, fmt.Errorf("e: %w", err)
	}
	n := new(big.Int).SetBytes(nb)
	if bits := n.BitLen(); bits < minKeyBits || bits > 8192 {
		return nil, fmt.Errorf("modulus of %d bits", bits)
	}
	if len(eb) > 4 || len(eb) == 4 && eb[0] >= 0x80 {
		// Beyond what rsa.PublicKey.E holds on every platform.
		return nil, fmt.Errorf("exponent of %d bytes", len(eb))
	}
	var e int
	for _, b := range eb {
		e = e<<8 | int(b)
	}
	if e < 3 || e%2 == 0 {
		return nil, fmt.Errorf("exponent %d", e)
	}
	return &rsa.PublicKey{N: n, E: e}, nil
}

// b64uint decodes a base64url big-endian unsigned integer (RFC 7518
// 6.3.1), tolerating the padding some publishers add.
func b64uint(s string) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		return nil, err
	}
	if len(b) == 0 {
		return nil, errors.New("empty")
	}
	return b, nil
}
