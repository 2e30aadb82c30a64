package auth_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/berthhq/berth/control/auth"
	"github.com/berthhq/berth/control/store"
	"github.com/berthhq/berth/internal/testenv/entra"
)

const audience = "api://berth-control"

// ignoreTimes leaves a principal's Issued and Expires, which come from the
// minted token's clock, out of comparisons.
var ignoreTimes = cmpopts.IgnoreFields(auth.Principal{}, "Issued", "Expires")

// clock is the authenticator's clock in tests; it starts at the real time
// because the fake Entra mints tokens with the real time.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// logBuffer collects an authenticator's logs so tests can check that no
// token reaches them.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// fakeStore is a TokenLookup over a map.
type fakeStore struct {
	mu    sync.Mutex
	toks  map[string]store.Token
	errs  map[string]error
	fail  error
	calls int
}

func (s *fakeStore) LookupToken(_ context.Context, secret string) (store.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.fail != nil {
		return store.Token{}, s.fail
	}
	if err, ok := s.errs[secret]; ok {
		return store.Token{}, err
	}
	if t, ok := s.toks[secret]; ok {
		return t, nil
	}
	return store.Token{}, store.ErrNotFound
}

func (s *fakeStore) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

func (s *fakeStore) set(f func(s *fakeStore)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

const (
	agentSecret    = "berth_agentsecret0123456789abcdef"
	operatorSecret = "berth_operatorsecret0123456789abc"
	revokedSecret  = "berth_revokedsecret0123456789abcd"
)

func newFakeStore() *fakeStore {
	return &fakeStore{
		toks: map[string]store.Token{
			agentSecret:    {ID: "tok1", Role: store.RoleAgent, Subject: "host-1"},
			operatorSecret: {ID: "tok2", Role: store.RoleOperator, Subject: "alice"},
		},
		errs: map[string]error{revokedSecret: fmt.Errorf("lookup: %w", store.ErrRevoked)},
	}
}

// env is one authenticator with everything it talks to.
type env struct {
	a     *auth.Authenticator
	entra *entra.Server
	store *fakeStore
	clock *clock
	logs  *logBuffer
}

func newEnv(t testing.TB, methods []auth.Method, mod func(*auth.Options)) *env {
	t.Helper()
	e := &env{
		entra: entra.Start(t, entra.Options{}),
		store: newFakeStore(),
		clock: newClock(),
		logs:  &logBuffer{},
	}
	o := auth.Options{
		Methods: methods,
		Entra:   &auth.Entra{Tenant: e.entra.Tenant, Audience: audience, Authority: e.entra.URL},
		Tokens:  e.store,
		Logger:  e.logs.logger(),
		Now:     e.clock.Now,
	}
	if mod != nil {
		mod(&o)
	}
	a, err := auth.New(context.Background(), o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e.a = a
	return e
}

// claimsNow are valid claims for the fake clock's time.
func (e *env) claimsNow() map[string]any {
	now := e.clock.Now()
	c := e.entra.Claims(audience, e.entra.Identity)
	c["iat"], c["nbf"], c["exp"] = now.Unix(), now.Unix(), now.Add(time.Hour).Unix()
	return c
}

func (e *env) auth(t *testing.T, token string) (auth.Principal, error) {
	t.Helper()
	p, err := e.a.Authenticate(context.Background(), "Bearer "+token)
	if err != nil {
		if !errors.Is(err, auth.ErrUnauthenticated) {
			t.Errorf("error %v does not wrap ErrUnauthenticated", err)
		}
		if len(token) >= 8 && strings.Contains(err.Error(), token) {
			t.Errorf("error repeats the token: %v", err)
		}
	}
	return p, err
}

// checkErr compares an error with the substring wanted ("" for none).
func checkErr(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case want != "" && err == nil:
		t.Fatalf("no error, want one with %q", want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Fatalf("error %q does not say %q", err, want)
	}
}

func TestParseMethods(t *testing.T) {
	for _, tt := range []struct {
		in      string
		want    []auth.Method
		wantErr string
	}{
		{"entra,token", []auth.Method{auth.MethodEntra, auth.MethodToken}, ""},
		{"token, entra", []auth.Method{auth.MethodToken, auth.MethodEntra}, ""},
		{"token", []auth.Method{auth.MethodToken}, ""},
		{"entra", []auth.Method{auth.MethodEntra}, ""},
		{"none", []auth.Method{auth.MethodNone}, ""},
		{"NONE", []auth.Method{auth.MethodNone}, ""},
		{"", nil, "--auth is empty"},
		{"  ", nil, "--auth is empty"},
		{"none,token", nil, "cannot be combined"},
		{"entra,none", nil, "cannot be combined"},
		{"token,token", nil, "given twice"},
		{"entra,", nil, "empty method"},
		{"basic", nil, `unknown method "basic"`},
	} {
		t.Run(tt.in, func(t *testing.T) {
			got, err := auth.ParseMethods(tt.in)
			checkErr(t, err, tt.wantErr)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("methods (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNewOptions(t *testing.T) {
	const tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	good := auth.Entra{Tenant: tenant, Audience: audience, Authority: "http://127.0.0.1:1"}
	with := func(f func(*auth.Entra)) *auth.Entra { e := good; f(&e); return &e }
	ts := newFakeStore()
	for _, tt := range []struct {
		name    string
		o       auth.Options
		wantErr string
	}{
		{"no methods", auth.Options{}, "set --auth"},
		{"entra without settings", auth.Options{Methods: []auth.Method{auth.MethodEntra}}, "--entra-tenant and --entra-audience"},
		{"no tenant", auth.Options{Methods: []auth.Method{auth.MethodEntra}, Entra: with(func(e *auth.Entra) { e.Tenant = "" })}, "--entra-tenant"},
		{"tenant domain", auth.Options{Methods: []auth.Method{auth.MethodEntra}, Entra: with(func(e *auth.Entra) { e.Tenant = "contoso.onmicrosoft.com" })}, "not a tenant id"},
		{"no audience", auth.Options{Methods: []auth.Method{auth.MethodEntra}, Entra: with(func(e *auth.Entra) { e.Audience = " , " })}, "--entra-audience"},
		{"http authority", auth.Options{Methods: []auth.Method{auth.MethodEntra}, Entra: with(func(e *auth.Entra) { e.Authority = "http://login.example.com" })}, "--entra-authority"},
		{"token without store", auth.Options{Methods: []auth.Method{auth.MethodToken}}, "--auth token needs"},
		{"none combined", auth.Options{Methods: []auth.Method{auth.MethodNone, auth.MethodToken}, Tokens: ts}, "cannot be combined"},
		{"twice", auth.Options{Methods: []auth.Method{auth.MethodToken, auth.MethodToken}, Tokens: ts}, "given twice"},
		{"unknown", auth.Options{Methods: []auth.Method{"basic"}}, "unknown method"},
		{"token", auth.Options{Methods: []auth.Method{auth.MethodToken}, Tokens: ts}, ""},
		{"uppercase tenant, default role", auth.Options{Methods: []auth.Method{auth.MethodEntra}, Entra: with(func(e *auth.Entra) { e.Tenant = strings.ToUpper(tenant) })}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := auth.New(ctx, tt.o)
			checkErr(t, err, tt.wantErr)
		})
	}
}

func TestEntraTokens(t *testing.T) {
	e := newEnv(t, []auth.Method{auth.MethodEntra, auth.MethodToken}, func(o *auth.Options) {
		o.Entra.Audience = audience + ", 11111111-2222-3333-4444-555555555555"
	})
	fe := e.entra
	oid := "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
	now := time.Now()
	with := func(base func(string, string) map[string]any, f func(c map[string]any)) string {
		c := base(audience, oid)
		f(c)
		return fe.Mint(c)
	}
	v1 := func(a, o string) map[string]any { return fe.Claims(a, o) }
	v2 := func(a, o string) map[string]any { return fe.ClaimsV2(a, o) }
	same := func(map[string]any) {}
	agent := auth.Principal{Role: store.RoleAgent, Subject: oid, Method: auth.MethodEntra}
	operator := auth.Principal{Role: store.RoleOperator, Subject: oid, Method: auth.MethodEntra}
	for _, tt := range []struct {
		name    string
		token   string
		want    auth.Principal
		wantErr string
	}{
		{"v1", with(v1, same), agent, ""},
		{"v2", with(v2, same), agent, ""},
		{"v2 client id audience", with(v2, func(c map[string]any) { c["aud"] = "11111111-2222-3333-4444-555555555555" }), agent, ""},
		{"audience array", with(v1, func(c map[string]any) { c["aud"] = []string{"x", audience} }), agent, ""},
		{"operator role", with(v1, func(c map[string]any) { c["roles"] = []string{"Other", auth.DefaultOperatorRole} }), operator, ""},
		{"other role", with(v1, func(c map[string]any) { c["roles"] = []string{"Berth.operator"} }), agent, ""},
		{"expired within leeway", with(v1, func(c map[string]any) { c["exp"] = now.Add(-time.Minute).Unix() }), agent, ""},
		{"expired", with(v1, func(c map[string]any) { c["exp"] = now.Add(-3 * time.Minute).Unix() }), auth.Principal{}, "token expired at " + now.Add(-3*time.Minute).UTC().Format(time.RFC3339)},
		{"no exp", with(v1, func(c map[string]any) { delete(c, "exp") }), auth.Principal{}, "no expiry"},
		{"not yet valid within leeway", with(v1, func(c map[string]any) { c["nbf"] = now.Add(time.Minute).Unix() }), agent, ""},
		{"not yet valid", with(v1, func(c map[string]any) { c["nbf"] = now.Add(3 * time.Minute).Unix() }), auth.Principal{}, "not valid before"},
		{"wrong audience", with(v1, func(c map[string]any) { c["aud"] = "berth-control" }), auth.Principal{}, `audience ["berth-control"] is not api://berth-control or 11111111`},
		{"no audience", with(v1, func(c map[string]any) { delete(c, "aud") }), auth.Principal{}, "audience [] is not"},
		{"wrong issuer", with(v1, func(c map[string]any) { c["iss"] = "https://sts.windows.net/00000000-0000-0000-0000-000000000000/" }), auth.Principal{}, "issuer \"https://sts.windows.net/00000000"},
		{"v2 issuer of public cloud", with(v1, func(c map[string]any) {
			c["iss"] = "https://login.microsoftonline.com/" + fe.Tenant + "/v2.0"
		}), auth.Principal{}, "is not this tenant's"},
		{"wrong tenant", with(v1, func(c map[string]any) { c["tid"] = "00000000-0000-0000-0000-000000000000" }), auth.Principal{}, "tenant (tid)"},
		{"missing oid", with(v1, func(c map[string]any) { delete(c, "oid") }), auth.Principal{}, "no object id (oid)"},
		{"oid not a string", with(v1, func(c map[string]any) { c["oid"] = 7 }), auth.Principal{}, "malformed JWT"},
		{"alg none", fe.MintNone(fe.Claims(audience, oid)), auth.Principal{}, "unsigned token (alg \"none\") refused"},
		{"HS256 key confusion", fe.MintHS256(fe.Claims(audience, oid)), auth.Principal{}, "HMAC-signed token (alg \"HS256\") refused"},
		{"RS384", mintAlg(t, fe, "RS384"), auth.Principal{}, "alg \"RS384\" refused"},
		{"lowercase rs256", mintAlg(t, fe, "rs256"), auth.Principal{}, "alg \"rs256\" refused"},
		{"no kid", mintHeader(t, fe, func(h map[string]any) { delete(h, "kid") }), auth.Principal{}, "no signing key (kid)"},
		{"crit header", mintHeader(t, fe, func(h map[string]any) { h["crit"] = []string{"b64"} }), auth.Principal{}, "crit"},
		{"tampered", tamper(fe.Mint(fe.Claims(audience, oid)), fe.Claims(audience, "ffffffff-bbbb-cccc-dddd-eeeeeeeeeeee")), auth.Principal{}, "signature does not verify"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := e.auth(t, tt.token)
			checkErr(t, err, tt.wantErr)
			if diff := cmp.Diff(tt.want, got, ignoreTimes); diff != "" {
				t.Errorf("principal (-want +got):\n%s", diff)
			}
			if err == nil && (got.Issued.IsZero() || got.Expires.IsZero()) {
				t.Errorf("issued %v, expires %v: want the token's iat and exp", got.Issued, got.Expires)
			}
		})
	}
	if n := fe.JWKSRequests(); n != 1 {
		t.Errorf("JWKS fetched %d times, want once (at New)", n)
	}
}

// TestHostileTokens runs the fake's own list of forgeries, which the
// team's end-to-end tests use too.
func TestHostileTokens(t *testing.T) {
	e := newEnv(t, []auth.Method{auth.MethodEntra}, nil)
	valid := e.entra.Mint(e.entra.Claims(audience, e.entra.Identity))
	if _, err := e.auth(t, valid); err != nil {
		t.Fatalf("valid token refused: %v", err)
	}
	for _, h := range e.entra.HostileTokens(t, audience, e.entra.Identity) {
		t.Run(h.Name, func(t *testing.T) {
			if p, err := e.auth(t, h.Token); err == nil {
				t.Fatalf("accepted as %+v", p)
			}
		})
	}
	checkNoSecrets(t, e.logs.String(), valid)
}

func checkNoSecrets(t *testing.T, logs string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		probe := s
		if i := strings.LastIndex(s, "."); i >= 0 {
			probe = s[i+1:] // a JWT's signature
		}
		if probe != "" && strings.Contains(logs, probe) {
			t.Errorf("a token reached the logs:\n%s", logs)
		}
	}
}

func TestUnknownKidRateLimit(t *testing.T) {
	e := newEnv(t, []auth.Method{auth.MethodEntra}, nil)
	fe := e.entra
	claims := fe.Claims(audience, fe.Identity)
	bogus := func(kid string) string { return fe.MintUnknownKey(t, claims, kid) }
	steps := []struct {
		name      string
		advance   time.Duration
		token     string
		wantFetch int // JWKS requests so far
		wantErr   string
	}{
		{"start", 0, fe.Mint(claims), 1, ""},
		{"unknown kid refreshes", auth.KeyRefreshFloor, bogus("bogus-1"), 2, "unknown signing key \"bogus-1\""},
		{"same kid again: no refresh", 0, bogus("bogus-1"), 2, "unknown signing key"},
		{"other kid within the floor: no refresh", time.Second, bogus("bogus-2"), 2, "unknown signing key"},
		{"same kid after the floor: no refresh", auth.KeyRefreshFloor, bogus("bogus-1"), 2, "unknown signing key"},
		{"other kid after the floor: refresh", 0, bogus("bogus-2"), 3, "unknown signing key"},
		{"known kid: no refresh", 0, fe.Mint(claims), 3, ""},
		{"first kid after its limit: refresh", auth.KeyRefreshPerKid, bogus("bogus-1"), 4, "unknown signing key"},
	}
	for _, s := range steps {
		e.clock.Add(s.advance)
		_, err := e.auth(t, s.token)
		if err != nil && s.wantErr == "" || err == nil && s.wantErr != "" || err != nil && !strings.Contains(err.Error(), s.wantErr) {
			t.Errorf("%s: error %v, want %q", s.name, err, s.wantErr)
		}
		if got := fe.JWKSRequests(); got != s.wantFetch {
			t.Errorf("%s: %d JWKS requests, want %d", s.name, got, s.wantFetch)
		}
	}
	// A burst of distinct bogus kids costs at most one fetch.
	e.clock.Add(auth.KeyRefreshFloor)
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() { _, _ = e.auth(t, bogus(fmt.Sprintf("burst-%d", i))) })
	}
	wg.Wait()
	if got := fe.JWKSRequests(); got != 5 {
		t.Errorf("burst: %d JWKS requests, want 5", got)
	}
}

func TestKeyRotation(t *testing.T) {
	e := newEnv(t, []auth.Method{auth.MethodEntra}, nil)
	fe := e.entra
	claims := fe.Claims(audience, fe.Identity)
	old := fe.Mint(claims)
	fe.Rotate(t)
	rotated := fe.Mint(claims)
	e.clock.Add(auth.KeyRefreshFloor)
	for _, tok := range []string{rotated, old, rotated} {
		if _, err := e.auth(t, tok); err != nil {
			t.Fatalf("after rotation: %v", err)
		}
	}
	if got := fe.JWKSRequests(); got != 2 {
		t.Errorf("%d JWKS requests, want 2 (start, new kid)", got)
	}
	// Keys are fetched again once a day even when every kid is known.
	e.clock.Add(auth.KeyMaxAge)
	if _, err := e.auth(t, fe.Mint(e.claimsNow())); err != nil {
		t.Fatal(err)
	}
	if got := fe.JWKSRequests(); got != 3 {
		t.Errorf("%d JWKS requests, want 3 (daily refresh)", got)
	}
	if got := fe.DiscoveryRequests(); got != 1 {
		t.Errorf("%d discovery requests, want 1", got)
	}
}

// TestIdPDown: New does not need Entra ID; the keys come once it answers.
func TestIdPDown(t *testing.T) {
	fe := entra.Start(t, entra.Options{})
	fe.SetDown(true)
	clk := newClock()
	logs := &logBuffer{}
	a, err := auth.New(context.Background(), auth.Options{
		Methods: []auth.Method{auth.MethodEntra},
		Entra:   &auth.Entra{Tenant: fe.Tenant, Audience: audience, Authority: fe.URL},
		Logger:  logs.logger(),
		Now:     clk.Now,
	})
	if err != nil {
		t.Fatalf("New with Entra down: %v", err)
	}
	if !strings.Contains(logs.String(), "signing keys not available yet") {
		t.Errorf("no warning logged:\n%s", logs)
	}
	tok := "Bearer " + fe.Mint(fe.Claims(audience, fe.Identity))
	ctx := context.Background()
	if _, err := a.Authenticate(ctx, tok); !errors.Is(err, auth.ErrUnavailable) || !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("Entra down: %v, want ErrUnavailable and ErrUnauthenticated", err)
	}
	fe.SetDown(false)
	if _, err := a.Authenticate(ctx, tok); !errors.Is(err, auth.ErrUnavailable) {
		t.Fatalf("within the floor: %v, want ErrUnavailable", err)
	}
	clk.Add(auth.KeyRefreshFloor)
	if _, err := a.Authenticate(ctx, tok); err != nil {
		t.Fatalf("Entra back: %v", err)
	}
}

