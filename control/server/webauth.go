package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/berthhq/berth/control/auth"
	"github.com/berthhq/berth/control/store"
)

// SessionStore keeps the web page's sign-in sessions; *store.Store is
// the implementation.
type SessionStore interface {
	CreateSession(ctx context.Context, subject, tokenID string, now, expires time.Time) (string, error)
	LookupSession(ctx context.Context, secret string, now time.Time) (store.Session, error)
	RevokeSession(ctx context.Context, secret string, now time.Time) error
}

var _ SessionStore = (*store.Store)(nil)

// DefaultSessionTTL is how long a web sign-in lasts: a working day and
// then some, after which the operator pastes the token again.
const DefaultSessionTTL = 12 * time.Hour

// WebAuthOptions configure NewWebAuth. Auth and Sessions are required.
type WebAuthOptions struct {
	Auth     Authenticator
	Sessions SessionStore
	// Cookie is the session cookie's name (web.CookieName).
	Cookie string
	// TTL is a session's lifetime (default DefaultSessionTTL); a session
	// opened with an Entra token ends with the token.
	TTL time.Duration
	// TrustedProxies are the TLS-terminating proxies whose
	// X-Forwarded-Proto is believed (see ParseTrustedProxies).
	TrustedProxies []netip.Prefix
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// WebAuth is the web page's sign-in: an operator pastes a token once, and
// the page keeps a server-side session whose random secret, not the
// token, rides in the cookie. The store holds only the secret's SHA-256
// and the session's expiry; signing out ends it there, and revoking the
// token it was opened with ends it too. It lives here so the page and the
// API accept exactly the same operators.
type WebAuth struct {
	auth     Authenticator
	sessions SessionStore
	cookie   string
	ttl      time.Duration
	proxies  []netip.Prefix
	now      func() time.Time
}

// NewWebAuth returns the web page's sign-in. It panics when Auth or
// Sessions is missing: that is a wiring bug.
func NewWebAuth(o WebAuthOptions) *WebAuth {
	if o.Auth == nil || o.Sessions == nil || o.Cookie == "" {
		panic("server.NewWebAuth: Auth, Sessions and Cookie are required")
	}
	w := &WebAuth{auth: o.Auth, sessions: o.Sessions, cookie: o.Cookie, ttl: o.TTL, proxies: o.TrustedProxies, now: o.Now}
	if w.ttl <= 0 {
		w.ttl = DefaultSessionTTL
	}
	if w.now == nil {
		w.now = time.Now
	}
	return w
}

// Authorize is the check the web page runs on every request: an operator
// token in the Authorization header, else a live session in the cookie.
func (w *WebAuth) Authorize(r *http.Request) error {
	if h := r.Header.Get("Authorization"); h != "" {
		p, err := w.auth.Authenticate(r.Context(), h)
		if err != nil {
			return err
		}
		return operatorOnly(p)
	}
	c, err := r.Cookie(w.cookie)
	if err != nil || c.Value == "" {
		return fmt.Errorf("%w: no session cookie; sign in at /login", auth.ErrUnauthenticated)
	}
	if _, err := w.sessions.LookupSession(r.Context(), c.Value, w.now()); err != nil {
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrExpired) || errors.Is(err, store.ErrRevoked) {
			return fmt.Errorf("%w: %w", auth.ErrUnauthenticated, err)
		}
		return fmt.Errorf("check the session: %w", err)
	}
	return nil
}

// Login checks that token is an operator's and opens a session for it,
// returning the session's secret (the cookie's value) and its expiry.
func (w *WebAuth) Login(ctx context.Context, token string) (string, time.Time, error) {
	p, err := w.auth.Authenticate(ctx, "Bearer "+token)
	if err != nil {
		return "", time.Time{}, err
	}
	if err := operatorOnly(p); err != nil {
		return "", time.Time{}, err
	}
	now := w.now()
	expires := sessionExpiry(now, w.ttl, p.Expires)
	if !expires.After(now) {
		return "", time.Time{}, fmt.Errorf("%w: the token expires now; get a fresh one", auth.ErrUnauthenticated)
	}
	secret, err := w.sessions.CreateSession(ctx, p.Subject, p.TokenID, now, expires)
	if err != nil {
		return "", time.Time{}, err
	}
	return secret, expires, nil
}

// sessionExpiry is when a session opened at now ends: after ttl, or when
// the credential that opened it does (credExp, zero for none).
func sessionExpiry(now time.Time, ttl time.Duration, credExp time.Time) time.Time {
	exp := now.Add(ttl)
	if !credExp.IsZero() && credExp.Before(exp) {
		exp = credExp
	}
	return exp
}

// Logout ends the session whose secret the cookie held.
func (w *WebAuth) Logout(ctx context.Context, secret string) error {
	return w.sessions.RevokeSession(ctx, secret, w.now())
}

// IsHTTPS reports whether the browser reached the page over https: the
// connection is TLS, or it comes from a trusted proxy that says so in
// X-Forwarded-Proto. The header of any other peer is ignored: a client
// could send anything.
func (w *WebAuth) IsHTTPS(r *http.Request) bool {
	return isHTTPS(r, w.proxies)
}

func operatorOnly(p auth.Principal) error {
	if p.Method != auth.MethodNone && p.Role != store.RoleOperator {
		return fmt.Errorf("%w: a %s token cannot see the fleet; log in with an operator token (berth-control token issue --operator NAME)", auth.ErrUnauthenticated, p.Role)
	}
	return nil
}

// ParseTrustedProxies parses --trusted-proxies: addresses or CIDR
// prefixes, comma-separated ("" for none).
func ParseTrustedProxies(s string) ([]netip.Prefix, error) {
	var ps []netip.Prefix
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if a, err := netip.ParseAddr(part); err == nil {
			ps = append(ps, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(part)
		if err != nil {
			return nil, fmt.Errorf("--trusted-proxies %q: want addresses or CIDR prefixes such as 10.0.0.5 or 10.0.0.0/24, comma-separated", part)
		}
		ps = append(ps, p.Masked())
	}
	return ps, nil
}

// isHTTPS: see WebAuth.IsHTTPS. Of X-Forwarded-Proto only the last value
// counts, the one the trusted proxy itself added.
func isHTTPS(r *http.Request, proxies []netip.Prefix) bool {
	if r.TLS != nil {
		return true
	}
	if len(proxies) == 0 {
		return false
	}
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	addr := peer.Addr().Unmap()
	trusted := false
	for _, p := range proxies {
		if p.Contains(addr) {
			trusted = true
			break
		}
	}
	if !trusted {
		return false
	}
	vals := r.Header.Values("X-Forwarded-Proto")
	if len(vals) == 0 {
		return false
	}
	last := vals[len(vals)-1]
	if i := strings.LastIndexByte(last, ','); i >= 0 {
		last = last[i+1:]
	}
	return strings.EqualFold(strings.TrimSpace(last), "https")
}
