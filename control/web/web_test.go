package web

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"html"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthhq/berth/control/store"
	"github.com/berthhq/berth/control/wire"
	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// testNow is the clock of the handler tests.
var testNow = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)

// newTestHandler serves the test fleet with the test clock.
func newTestHandler(t testing.TB, o Options) http.Handler {
	t.Helper()
	if o.Store == nil {
		o.Store = seed(t, fleet(testNow))
	}
	if o.Now == nil {
		o.Now = func() time.Time { return testNow }
	}
	return New(o)
}

// get serves one GET and returns the status and the body.
func get(t testing.TB, h http.Handler, target string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
	return rec.Code, rec.Body.String()
}

var rowRE = regexp.MustCompile(`<tr data-host="([^"]*)">`)

// rows are the host ids of the fleet table, in order.
func rows(body string) []string {
	var ids []string
	for _, m := range rowRE.FindAllStringSubmatch(body, -1) {
		ids = append(ids, html.UnescapeString(m[1]))
	}
	return ids
}

func TestFleetLists(t *testing.T) {
	h := newTestHandler(t, Options{})
	code, body := get(t, h, "/")
	if code != http.StatusOK {
		t.Fatalf("GET / = %d\n%s", code, body)
	}
	want := []string{"h-canary-1", "h-evil-5", "h-gone-4", "h-prod-2", "h-prod-3"}
	if diff := cmp.Diff(want, rows(body)); diff != "" {
		t.Errorf("rows (-want +got):\n%s", diff)
	}
	for _, s := range []string{
		`href="/hosts/h-prod-3"`,
		`<span class="state st-unhealthy">Unhealthy</span>`,
		`<span class="state st-stale">Stale</span> <small>last Healthy</small>`,
		`title="2026-03-14 15:09:14 UTC">12 s ago</td>`,
		`<td class="engine">containerd 1.7.22</td>`,
		`id="chart-state"`, `id="chart-engine"`,
		`<g class="bar" data-label="Unhealthy" data-count="1">`,
		`<g class="bar" data-label="27.3.1" data-count="3">`,
		`<meta http-equiv="refresh" content="10">`,
		`5 hosts`,
	} {
		if !strings.Contains(body, s) {
			t.Errorf("the fleet page lacks %s", s)
		}
	}
	if strings.Contains(body, "Rollouts") {
		t.Errorf("the fleet page shows Rollouts, which do not exist yet")
	}
}

func TestFleetFilterAndSort(t *testing.T) {
	h := newTestHandler(t, Options{})
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"state=Unhealthy", []string{"h-prod-3"}},
		{"state=Stale", []string{"h-gone-4"}},
		{"engine=27.3.1", []string{"h-canary-1", "h-evil-5", "h-prod-3"}},
		{"agent=0.3.9", []string{"h-gone-4", "h-prod-3"}},
		{"label=ring%3Dprod", []string{"h-gone-4", "h-prod-2", "h-prod-3"}},
		{"label=ring%3Dprod&label=region%3Dwesteurope", []string{"h-prod-3"}},
		{"label=ring%3Dprod&label=", []string{"h-gone-4", "h-prod-2", "h-prod-3"}}, // the form's empty box
		{"engine=27.3.1&agent=0.4.0&sort=-id", []string{"h-evil-5", "h-canary-1"}},
		{"sort=-id", []string{"h-prod-3", "h-prod-2", "h-gone-4", "h-evil-5", "h-canary-1"}},
		{"sort=-lastReport", []string{"h-evil-5", "h-prod-2", "h-prod-3", "h-canary-1", "h-gone-4"}},
		{"state=Degraded&engine=27.3.1", nil},
	} {
		code, body := get(t, h, "/?"+tc.query)
		if code != http.StatusOK {
			t.Errorf("GET /?%s = %d", tc.query, code)
			continue
		}
		if diff := cmp.Diff(tc.want, rows(body)); diff != "" {
			t.Errorf("GET /?%s rows (-want +got):\n%s", tc.query, diff)
		}
	}

	// The column headers sort, and a second click reverses.
	_, body := get(t, h, "/?state=Unhealthy&sort=state")
	for _, s := range []string{
		`<th aria-sort="ascending"><a href="/?sort=-state&amp;state=Unhealthy">State ▲</a></th>`,
		`<th><a href="/?sort=id&amp;state=Unhealthy">Host</a></th>`,
		`1 match the filter`,
	} {
		if !strings.Contains(body, s) {
			t.Errorf("the sorted page lacks %s", s)
		}
	}
}