func TestHeaders(t *testing.T) {
	e := newEnv(t, []auth.Method{auth.MethodEntra, auth.MethodToken}, nil)
	huge := "Bearer " + strings.Repeat("a", 64<<10)
	for _, tt := range []struct {
		name, header, wantErr string
	}{
		{"empty", "", "missing Authorization header"},
		{"Bearer alone", "Bearer", "carries no token"},
		{"Bearer space", "Bearer   ", "carries no token"},
		{"Basic", "Basic dXNlcjpwYXNz", "not a Bearer token"},
		{"raw token", agentSecret, "not a Bearer token"},
		{"three dots", "Bearer ...", "neither an issued berth_ token nor a JWT"},
		{"two dots empty", "Bearer ..", "malformed JWT"},
		{"four parts", "Bearer a.b.c.d", "neither"},
		{"opaque", "Bearer 0123456789abcdef", "neither"},
		{"garbage JWT", "Bearer eyJhbGciOi.eyJ.sig", "malformed JWT"},
		{"header not JSON", "Bearer YWJj.e30.c2ln", "header is not a JSON object"},
		{"tab inside", "Bearer a.b\t.c", "character at offset 3"},
		{"trailing space", "Bearer " + agentSecret + " ", "character at offset"},
		{"non-ASCII", "Bearer a.b.cé", "character at offset"},
		{"huge", huge, "bytes, more than the 16384 allowed"},
		{"long issued", "Bearer berth_" + strings.Repeat("x", 300), "longer than any"},
		{"lowercase scheme", "bearer " + agentSecret, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			_, err := e.a.Authenticate(context.Background(), tt.header)
			checkErr(t, err, tt.wantErr)
			if err != nil && !errors.Is(err, auth.ErrUnauthenticated) {
				t.Errorf("%v does not wrap ErrUnauthenticated", err)
			}
			if tok := strings.TrimPrefix(tt.header, "Bearer "); err != nil && len(tok) >= 8 && strings.Contains(err.Error(), tok) {
				t.Errorf("error repeats the token: %.200v", err)
			}
			if d := time.Since(start); tt.name == "huge" && d > 50*time.Millisecond {
				t.Errorf("huge header took %v", d)
			}
		})
	}
	if n := e.store.Calls(); n != 1 {
		t.Errorf("%d store lookups, want 1 (the lowercase scheme)", n)
	}
}

