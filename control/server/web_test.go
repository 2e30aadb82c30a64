package server_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthhq/berth/control/auth"
	"github.com/berthhq/berth/control/server"
	"github.com/berthhq/berth/control/store"
	"github.com/berthhq/berth/control/web"
	"github.com/berthhq/berth/internal/testenv/entra"
)

// clock is a movable clock for the sign-in.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// webFixture is a server with the real web page and sign-in on the
// fixture's store, served over https (TLS) and plain http (Plain).
type webFixture struct {
	*fixture
	TLS   *httptest.Server
	Clock *clock
	Auth  *server.WebAuth
}

func newWebFixture(t *testing.T, o fixtureOptions, mod func(*server.WebAuthOptions)) *webFixture {
	t.Helper()
	w := &webFixture{Clock: &clock{t: time.Now()}}
	inner := o.Options
	o.Options = func(so *server.Options) {
		if inner != nil {
			inner(so)
		}
		wo := server.WebAuthOptions{Auth: so.Auth, Sessions: so.Store.(*store.Store), Cookie: web.CookieName, Now: w.Clock.Now}
		if mod != nil {
			mod(&wo)
		}
		w.Auth = server.NewWebAuth(wo)
		so.Web = web.New(web.Options{Store: so.Store.(*store.Store), Authorize: w.Auth.Authorize, Login: w.Auth.Login, Logout: w.Auth.Logout, IsHTTPS: w.Auth.IsHTTPS})
	}
	w.fixture = newFixture(t, o)
	w.TLS = httptest.NewTLSServer(w.Server)
	t.Cleanup(w.TLS.Close)
	return w
}

// client is a browser that follows no redirects, so each answer is seen.
func client(ts *httptest.Server) *http.Client {
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if ts != nil {
		c.Transport = ts.Client().Transport
	}
	return c
}

// login signs in at base with token and returns the session cookie.
func login(t *testing.T, c *http.Client, base, token string, header map[string]string) *http.Cookie {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/login", strings.NewReader(url.Values{"token": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", base)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %d", resp.StatusCode)
	}
	for _, ck := range resp.Cookies() {
		if ck.Name == web.CookieName {
			return ck
		}
	}
	t.Fatalf("login set no %s cookie: %v", web.CookieName, resp.Header.Values("Set-Cookie"))
	return nil
}

// page GETs / at base with the cookie value and says whether the fleet
// page came back (true) or a redirect to the login (false).
func page(t *testing.T, c *http.Client, base, cookie string) bool {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/", nil)
	if cookie != "" {
		req.AddCookie(&http.Cookie{Name: web.CookieName, Value: cookie})
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusOK:
		return true
	case resp.StatusCode == http.StatusSeeOther && strings.HasPrefix(resp.Header.Get("Location"), "/login"):
		return false
	}
	t.Fatalf("GET /: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	return false
}

// TestWebSessions is issue 9 item 10: the sign-in cookie held the
// permanent operator token, had no expiry and was never Secure. Now it
// holds a random session secret (stored hashed) that expires, ends at
// sign-out and with its token, and is Secure over https.
func TestWebSessions(t *testing.T) {
	w := newWebFixture(t, fixtureOptions{}, nil)
	c := client(w.TLS)
	ck := login(t, c, w.TLS.URL, w.Operator, nil)
	if !ck.Secure || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/" {
		t.Errorf("cookie over https = %+v, want Secure, HttpOnly, SameSite=Strict, Path=/", ck)
	}
	if strings.Contains(ck.Value, w.Operator) || strings.Contains(w.Operator, ck.Value) || !strings.HasPrefix(ck.Value, "berth_session_") {
		t.Errorf("cookie value %q: want a session secret, not the token", ck.Value)
	}
	if left := time.Until(ck.Expires); left < server.DefaultSessionTTL-time.Minute || left > server.DefaultSessionTTL+time.Minute {
		t.Errorf("cookie expires in %v, want %v", left, server.DefaultSessionTTL)
	}
	if !page(t, c, w.TLS.URL, ck.Value) {
		t.Fatal("the session cookie does not open the page")
	}
	// The token itself in the cookie opens nothing: cookies hold sessions.
	if page(t, c, w.TLS.URL, w.Operator) {
		t.Error("a cookie holding the operator token opens the page")
	}
	// A session expires.
	w.Clock.Add(server.DefaultSessionTTL - time.Second)
	if !page(t, c, w.TLS.URL, ck.Value) {
		t.Error("the session ended before its time")
	}
	w.Clock.Add(time.Second)
	if page(t, c, w.TLS.URL, ck.Value) {
		t.Error("the session outlived its expiry")
	}
	// Sign-out ends the session: the old cookie opens nothing.
	ck = login(t, c, w.TLS.URL, w.Operator, nil)
	req, _ := http.NewRequest(http.MethodPost, w.TLS.URL+"/logout", nil)
	req.Header.Set("Origin", w.TLS.URL)
	req.AddCookie(ck)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	if page(t, c, w.TLS.URL, ck.Value) {
		t.Error("the cookie still opens the page after sign-out")
	}
	// Revoking the token ends the sessions it opened.
	ck = login(t, c, w.TLS.URL, w.Operator, nil)
	toks, err := w.Store.Tokens(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range toks {
		if tok.Subject == "alice" {
			if err := w.Store.RevokeToken(context.Background(), tok.ID, time.Now()); err != nil {
				t.Fatal(err)
			}
		}
	}
	if page(t, c, w.TLS.URL, ck.Value) {
		t.Error("the session outlived the revocation of its token")
	}
	// Agents cannot sign in.
	if _, _, err := w.Auth.Login(context.Background(), w.AgentA); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("agent login: %v", err)
	}
	// Over plain http the cookie cannot be Secure, or the browser would
	// drop it.
	if ck := login(t, client(nil), w.URL, issueOperator(t, w.Store), nil); ck.Secure {
		t.Errorf("cookie over plain http = %+v, want not Secure", ck)
	}
}