func TestFleetPaging(t *testing.T) {
	h := newTestHandler(t, Options{})
	var seen []string
	target := "/?limit=2&sort=-id"
	for pages := 0; target != ""; pages++ {
		if pages > 5 {
			t.Fatalf("more pages than hosts")
		}
		code, body := get(t, h, target)
		if code != http.StatusOK {
			t.Fatalf("GET %s = %d\n%s", target, code, body)
		}
		got := rows(body)
		if len(got) == 0 || len(got) > 2 {
			t.Fatalf("GET %s: %d rows, want 1 or 2", target, len(got))
		}
		seen = append(seen, got...)
		target = ""
		if m := regexp.MustCompile(`<a href="([^"]*)" id="next-page"`).FindStringSubmatch(body); m != nil {
			target = html.UnescapeString(m[1])
			if !strings.Contains(target, "limit=2") || !strings.Contains(target, "sort=-id") {
				t.Errorf("the next page %s lost the limit or the order", target)
			}
		}
		if pages > 0 && !strings.Contains(body, `id="first-page"`) {
			t.Errorf("page %d has no link to the first page", pages+1)
		}
	}
	want := []string{"h-prod-3", "h-prod-2", "h-gone-4", "h-evil-5", "h-canary-1"}
	if diff := cmp.Diff(want, seen); diff != "" {
		t.Errorf("hosts over all pages (-want +got):\n%s", diff)
	}
}

func TestBadFilter(t *testing.T) {
	h := newTestHandler(t, Options{})
	for _, tc := range []struct {
		query string
		want  []string // on the page, HTML-escaped
	}{
		{"state=Sick", []string{"&#34;Sick&#34;", "<code>Healthy</code>", "<code>Stale</code>"}},
		{"sort=colour", []string{"&#34;colour&#34;", "<code>lastReport</code>", "<code>-id</code>"}},
		{"label=ring", []string{"&#34;ring&#34;", "key=value"}},
		{"label=%3Dprod", []string{"&#34;=prod&#34;"}},
		{"limit=0", []string{"&#34;0&#34;", "1 to 1000"}},
		{"limit=lots", []string{"&#34;lots&#34;"}},
		{"cursor=not-a-cursor", []string{"cursor"}},
		{"state=%3Cscript%3E", []string{"&#34;&lt;script&gt;&#34;"}},
	} {
		code, body := get(t, h, "/?"+tc.query)
		if code != http.StatusBadRequest {
			t.Errorf("GET /?%s = %d, want 400", tc.query, code)
			continue
		}
		if !strings.Contains(body, "<h1>Bad filter</h1>") {
			t.Errorf("GET /?%s: not the bad-filter page:\n%s", tc.query, body)
		}
		for _, s := range tc.want {
			if !strings.Contains(body, s) {
				t.Errorf("GET /?%s: the page lacks %s:\n%s", tc.query, s, body)
			}
		}
	}
}

func TestHostPage(t *testing.T) {
	h := newTestHandler(t, Options{})
	code, body := get(t, h, "/hosts/h-prod-3")
	if code != http.StatusOK {
		t.Fatalf("GET /hosts/h-prod-3 = %d\n%s", code, body)
	}
	for _, s := range []string{
		`<span id="state" class="state st-unhealthy">Unhealthy</span>`,
		`<dd id="engine">docker 27.3.1 (not running, not healthy)</dd>`,
		`<dd id="agent">0.3.9</dd>`,
		`<tr data-check="engine">`,
		`<span class="status ck-fail">fail</span>`,
		`<td class="message">dockerd is not answering on its socket</td>`,
		`<td class="kind">engine.restart.failed</td>`,
		`<span class="chip">attempt=3</span>`,
		`<a class="chip" href="/?label=region%3Dwesteurope">region=westeurope</a>`,
		`<svg id="history"`,
		`<th>hits</th><td class="num">41</td>`,
	} {
		if !strings.Contains(body, s) {
			t.Errorf("the host page lacks %s", s)
		}
	}
	// Events are newest first.
	if i, j := strings.Index(body, "engine.restart.failed"), strings.Index(body, "engine.upgrade.started"); i < 0 || j < 0 || i > j {
		t.Errorf("events not newest first")
	}

	code, body = get(t, h, "/hosts/h-gone-4")
	if code != http.StatusOK || !strings.Contains(body, `id="stale"`) || !strings.Contains(body, "<strong>Healthy</strong>") {
		t.Errorf("GET /hosts/h-gone-4 = %d: the stale host does not say it is stale and last reported Healthy\n%s", code, body)
	}
}