func TestIssuedTokens(t *testing.T) {
	e := newEnv(t, []auth.Method{auth.MethodToken}, nil)
	revokedAt := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	e.store.set(func(s *fakeStore) {
		s.toks["berth_revokedfield"] = store.Token{ID: "tok3", Role: store.RoleAgent, Subject: "host-3", Revoked: &revokedAt}
		s.toks["berth_badrole"] = store.Token{ID: "tok4", Role: "admin", Subject: "x"}
		s.toks["berth_nosubject"] = store.Token{ID: "tok5", Role: store.RoleAgent}
	})
	jwt := e.entra.Mint(e.entra.Claims(audience, e.entra.Identity))
	for _, tt := range []struct {
		name, token string
		want        auth.Principal
		wantErr     string
	}{
		{"agent", agentSecret, auth.Principal{Role: store.RoleAgent, Subject: "host-1", Agent: "host-1", Method: auth.MethodToken, TokenID: "tok1"}, ""},
		{"operator", operatorSecret, auth.Principal{Role: store.RoleOperator, Subject: "alice", Method: auth.MethodToken, TokenID: "tok2"}, ""},
		{"unknown", "berth_nosuchtoken0123456789", auth.Principal{}, "unknown issued token"},
		{"revoked", revokedSecret, auth.Principal{}, "issued token was revoked"},
		{"revoked field", "berth_revokedfield", auth.Principal{}, "revoked at 2026-01-02T03:04:05Z"},
		{"unknown role", "berth_badrole", auth.Principal{}, `unknown role "admin"`},
		{"no subject", "berth_nosubject", auth.Principal{}, "no subject"},
		{"entra off", jwt, auth.Principal{}, "without --auth entra"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := e.auth(t, tt.token)
			checkErr(t, err, tt.wantErr)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("principal (-want +got):\n%s", diff)
			}
		})
	}
	checkNoSecrets(t, e.logs.String(), agentSecret, operatorSecret, revokedSecret)

	entraOnly := newEnv(t, []auth.Method{auth.MethodEntra}, nil)
	_, err := entraOnly.auth(t, agentSecret)
	checkErr(t, err, "without --auth token")
}