func issueOperator(t *testing.T, st *store.Store) string {
	t.Helper()
	_, secret, err := st.IssueToken(context.Background(), store.RoleOperator, "bob", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return secret
}

// TestWebSessionEntra: a session opened with an Entra operator's token
// ends when the token does.
func TestWebSessionEntra(t *testing.T) {
	e := entra.Start(t, entra.Options{TTL: time.Hour})
	w := newWebFixture(t, fixtureOptions{
		Methods: []auth.Method{auth.MethodEntra, auth.MethodToken},
		Entra:   &auth.Entra{Tenant: e.Tenant, Audience: entraAudience, Authority: e.URL},
	}, nil)
	claims := e.UserClaims(entraAudience, "77777777-7777-4777-8777-777777777777")
	claims["roles"] = []string{auth.DefaultOperatorRole}
	_, expires, err := w.Auth.Login(context.Background(), e.Mint(claims))
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Unix(claims["exp"].(int64), 0); !expires.Equal(want) {
		t.Errorf("session expires %v, want the token's exp %v", expires, want)
	}
}

// TestWebBehindTLSProxy: behind a TLS-terminating proxy the cookie is
// Secure when the proxy, and only a trusted one, says https.
func TestWebBehindTLSProxy(t *testing.T) {
	for _, tt := range []struct {
		name    string
		proxies string
		proto   string
		secure  bool
	}{
		{"trusted proxy says https", "127.0.0.1", "https", true},
		{"trusted proxy says http", "127.0.0.0/8", "http", false},
		{"untrusted peer says https", "10.0.0.0/8", "https", false},
		{"no proxies configured", "", "https", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			proxies, err := server.ParseTrustedProxies(tt.proxies)
			if err != nil {
				t.Fatal(err)
			}
			w := newWebFixture(t, fixtureOptions{}, func(o *server.WebAuthOptions) { o.TrustedProxies = proxies })
			ck := login(t, client(nil), w.URL, w.Operator, map[string]string{"X-Forwarded-Proto": tt.proto})
			if ck.Secure != tt.secure {
				t.Errorf("cookie Secure = %v, want %v", ck.Secure, tt.secure)
			}
		})
	}
}