func TestHostIDEscaped(t *testing.T) {
	const id = "vm 7/b?c#d"
	now := testNow
	st := seed(t, []seedHost{{ID: id, State: "Healthy", Flavor: "docker", Engine: "27.3.1", Agent: "0.4.0", Received: now}})
	h := newTestHandler(t, Options{Store: st})
	_, body := get(t, h, "/")
	link := "/hosts/" + url.PathEscape(id)
	if !strings.Contains(body, `href="`+link+`"`) {
		t.Fatalf("the fleet page does not link to %s:\n%s", link, body)
	}
	code, body := get(t, h, link)
	if code != http.StatusOK || !strings.Contains(body, `<span class="host-id" id="host-id">vm 7/b?c#d</span>`) {
		t.Errorf("GET %s = %d, not the host's page:\n%s", link, code, body)
	}
	if toggle := `<a id="refresh-toggle" href="` + link + `?refresh=off">`; !strings.Contains(body, toggle) {
		t.Errorf("the host page lacks %s", toggle)
	}
}

func TestUnknownHost(t *testing.T) {
	h := newTestHandler(t, Options{})
	code, body := get(t, h, "/hosts/nobody%3Cb%3E")
	if code != http.StatusNotFound {
		t.Fatalf("GET unknown host = %d, want 404", code)
	}
	if !strings.Contains(body, "No host with id &#34;nobody&lt;b&gt;&#34;") {
		t.Errorf("the 404 page does not name the host:\n%s", body)
	}
	if code, _ := get(t, h, "/no/such/page"); code != http.StatusNotFound {
		t.Errorf("GET /no/such/page = %d, want 404", code)
	}
}

// TestHostileReportsInert checks that markup a host reports — in labels,
// check messages and events — reaches the page as text.
func TestHostileReportsInert(t *testing.T) {
	h := newTestHandler(t, Options{})
	for _, page := range []string{"/", "/hosts/h-evil-5", "/?label=team%3D%3Cscript%3Ealert(1)%3C%2Fscript%3E"} {
		code, body := get(t, h, page)
		if code != http.StatusOK {
			t.Fatalf("GET %s = %d", page, code)
		}
		for _, bad := range []string{"<script", "<img", "<svg onload", "<b>", `x"><b>`} {
			if strings.Contains(body, bad) {
				t.Errorf("GET %s: the page holds live markup %q", page, bad)
			}
		}
		if !strings.Contains(body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
			t.Errorf("GET %s: the hostile label is not shown as text", page)
		}
	}
	_, body := get(t, h, "/hosts/h-evil-5")
	for _, s := range []string{"&lt;img src=x onerror=alert(2)&gt;", "&lt;script&gt;alert(3)&lt;/script&gt;", "k=&lt;svg onload=alert(4)&gt;"} {
		if !strings.Contains(body, s) {
			t.Errorf("the host page lacks the escaped %s", s)
		}
	}
}

func TestSecurityHeaders(t *testing.T) {
	h := newTestHandler(t, Options{})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	csp := rec.Header().Get("Content-Security-Policy")
	if !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "script-src") {
		t.Errorf("CSP = %q: want no script allowed", csp)
	}
	if got := rec.Header().Get("X-Frame-Options"); got != "DENY" {
		t.Errorf("X-Frame-Options = %q", got)
	}
	code, css := get(t, h, "/static/style.css")
	if code != http.StatusOK || !strings.Contains(css, "system-ui") {
		t.Errorf("GET /static/style.css = %d", code)
	}
}

