package upstream

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/google/go-cmp/cmp"

	"github.com/berthhq/berth/imagecache/cas"
)

// fakeEntra is a TokenSource standing in for the managed identity.
type fakeEntra struct {
	mu     sync.Mutex
	scopes [][]string
	err    error
}

const entraToken = "entra.managed-identity.token"

func (f *fakeEntra) GetToken(_ context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.scopes = append(f.scopes, o.Scopes)
	if f.err != nil {
		return azcore.AccessToken{}, f.err
	}
	return azcore.AccessToken{Token: entraToken, ExpiresOn: time.Now().Add(time.Hour)}, nil
}

func (f *fakeEntra) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.scopes)
}

// fakeJWT makes an unsigned JWT with an exp claim and a marker.
func fakeJWT(marker string, exp time.Time) string {
	enc := base64.RawURLEncoding.EncodeToString
	payload, _ := json.Marshal(map[string]any{"exp": exp.Unix(), "m": marker})
	return enc([]byte(`{"alg":"RS256","typ":"JWT"}`)) + "." + enc(payload) + ".c2ln"
}

// fakeACR imitates Azure Container Registry's auth: /v2/ wants a bearer
// access token, which comes from /oauth2/token for a refresh token, which
// comes from /oauth2/exchange for an Entra token. Blob GETs redirect to a
// storage server on another host.
type fakeACR struct {
	t       *testing.T
	srv     *httptest.Server
	storage *httptest.Server
	realm   string // overrides the challenge's realm

	mu             sync.Mutex
	exchanges      int
	tokenCalls     []string // scopes
	revokeNext     bool     // refuse the next refresh token once
	refreshIssued  []string
	storageAuthz   []string
	registryAuthzs []string
}

func startFakeACR(t *testing.T) *fakeACR {
	allowLoopbackRedirects(t) // the storage is another loopback server
	a := &fakeACR{t: t}
	a.storage = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.storageAuthz = append(a.storageAuthz, r.Header.Get("Authorization"))
		a.mu.Unlock()
		w.Write([]byte("layer"))
	}))
	t.Cleanup(a.storage.Close)
	a.srv = httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *fakeACR) host() string { u, _ := url.Parse(a.srv.URL); return u.Host }

func (a *fakeACR) fail(w http.ResponseWriter, status int, format string, args ...any) {
	a.t.Errorf("fake acr: "+format, args...)
	w.WriteHeader(status)
}

func (a *fakeACR) serve(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch r.URL.Path {
	case "/oauth2/exchange":
		if r.Method != http.MethodPost {
			a.fail(w, 405, "exchange with %s", r.Method)
			return
		}
		_ = r.ParseForm()
		want := url.Values{"grant_type": {"access_token"}, "service": {a.host()}, "access_token": {entraToken}}
		if diff := cmp.Diff(want, r.PostForm); diff != "" {
			a.fail(w, 400, "exchange form (-want +got):\n%s", diff)
			return
		}
		a.exchanges++
		rt := fakeJWT(fmt.Sprintf("refresh-%d", a.exchanges), time.Now().Add(3*time.Hour))
		a.refreshIssued = append(a.refreshIssued, rt)
		json.NewEncoder(w).Encode(map[string]string{"refresh_token": rt})
	case "/oauth2/token":
		_ = r.ParseForm()
		f := r.PostForm
		if r.Method != http.MethodPost || f.Get("grant_type") != "refresh_token" || f.Get("service") != a.host() || len(f["scope"]) != 1 {
			a.fail(w, 400, "token request %s %v", r.Method, f)
			return
		}
		if len(a.refreshIssued) == 0 || f.Get("refresh_token") != a.refreshIssued[len(a.refreshIssued)-1] || a.revokeNext {
			a.revokeNext = false
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"errors":[{"code":"UNAUTHORIZED","message":"refresh token revoked"}]}`))
			return
		}
		a.tokenCalls = append(a.tokenCalls, f.Get("scope"))
		at := fakeJWT("access:"+f.Get("scope"), time.Now().Add(75*time.Minute))
		json.NewEncoder(w).Encode(map[string]string{"access_token": at})
	default:
		a.registryAuthzs = append(a.registryAuthzs, r.Header.Get("Authorization"))
		repo, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/v2/"), "/manifests/")
		repo, _, _ = strings.Cut(repo, "/blobs/")
		scope := "repository:" + repo + ":pull"
		if !a.validAccess(r.Header.Get("Authorization"), scope) {
			realm := a.realm
			if realm == "" {
				realm = a.srv.URL + "/oauth2/token"
			}
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="%s",service="%s",scope="%s"`, realm, a.host(), scope))
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if strings.Contains(r.URL.Path, "/blobs/") {
			http.Redirect(w, r, a.storage.URL+"/blob?se=2026&sig=abc", http.StatusTemporaryRedirect)
			return
		}
		w.Header().Set("Content-Type", MediaTypeOCIManifest)
		w.Write([]byte(manifestJSON))
	}
}

// validAccess checks a bearer access token was issued for scope.
func (a *fakeACR) validAccess(authz, scope string) bool {
	tok, ok := strings.CutPrefix(authz, "Bearer ")
	if !ok {
		return false
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return false
	}
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var c struct{ M string }
	return json.Unmarshal(payload, &c) == nil && c.M == "access:"+scope
}

func acrClient(t *testing.T, a *fakeACR, entra *fakeEntra) (*Client, *logSink) {
	return newTestClient(t, "myregistry.azurecr.io", Config{Endpoint: a.srv.URL, Auth: "managed-identity"},
		func(o *Options) { o.TokenSource = entra })
}