func TestIssuedTokenCache(t *testing.T) {
	e := newEnv(t, []auth.Method{auth.MethodToken}, nil)
	lookups := func(want int) {
		t.Helper()
		if got := e.store.Calls(); got != want {
			t.Fatalf("%d lookups, want %d", got, want)
		}
	}
	ok := func() {
		t.Helper()
		if _, err := e.auth(t, agentSecret); err != nil {
			t.Fatal(err)
		}
	}
	ok()
	ok()
	lookups(1)
	// Revoked in the store: still accepted until the cache entry expires.
	e.store.set(func(s *fakeStore) { s.errs[agentSecret] = store.ErrRevoked })
	e.clock.Add(auth.TokenCacheTTL - time.Second)
	ok()
	lookups(1)
	e.clock.Add(time.Second)
	_, err := e.auth(t, agentSecret)
	checkErr(t, err, "revoked")
	lookups(2)
	// Failures are remembered briefly only.
	_, _ = e.auth(t, agentSecret)
	lookups(2)
	e.clock.Add(auth.TokenNegativeTTL)
	e.store.set(func(s *fakeStore) { delete(s.errs, agentSecret) })
	ok()
	lookups(3)
	// A store failure is not cached and says the store is unavailable.
	e.store.set(func(s *fakeStore) { s.fail = errors.New("database is locked") })
	for range 2 {
		_, err = e.auth(t, operatorSecret)
		if !errors.Is(err, auth.ErrUnavailable) || !errors.Is(err, auth.ErrUnauthenticated) {
			t.Fatalf("store down: %v, want ErrUnavailable and ErrUnauthenticated", err)
		}
	}
	lookups(5)
	e.store.set(func(s *fakeStore) { s.fail = nil })
	if _, err := e.auth(t, operatorSecret); err != nil {
		t.Fatal(err)
	}
}