func TestRefresh(t *testing.T) {
	h := newTestHandler(t, Options{})
	_, body := get(t, h, "/?state=Healthy&refresh=off")
	if strings.Contains(body, `http-equiv="refresh"`) {
		t.Errorf("refresh=off still refreshes")
	}
	for _, s := range []string{
		`<a id="refresh-toggle" href="/?state=Healthy">resume</a>`,
		`href="/hosts/h-canary-1?refresh=off"`,
		`<input type="hidden" name="refresh" value="off">`,
	} {
		if !strings.Contains(body, s) {
			t.Errorf("the paused page lacks %s", s)
		}
	}
	_, body = get(t, h, "/hosts/h-canary-1")
	if !strings.Contains(body, `<a id="refresh-toggle" href="/hosts/h-canary-1?refresh=off">pause</a>`) {
		t.Errorf("the host page has no pause link")
	}

	never := newTestHandler(t, Options{Refresh: -1})
	if _, body := get(t, never, "/"); strings.Contains(body, `http-equiv="refresh"`) || strings.Contains(body, "refresh-toggle") {
		t.Errorf("Refresh -1 still refreshes")
	}
}

// failingStore fails every read.
type failingStore struct{}

var errDisk = errors.New("disk on fire at /var/lib/berth/control.db")

func (failingStore) Hosts(context.Context, wire.HostFilter, time.Time) (wire.HostPage, error) {
	return wire.HostPage{}, errDisk
}
func (failingStore) Host(context.Context, string, time.Time, int) (wire.HostDetail, error) {
	return wire.HostDetail{}, errDisk
}
func (failingStore) Counts(context.Context, time.Time) (wire.Counts, error) {
	return wire.Counts{}, errDisk
}

func TestStoreFails(t *testing.T) {
	var logs bytes.Buffer
	h := New(Options{Store: failingStore{}, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	for _, page := range []string{"/", "/hosts/h1"} {
		code, body := get(t, h, page)
		if code != http.StatusInternalServerError {
			t.Errorf("GET %s = %d, want 500", page, code)
		}
		if strings.Contains(body, "/var/lib") || !strings.Contains(body, "Internal error") {
			t.Errorf("GET %s: the page must not show the store's error:\n%s", page, body)
		}
	}
	if !strings.Contains(logs.String(), "disk on fire") || !strings.Contains(logs.String(), "component=web") {
		t.Errorf("the error was not logged:\n%s", logs.String())
	}
}

var errNoToken = errors.New("no operator token")

// sessions is the handler tests' sign-in, as berth-control's server does
// it with the store: the token "op-good" opens a session whose secret, not
// the token, goes in the cookie; signing out ends it.
type sessions struct {
	mu      sync.Mutex
	n       int
	live    map[string]bool
	failEnd error
}

func newSessions() *sessions { return &sessions{live: map[string]bool{}} }

func (s *sessions) authorize(r *http.Request) error {
	if r.Header.Get("Authorization") == "Bearer op-good" {
		return nil
	}
	c, err := r.Cookie(CookieName)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil || !s.live[c.Value] {
		return errNoToken
	}
	return nil
}

func (s *sessions) login(_ context.Context, token string) (string, time.Time, error) {
	if token != "op-good" {
		return "", time.Time{}, errNoToken
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	id := fmt.Sprintf("sess-%d", s.n)
	s.live[id] = true
	return id, time.Now().Add(time.Hour), nil
}

func (s *sessions) logout(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failEnd != nil {
		return s.failEnd
	}
	delete(s.live, id)
	return nil
}

func (s *sessions) options() Options {
	return Options{Authorize: s.authorize, Login: s.login, Logout: s.logout}
}

func TestAuthorizeRedirects(t *testing.T) {
	ss := newSessions()
	h := newTestHandler(t, ss.options())
	for _, page := range []string{"/?state=Healthy", "/hosts/h-prod-3"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, page, nil))
		if rec.Code != http.StatusSeeOther {
			t.Fatalf("GET %s without a token = %d, want 303", page, rec.Code)
		}
		if want := "/login?next=" + url.QueryEscape(page); rec.Header().Get("Location") != want {
			t.Errorf("GET %s redirects to %q, want %q", page, rec.Header().Get("Location"), want)
		}
	}
	// The header and the cookie both let the operator in.
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set("Authorization", "Bearer op-good")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Errorf("GET / with the header = %d", rec.Code)
	}
	session, _, _ := ss.login(context.Background(), "op-good")
	req = httptest.NewRequest(http.MethodGet, "/hosts/h-prod-3", nil)
	req.AddCookie(&http.Cookie{Name: CookieName, Value: session})
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `action="/logout"`) {
		t.Errorf("GET a host with the cookie = %d, or no logout button", rec.Code)
	}
	// The login page and the stylesheet need no token.
	for _, page := range []string{"/login?next=%2Fhosts%2Fh-prod-3", "/static/style.css"} {
		if code, body := get(t, h, page); code != http.StatusOK {
			t.Errorf("GET %s = %d\n%s", page, code, body)
		}
	}
	if _, body := get(t, h, "/login?next=%2Fhosts%2Fh-prod-3"); !strings.Contains(body, `<input type="hidden" name="next" value="/hosts/h-prod-3">`) {
		t.Errorf("the login form forgot where to go next:\n%s", body)
	}
}