func TestACRManagedIdentity(t *testing.T) {
	a := startFakeACR(t)
	entra := &fakeEntra{}
	c, logs := acrClient(t, a, entra)
	ctx := context.Background()

	for _, repo := range []string{"app/one", "app/one", "app/two"} {
		if _, _, _, err := c.GetManifest(ctx, repo, "v1", nil); err != nil {
			t.Fatalf("%s: %v", repo, err)
		}
	}
	rc, _, err := c.OpenBlob(ctx, "app/two", cas.FromBytes([]byte("layer")), 0)
	if err != nil {
		t.Fatal(err)
	}
	rc.Close()

	a.mu.Lock()
	defer a.mu.Unlock()
	if diff := cmp.Diff([][]string{{ACRScope}}, entra.scopes); diff != "" {
		t.Errorf("Entra scopes asked (-want +got):\n%s", diff)
	}
	if a.exchanges != 1 {
		t.Errorf("%d exchanges, want 1 (the refresh token is cached)", a.exchanges)
	}
	if diff := cmp.Diff([]string{"repository:app/one:pull", "repository:app/two:pull"}, a.tokenCalls); diff != "" {
		t.Errorf("access tokens asked (-want +got):\n%s", diff)
	}
	if len(a.storageAuthz) != 1 || a.storageAuthz[0] != "" {
		t.Errorf("storage saw Authorization %q", a.storageAuthz)
	}
	for _, secretish := range []string{entraToken, a.refreshIssued[0], "access:", "sig=abc"} {
		if strings.Contains(logs.String(), secretish) {
			t.Errorf("%q is in the logs:\n%s", secretish, logs.String())
		}
	}
}

func TestACRRevokedRefreshToken(t *testing.T) {
	a := startFakeACR(t)
	entra := &fakeEntra{}
	c, _ := acrClient(t, a, entra)
	ctx := context.Background()
	if _, _, _, err := c.GetManifest(ctx, "app", "v1", nil); err != nil {
		t.Fatal(err)
	}
	a.mu.Lock()
	a.revokeNext = true
	a.mu.Unlock()
	// A new scope needs a new access token; the refresh token is refused
	// once, so it is exchanged again.
	if _, _, _, err := c.GetManifest(ctx, "other", "v1", nil); err != nil {
		t.Fatal(err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.exchanges != 2 || entra.calls() != 2 {
		t.Errorf("%d exchanges and %d Entra tokens, want 2 and 2", a.exchanges, entra.calls())
	}
}

func TestACRRefusals(t *testing.T) {
	ctx := context.Background()
	t.Run("realm on another host", func(t *testing.T) {
		var elsewhere int
		other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { elsewhere++ }))
		defer other.Close()
		a := startFakeACR(t)
		a.realm = other.URL + "/oauth2/token"
		entra := &fakeEntra{}
		c, _ := acrClient(t, a, entra)
		_, _, _, err := c.GetManifest(ctx, "app", "v1", nil)
		assertClass(t, "foreign realm", err, ErrUnauthorized)
		if elsewhere != 0 || entra.calls() != 0 {
			t.Errorf("the other host got %d requests; %d Entra tokens asked", elsewhere, entra.calls())
		}
	})
	t.Run("no managed identity", func(t *testing.T) {
		a := startFakeACR(t)
		entra := &fakeEntra{err: errors.New("IMDS unreachable")}
		c, _ := acrClient(t, a, entra)
		_, _, _, err := c.GetManifest(ctx, "app", "v1", nil)
		assertClass(t, "entra failure", err, ErrUnauthorized)
		if !strings.Contains(err.Error(), "IMDS unreachable") {
			t.Errorf("the cause is lost: %v", err)
		}
	})
	t.Run("exchange refused", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/oauth2/exchange" {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="http://`+r.Host+`/oauth2/token",service="x"`)
			w.WriteHeader(http.StatusUnauthorized)
		}))
		defer srv.Close()
		c, _ := newTestClient(t, "x.azurecr.io", Config{Endpoint: srv.URL, Auth: "managed-identity"},
			func(o *Options) { o.TokenSource = &fakeEntra{} })
		_, _, _, err := c.GetManifest(ctx, "app", "v1", nil)
		assertClass(t, "exchange refused", err, ErrUnauthorized)
	})
	t.Run("garbage tokens", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/oauth2/exchange":
				w.Write([]byte(`{"refresh_token":"has space\r\nX-Injected: 1"}`))
			default:
				w.Header().Set("WWW-Authenticate", `Bearer realm="http://`+r.Host+`/oauth2/token",service="x"`)
				w.WriteHeader(http.StatusUnauthorized)
			}
		}))
		defer srv.Close()
		c, _ := newTestClient(t, "x.azurecr.io", Config{Endpoint: srv.URL, Auth: "managed-identity"},
			func(o *Options) { o.TokenSource = &fakeEntra{} })
		_, _, _, err := c.GetManifest(ctx, "app", "v1", nil)
		assertClass(t, "garbage refresh token", err, ErrUnauthorized)
	})
}

func TestJWTExpiry(t *testing.T) {
	exp := time.Unix(1_900_000_000, 0)
	if got, ok := jwtExpiry(fakeJWT("x", exp)); !ok || !got.Equal(exp) {
		t.Errorf("got %v %v", got, ok)
	}
	for _, bad := range []string{"", "a.b", "a.!!!.c", "a." + base64.RawURLEncoding.EncodeToString([]byte(`{"exp":"soon"}`)) + ".c",
		"a." + base64.RawURLEncoding.EncodeToString([]byte(`{"exp":-5}`)) + ".c"} {
		if _, ok := jwtExpiry(bad); ok {
			t.Errorf("%q gave an expiry", bad)
		}
	}
}