func TestNone(t *testing.T) {
	logs := &logBuffer{}
	a, err := auth.New(context.Background(), auth.Options{Methods: []auth.Method{auth.MethodNone}, Logger: logs.logger()})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "AUTHENTICATION IS OFF") {
		t.Errorf("no loud warning:\n%s", logs)
	}
	want := auth.Principal{Role: store.RoleOperator, Subject: "anonymous", Method: auth.MethodNone}
	for _, h := range []string{"", "Basic x", "Bearer " + agentSecret, "Bearer a.b.c"} {
		got, err := a.Authenticate(context.Background(), h)
		if err != nil {
			t.Fatalf("%q: %v", h, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%q (-want +got):\n%s", h, diff)
		}
	}
}

// TestEntraCacheExpiry: a verified token is remembered, but never past its
// expiry.
func TestEntraCacheExpiry(t *testing.T) {
	e := newEnv(t, []auth.Method{auth.MethodEntra}, nil)
	c := e.claimsNow()
	c["exp"] = e.clock.Now().Add(10 * time.Second).Unix()
	tok := e.entra.Mint(c)
	for range 2 {
		if _, err := e.auth(t, tok); err != nil {
			t.Fatal(err)
		}
	}
	e.clock.Add(10*time.Second + auth.Leeway)
	_, err := e.auth(t, tok)
	checkErr(t, err, "token expired at")
}