// postLogin posts the login form.
func postLogin(h http.Handler, target, token, next string, hdr map[string]string) *httptest.ResponseRecorder {
	form := url.Values{"token": {token}, "next": {next}}
	req := httptest.NewRequest(http.MethodPost, target, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestLogin(t *testing.T) {
	ss := newSessions()
	h := newTestHandler(t, ss.options())
	same := map[string]string{"Origin": "http://example.com"}

	rec := postLogin(h, "/login", "op-good", "/hosts/h-prod-3", same)
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/hosts/h-prod-3" {
		t.Fatalf("login = %d to %q, want 303 to /hosts/h-prod-3", rec.Code, rec.Header().Get("Location"))
	}
	cookies := rec.Result().Cookies()
	if len(cookies) != 1 {
		t.Fatalf("login set %d cookies", len(cookies))
	}
	// The cookie holds the session, never the token, and expires with it.
	c := cookies[0]
	if c.Name != CookieName || c.Value != "sess-1" || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Secure || c.Path != "/" ||
		c.MaxAge < 3500 || c.MaxAge > 3600 || c.Expires.IsZero() {
		t.Errorf("cookie = %+v", c)
	}
	if strings.Contains(rec.Header().Get("Set-Cookie"), "op-good") {
		t.Errorf("the cookie carries the token: %s", rec.Header().Get("Set-Cookie"))
	}

	// Over TLS the cookie is Secure; a Referer stands in for a missing Origin.
	rec = postLogin(h, "https://example.com/login", "op-good", "", map[string]string{"Referer": "https://example.com/login"})
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/" {
		t.Errorf("login over TLS = %d to %q", rec.Code, rec.Header().Get("Location"))
	} else if c := rec.Result().Cookies()[0]; !c.Secure {
		t.Errorf("cookie over TLS not Secure: %+v", c)
	}
	// Behind a TLS proxy, IsHTTPS decides.
	behind := newTestHandler(t, func() Options {
		o := ss.options()
		o.IsHTTPS = func(r *http.Request) bool { return r.Header.Get("X-Test-Https") == "yes" }
		return o
	}())
	rec = postLogin(behind, "/login", "op-good", "", map[string]string{"Origin": "http://example.com", "X-Test-Https": "yes"})
	if cs := rec.Result().Cookies(); rec.Code != http.StatusSeeOther || len(cs) != 1 || !cs[0].Secure {
		t.Errorf("login behind a TLS proxy = %d, cookies %+v; want a Secure cookie", rec.Code, cs)
	}

	for _, tc := range []struct {
		name, token, next string
		hdr               map[string]string
		code              int
		location          string
	}{
		{name: "wrong token", token: "op-bad", hdr: same, code: http.StatusUnauthorized},
		{name: "not a token", token: "two words", hdr: same, code: http.StatusBadRequest},
		{name: "empty", token: "", hdr: same, code: http.StatusBadRequest},
		{name: "no origin", token: "op-good", code: http.StatusForbidden},
		{name: "other origin", token: "op-good", hdr: map[string]string{"Origin": "http://evil.example"}, code: http.StatusForbidden},
		{name: "null origin", token: "op-good", hdr: map[string]string{"Origin": "null"}, code: http.StatusForbidden},
		{name: "other referer", token: "op-good", hdr: map[string]string{"Referer": "http://evil.example/x"}, code: http.StatusForbidden},
		{name: "next elsewhere", token: "op-good", next: "//evil.example/", hdr: same, code: http.StatusSeeOther, location: "/"},
		{name: "next absolute", token: "op-good", next: "http://evil.example/", hdr: same, code: http.StatusSeeOther, location: "/"},
	} {
		rec := postLogin(h, "/login", tc.token, tc.next, tc.hdr)
		if rec.Code != tc.code {
			t.Errorf("%s: login = %d, want %d\n%s", tc.name, rec.Code, tc.code, rec.Body.String())
			continue
		}
		if tc.location != "" && rec.Header().Get("Location") != tc.location {
			t.Errorf("%s: redirect to %q, want %q", tc.name, rec.Header().Get("Location"), tc.location)
		}
		if tc.code != http.StatusSeeOther && len(rec.Result().Cookies()) != 0 {
			t.Errorf("%s: a refused login set a cookie", tc.name)
		}
	}

	// Logout ends the session and forgets the cookie, and only from this
	// site; the old cookie then opens nothing.
	logout := func(origin bool) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "/logout", nil)
		if origin {
			req.Header.Set("Origin", "http://example.com")
		}
		req.AddCookie(&http.Cookie{Name: CookieName, Value: "sess-1"})
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	if rec := logout(false); rec.Code != http.StatusForbidden {
		t.Errorf("logout without an origin = %d, want 403", rec.Code)
	}
	ss.failEnd = errors.New("store down")
	if rec := logout(true); rec.Code != http.StatusInternalServerError || len(rec.Result().Cookies()) != 0 {
		t.Errorf("logout whose session cannot be ended = %d, cookies %+v; want 500 and the cookie kept, to try again", rec.Code, rec.Result().Cookies())
	}
	ss.failEnd = nil
	rec = logout(true)
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/login" {
		t.Errorf("logout = %d to %q", rec.Code, rec.Header().Get("Location"))
	}
	if cs := rec.Result().Cookies(); len(cs) != 1 || cs[0].Name != CookieName || cs[0].MaxAge >= 0 || cs[0].Value != "" {
		t.Errorf("logout cookies = %+v", cs)
	}
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.AddCookie(&http.Cookie{Name: CookieName, Value: "sess-1"})
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusSeeOther {
		t.Errorf("GET / with the signed-out cookie = %d, want 303 to /login", rec.Code)
	}
}