func TestIsHTTPS(t *testing.T) {
	proxies, err := server.ParseTrustedProxies("10.0.0.0/24, 192.0.2.7, 2001:db8::/32")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, remote string
		proto        []string
		tls          bool
		want         bool
	}{
		{"TLS connection", "203.0.113.9:1", nil, true, true},
		{"plain, no proxy", "203.0.113.9:1", []string{"https"}, false, false},
		{"trusted prefix", "10.0.0.5:4431", []string{"https"}, false, true},
		{"trusted address", "192.0.2.7:1", []string{"HTTPS"}, false, true},
		{"trusted IPv6", "[2001:db8::1]:1", []string{"https"}, false, true},
		{"IPv4-mapped trusted", "[::ffff:10.0.0.5]:1", []string{"https"}, false, true},
		{"trusted, http", "10.0.0.5:1", []string{"http"}, false, false},
		{"trusted, no header", "10.0.0.5:1", nil, false, false},
		{"client's own https before the proxy's http", "10.0.0.5:1", []string{"https, http"}, false, false},
		{"proxy appends https", "10.0.0.5:1", []string{"http", "https"}, false, true},
		{"outside the prefix", "10.0.1.5:1", []string{"https"}, false, false},
		{"unparsable peer", "somewhere", []string{"https"}, false, false},
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = tt.remote
		if !tt.tls {
			r.TLS = nil
		} else {
			r.TLS = &tls.ConnectionState{}
		}
		for _, p := range tt.proto {
			r.Header.Add("X-Forwarded-Proto", p)
		}
		if got := server.IsHTTPS(r, proxies); got != tt.want {
			t.Errorf("%s: IsHTTPS = %v, want %v", tt.name, got, tt.want)
		}
	}
	for _, bad := range []string{"10.0.0.0/33", "proxy.internal", "10.0.0.1-10.0.0.9"} {
		if _, err := server.ParseTrustedProxies(bad); err == nil || !strings.Contains(err.Error(), "--trusted-proxies") {
			t.Errorf("ParseTrustedProxies(%q) = %v", bad, err)
		}
	}
	if ps, err := server.ParseTrustedProxies(" 10.1.2.3/8 ,"); err != nil || len(ps) != 1 || ps[0] != netip.MustParsePrefix("10.0.0.0/8") {
		t.Errorf("ParseTrustedProxies masks and trims: %v %v", ps, err)
	}
}

func TestSessionExpiry(t *testing.T) {
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	for _, tt := range []struct {
		name    string
		credExp time.Time
		want    time.Time
	}{
		{"issued token", time.Time{}, now.Add(12 * time.Hour)},
		{"Entra token ending first", now.Add(time.Hour), now.Add(time.Hour)},
		{"Entra token ending later", now.Add(24 * time.Hour), now.Add(12 * time.Hour)},
	} {
		if got := server.SessionExpiry(now, 12*time.Hour, tt.credExp); !got.Equal(tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestWebMount: the page gets every path outside /v1/ and /healthz, the
// API stays JSON, and the page takes operators only, from the header or a
// session.
func TestWebMount(t *testing.T) {
	w := newWebFixture(t, fixtureOptions{}, nil)
	c := client(nil)
	ck := login(t, c, w.URL, w.Operator, nil)
	for _, tt := range []struct {
		name   string
		rq     request
		cookie string
		status int
		body   string
	}{
		{"header", request{Path: "/", Token: w.Operator}, "", 200, "fleet"},
		{"session", request{Path: "/hosts/vm-a"}, ck.Value, 404, "vm-a"},
		{"agent header", request{Path: "/", Token: w.AgentA}, "", 303, ""},
		{"agent token as cookie", request{Path: "/"}, w.AgentA, 303, ""},
		{"nothing", request{Path: "/"}, "", 303, ""},
		{"api stays JSON", request{Path: "/v1/nope", Token: w.Operator}, "", 404, `"code":"not_found"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, w.URL+tt.rq.Path, nil)
			if tt.rq.Token != "" {
				req.Header.Set("Authorization", "Bearer "+tt.rq.Token)
			}
			if tt.cookie != "" {
				req.AddCookie(&http.Cookie{Name: web.CookieName, Value: tt.cookie})
			}
			rec := httptest.NewRecorder()
			w.Server.ServeHTTP(rec, req)
			if rec.Code != tt.status || !contains(rec.Body.String(), tt.body) {
				t.Errorf("%d %q, want %d %q", rec.Code, fmtBody(rec.Body.Bytes()), tt.status, tt.body)
			}
		})
	}
	ctx := context.Background()
	for _, tok := range []string{w.AgentA, "berth_nope", ""} {
		if _, _, err := w.Auth.Login(ctx, tok); !errors.Is(err, auth.ErrUnauthenticated) {
			t.Errorf("login with %q: %v", tok, err)
		}
	}
}