func TestNoLoginForm(t *testing.T) {
	open := newTestHandler(t, Options{})
	if code, body := get(t, open, "/login"); code != http.StatusOK || !strings.Contains(body, "without authentication") {
		t.Errorf("GET /login on an open page = %d\n%s", code, body)
	}
	if rec := postLogin(open, "/login", "x", "", map[string]string{"Origin": "http://example.com"}); rec.Code != http.StatusNotFound {
		t.Errorf("POST /login without a login form = %d, want 404", rec.Code)
	}
}

func TestRelTime(t *testing.T) {
	now := testNow
	for _, tc := range []struct {
		t    time.Time
		want string
	}{
		{time.Time{}, "never"},
		{now, "just now"},
		{now.Add(-12 * time.Second), "12 s ago"},
		{now.Add(-3*time.Minute - 5*time.Second), "3 min ago"},
		{now.Add(-5 * time.Hour), "5 h ago"},
		{now.Add(-72 * time.Hour), "3 d ago"},
		{now.Add(5 * time.Second), "in 5 s"},
	} {
		if got := relTime(now, tc.t); got != tc.want {
			t.Errorf("relTime(%v) = %q, want %q", now.Sub(tc.t), got, tc.want)
		}
	}
}

func TestCompareVersions(t *testing.T) {
	got := []string{"27.10.0", "27.3.1", "", "1.7.22", "27.3.1-rc1", "27.9.0"}
	slices.SortFunc(got, compareVersions)
	want := []string{"", "1.7.22", "27.3.1", "27.3.1-rc1", "27.9.0", "27.10.0"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestGolden holds the host page's whole HTML to testdata/host.golden.html
// (go test -run TestGolden -update rewrites it).
func TestGolden(t *testing.T) {
	h := newTestHandler(t, Options{})
	checkGolden(t, h, "/hosts/h-prod-3", "host.golden.html")
	checkGolden(t, h, "/?sort=state", "fleet.golden.html")
}

// checkGolden compares the page at target with testdata/file, or rewrites
// the file with -update.
func checkGolden(t *testing.T, h http.Handler, target, file string) {
	t.Helper()
	code, body := get(t, h, target)
	if code != http.StatusOK {
		t.Fatalf("GET %s = %d", target, code)
	}
	path := filepath.Join("testdata", file)
	if *update {
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update)", err, t.Name())
	}
	if diff := cmp.Diff(string(want), body); diff != "" {
		t.Errorf("GET %s differs from %s (-want +got):\n%s", target, path, diff)
	}
}

// The real store is what the page reads.
var _ Reader = (*store.Store)(nil)
