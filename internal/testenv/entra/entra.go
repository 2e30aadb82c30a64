// Package entra is a fake Microsoft Entra ID for tests: an authority with
// discovery and JWKS, a managed identity endpoint, and minting of tokens of
// any shape (managed identity, app-only service principal, user), hostile
// ones included.
package entra

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/berthhq/berth/internal/testenv/secretlog"
)

// Options configure Start.
type Options struct {
	// Tenant is the directory id the tokens carry (tid, iss); a random
	// GUID when empty.
	Tenant string
	// Identity is the object id (oid) of the system-assigned managed
	// identity; a random GUID when empty.
	Identity string
	// ResourceID is the system-assigned identity's resource, the VM, as
	// its tokens carry it (xms_mirid); when empty, a VM in a random
	// subscription (Server.Subscription).
	ResourceID string
	// Roles are put in managed identity tokens' roles claim (for example
	// "Berth.Operator").
	Roles []string
	// TTL is the lifetime of the tokens the fake mints (exp); default an
	// hour.
	TTL time.Duration
}

// Server is a fake Microsoft Entra ID on a loopback port for one tenant:
//
//   - the authority: URL + "/{tenant}/v2.0/.well-known/openid-configuration"
//     and the JWKS it names, with RSA-2048 keys (Rotate adds one);
//   - an App Service style managed identity endpoint (IdentityEndpoint,
//     IdentityHeader) that azidentity's ManagedIdentityCredential uses
//     after UseFor, issuing v1 tokens (iss https://sts.windows.net/{tenant}/)
//     whose aud is the requested resource;
//   - Mint and the Mint* helpers for tokens of any shape, hostile ones
//     included.
//
// Point control/auth at it with auth.Entra{Tenant: e.Tenant, Authority: e.URL}.
type Server struct {
	// URL is the authority (no trailing slash).
	URL string
	// Tenant is the directory id, Identity the system-assigned identity's
	// object id.
	Tenant   string
	Identity string
	// ResourceID is the system-assigned identity's resource (xms_mirid),
	// Subscription a random subscription id the default resources live in.
	ResourceID   string
	Subscription string
	// IdentityEndpoint and IdentityHeader are the managed identity
	// endpoint's address and the secret header value it requires
	// (IDENTITY_ENDPOINT and IDENTITY_HEADER).
	IdentityEndpoint string
	IdentityHeader   string

	opts Options
	// guard fails the test when a log it registered holds a token issued
	// here or the identity header.
	guard *secretlog.Guard

	mu         sync.Mutex
	keys       []entraKey // published; the last one signs
	identities map[string]identity
	down       bool
	jwksReqs   int
	discReqs   int
	tokenReqs  []TokenRequest
}

// identity is a user-assigned identity the managed identity endpoint
// knows.
type identity struct {
	oid, resource string
}

type entraKey struct {
	kid string
	key *rsa.PrivateKey
}

// TokenRequest is a managed identity token request the fake answered.
type TokenRequest struct {
	// Resource is the resource asked for, as sent.
	Resource string
	// ClientID, ObjectID and ResourceID select a user-assigned identity
	// ("" for the system-assigned one).
	ClientID, ObjectID, ResourceID string
	// Header is the X-IDENTITY-HEADER sent.
	Header string
	// Status is the answer's HTTP status.
	Status int
}

// Start starts a fake Entra ID and stops it when the test ends.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	if o.Tenant == "" {
		o.Tenant = entraGUID(t)
	}
	if o.Identity == "" {
		o.Identity = entraGUID(t)
	}
	if o.TTL <= 0 {
		o.TTL = time.Hour
	}
	sub := entraGUID(t)
	if o.ResourceID == "" {
		o.ResourceID = VMResourceID(sub, "berth-test", "vm-"+strings.ReplaceAll(o.Identity, "-", ""))
	}
	e := &Server{
		Tenant:         strings.ToLower(o.Tenant),
		Identity:       o.Identity,
		ResourceID:     o.ResourceID,
		Subscription:   sub,
		IdentityHeader: "fake-identity-header-" + entraGUID(t),
		opts:           o,
		identities:     map[string]identity{},
		guard:          secretlog.For(t),
	}
	e.guard.Secret("managed identity header", e.IdentityHeader)
	e.keys = append(e.keys, newEntraKey(t))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{tenant}/v2.0/.well-known/openid-configuration", e.serveDiscovery)
	mux.HandleFunc("GET /{tenant}/discovery/v2.0/keys", e.serveJWKS)
	mux.HandleFunc("GET /msi/token", e.serveToken)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	e.URL = srv.URL
	e.IdentityEndpoint = srv.URL + "/msi/token"
	return e
}

func newEntraKey(t testing.TB) entraKey {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatalf("fake Entra key: %v", err)
	}
	return entraKey{kid: "kid-" + entraGUID(t)[:8], key: key}
}

func entraGUID(t testing.TB) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("guid: %v", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// VMResourceID is the resource id of a VM as Entra writes it in a system-
// assigned identity's xms_mirid (note "resourcegroups" in lower case).
func VMResourceID(subscription, group, vm string) string {
	return "/subscriptions/" + subscription + "/resourcegroups/" + group + "/providers/Microsoft.Compute/virtualMachines/" + vm
}

// UserAssignedResourceID is the resource id of a user-assigned identity as
// its tokens carry it in xms_mirid.
func UserAssignedResourceID(subscription, group, name string) string {
	return "/subscriptions/" + subscription + "/resourcegroups/" + group + "/providers/Microsoft.ManagedIdentity/userAssignedIdentities/" + name
}

// V1Issuer is the iss of v1 tokens (managed identity's default).
func (e *Server) V1Issuer() string { return "https://sts.windows.net/" + e.Tenant + "/" }

// V2Issuer is the iss of v2 tokens.
func (e *Server) V2Issuer() string { return e.URL + "/" + e.Tenant + "/v2.0" }

// UseFor points azidentity's ManagedIdentityCredential at the fake for the
// rest of the test through the App Service variables IDENTITY_ENDPOINT and
// IDENTITY_HEADER, clearing those that would select another source. It
// uses t.Setenv, so the test cannot be parallel.
func (e *Server) UseFor(t testing.TB) {
	t.Helper()
	t.Setenv("IDENTITY_ENDPOINT", e.IdentityEndpoint)
	t.Setenv("IDENTITY_HEADER", e.IdentityHeader)
	for _, v := range []string{"IDENTITY_SERVER_THUMBPRINT", "MSI_ENDPOINT", "MSI_SECRET", "IMDS_ENDPOINT"} {
		t.Setenv(v, "")
	}
}

// AddIdentity makes a user-assigned identity known to the managed
// identity endpoint: requests selecting it by id (a client id, object id
// or resource id, whichever the credential sends) get tokens with oid,
// and with xms_mirid a user-assigned identity resource in Subscription.
// Requests for an unknown user-assigned identity get 400, as on Azure.
func (e *Server) AddIdentity(id, oid string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.identities[id] = identity{oid: oid, resource: UserAssignedResourceID(e.Subscription, "berth-test", "id-"+oid)}
}

// SetDown makes discovery and the JWKS answer 503 (true) or work again.
func (e *Server) SetDown(down bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.down = down
}

// Rotate publishes a new signing key and signs with it from now on; the
// old keys stay published. It returns the new kid.
func (e *Server) Rotate(t testing.TB) string {
	t.Helper()
	k := newEntraKey(t)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.keys = append(e.keys, k)
	return k.kid
}

// KeyID is the kid that signs now.
func (e *Server) KeyID() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.keys[len(e.keys)-1].kid
}

// JWKSRequests counts the requests for the key set so far.
func (e *Server) JWKSRequests() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.jwksReqs
}

// DiscoveryRequests counts the requests for the discovery document.
func (e *Server) DiscoveryRequests() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.discReqs
}

// TokenRequests returns the managed identity token requests so far.
func (e *Server) TokenRequests() []TokenRequest {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.tokenReqs)
}

// Claims returns the claims of a valid v1 app-only access token for
// audience and object id oid, issued now: what a service principal's
// client credentials get (idtyp app, sub = oid, no scp, no xms_mirid).
// ManagedIdentityClaims adds the managed identity's resource.
func (e *Server) Claims(audience, oid string) jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{
		"aud":   audience,
		"iss":   e.V1Issuer(),
		"iat":   now.Unix(),
		"nbf":   now.Unix(),
		"exp":   now.Add(e.opts.TTL).Unix(),
		"tid":   e.Tenant,
		"oid":   oid,
		"sub":   oid,
		"appid": oid,
		"idtyp": "app",
		"ver":   "1.0",
	}
}

// ClaimsV2 returns the claims of a valid v2 app-only access token.
func (e *Server) ClaimsV2(audience, oid string) jwt.MapClaims {
	return toV2(e.Claims(audience, oid), e.V2Issuer(), oid)
}

func toV2(c jwt.MapClaims, issuer, client string) jwt.MapClaims {
	c["iss"] = issuer
	c["ver"] = "2.0"
	c["azp"] = client
	if _, ok := c["appidacr"]; ok {
		c["azpacr"] = c["appidacr"]
		delete(c, "appidacr")
	}
	delete(c, "appid")
	return c
}

// ManagedIdentityClaims returns the claims of a valid v1 access token of
// a managed identity with object id oid whose resource (the VM, or the
// user-assigned identity) is resource, as IMDS hands it out: app-only,
// certificate-authenticated (appidacr 2), with xms_mirid.
func (e *Server) ManagedIdentityClaims(audience, oid, resource string) jwt.MapClaims {
	c := e.Claims(audience, oid)
	c["appidacr"] = "2"
	c["idp"] = e.V1Issuer()
	c["xms_mirid"] = resource
	return c
}

// UserClaims returns the claims of a valid v1 access token a user with
// object id oid got through a client application's sign-in (delegated):
// scp, a pairwise sub, upn and name, and no idtyp (an optional claim the
// API may not have asked for).
func (e *Server) UserClaims(audience, oid string) jwt.MapClaims {
	c := e.Claims(audience, oid)
	delete(c, "idtyp")
	// A pairwise id per application, never the oid.
	sum := sha256.Sum256([]byte("pairwise " + oid))
	c["sub"] = base64.RawURLEncoding.EncodeToString(sum[:])
	c["scp"] = "user_impersonation"
	c["appid"] = "04b07795-8ddb-461a-bbee-02f9e1bf7b46" // the Azure CLI
	c["upn"] = "someone@example.com"
	c["name"] = "Some One"
	c["amr"] = []string{"pwd", "mfa"}
	return c
}

// UserClaimsV2 is UserClaims as a v2 token.
func (e *Server) UserClaimsV2(audience, oid string) jwt.MapClaims {
	c := toV2(e.UserClaims(audience, oid), e.V2Issuer(), "04b07795-8ddb-461a-bbee-02f9e1bf7b46")
	delete(c, "upn")
	c["preferred_username"] = "someone@example.com"
	return c
}

// Mint signs claims RS256 with the current key, as Entra would.
func (e *Server) Mint(claims jwt.MapClaims) string {
	e.mu.Lock()
	k := e.keys[len(e.keys)-1]
	e.mu.Unlock()
	return signRS256(claims, k.kid, k.key)
}

func signRS256(claims jwt.MapClaims, kid string, key *rsa.PrivateKey) string {
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	tok.Header["kid"] = kid
	tok.Header["x5t"] = kid
	s, err := tok.SignedString(key)
	if err != nil {
		panic("fake Entra: sign: " + err.Error()) // RS256 with a fresh key cannot fail
	}
	return s
}

// MintUnknownKey signs claims with a key the fake never published, under
// kid (a fresh one when "").
func (e *Server) MintUnknownKey(t testing.TB, claims jwt.MapClaims, kid string) string {
	t.Helper()
	k := newEntraKey(t)
	if kid == "" {
		kid = k.kid
	}
	return signRS256(claims, kid, k.key)
}

// MintNone returns an unsigned token (alg none) naming the current kid.
func (e *Server) MintNone(claims jwt.MapClaims) string {
	tok := jwt.NewWithClaims(jwt.SigningMethodNone, claims)
	tok.Header["kid"] = e.KeyID()
	s, err := tok.SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		panic("fake Entra: alg none: " + err.Error())
	}
	return s
}

// MintHS256 returns the key-confusion forgery: HS256 with the current
// public key (PEM, as a careless verifier would load it) as the secret.
func (e *Server) MintHS256(claims jwt.MapClaims) string {
	e.mu.Lock()
	k := e.keys[len(e.keys)-1]
	e.mu.Unlock()
	der, err := x509.MarshalPKIXPublicKey(&k.key.PublicKey)
	if err != nil {
		panic("fake Entra: public key: " + err.Error())
	}
	secret := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
	tok.Header["kid"] = k.kid
	s, err := tok.SignedString(secret)
	if err != nil {
		panic("fake Entra: HS256: " + err.Error())
	}
	return s
}

// HostileToken is a token a correct verifier refuses.
type HostileToken struct {
	Name  string
	Token string
}

// HostileTokens returns tokens for audience and oid that each break one
// rule: expired, not yet valid, wrong audience, issuer or tenant, no oid,
// unsigned, HS256 key confusion, unknown key, tampered payload, no
// signature; and genuine tokens of a user (none of which may act as a
// host): delegated v1 and v2, idtyp user, scp alone, sub other than oid.
func (e *Server) HostileTokens(t testing.TB, audience, oid string) []HostileToken {
	t.Helper()
	with := func(change func(jwt.MapClaims)) jwt.MapClaims {
		c := e.Claims(audience, oid)
		change(c)
		return c
	}
	now := time.Now()
	other := entraGUID(t)
	valid := e.Mint(e.Claims(audience, oid))
	parts := strings.Split(valid, ".")
	tampered := e.Claims(audience, oid)
	tampered["oid"] = other
	body, _ := json.Marshal(tampered)
	return []HostileToken{
		{"expired", e.Mint(with(func(c jwt.MapClaims) {
			c["iat"], c["nbf"], c["exp"] = now.Add(-2*time.Hour).Unix(), now.Add(-2*time.Hour).Unix(), now.Add(-time.Hour).Unix()
		}))},
		{"not yet valid", e.Mint(with(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Hour).Unix() }))},
		{"wrong audience", e.Mint(with(func(c jwt.MapClaims) { c["aud"] = "api://someone-else" }))},
		{"wrong issuer", e.Mint(with(func(c jwt.MapClaims) { c["iss"] = "https://sts.windows.net/" + other + "/" }))},
		{"wrong tenant", e.Mint(with(func(c jwt.MapClaims) { c["tid"] = other }))},
		{"no oid", e.Mint(with(func(c jwt.MapClaims) { delete(c, "oid") }))},
		{"alg none", e.MintNone(e.Claims(audience, oid))},
		{"HS256 key confusion", e.MintHS256(e.Claims(audience, oid))},
		{"unknown key", e.MintUnknownKey(t, e.Claims(audience, oid), "")},
		{"tampered payload", parts[0] + "." + base64.RawURLEncoding.EncodeToString(body) + "." + parts[2]},
		{"no signature", parts[0] + "." + parts[1] + "."},
		{"user token", e.Mint(e.UserClaims(audience, oid))},
		{"user token v2", e.Mint(e.UserClaimsV2(audience, oid))},
		{"user token with xms_mirid", e.Mint(with(func(c jwt.MapClaims) {
			for k, v := range e.UserClaims(audience, oid) {
				c[k] = v
			}
			c["xms_mirid"] = e.ResourceID
		}))},
		{"idtyp user", e.Mint(with(func(c jwt.MapClaims) { c["idtyp"] = "user" }))},
		{"scp alone", e.Mint(with(func(c jwt.MapClaims) { c["scp"] = "user_impersonation" }))},
		{"sub is not oid", e.Mint(with(func(c jwt.MapClaims) { c["sub"] = other }))},
	}
}

func (e *Server) serveDiscovery(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	e.discReqs++
	down := e.down
	e.mu.Unlock()
	if down {
		http.Error(w, "fake Entra is down", http.StatusServiceUnavailable)
		return
	}
	tenant := r.PathValue("tenant")
	if tenant != e.Tenant {
		http.Error(w, `{"error":"invalid_tenant"}`, http.StatusBadRequest)
		return
	}
	base := e.URL + "/" + tenant
	entraJSON(w, map[string]any{
		"issuer":                                base + "/v2.0",
		"jwks_uri":                              base + "/discovery/v2.0/keys",
		"authorization_endpoint":                base + "/oauth2/v2.0/authorize",
		"token_endpoint":                        base + "/oauth2/v2.0/token",
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"response_types_supported":              []string{"code", "id_token", "token"},
		"subject_types_supported":               []string{"pairwise"},
		"tenant_region_scope":                   "test",
	})
}

func (e *Server) serveJWKS(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	e.jwksReqs++
	down := e.down
	keys := slices.Clone(e.keys)
	e.mu.Unlock()
	if down {
		http.Error(w, "fake Entra is down", http.StatusServiceUnavailable)
		return
	}
	if r.PathValue("tenant") != e.Tenant {
		http.Error(w, `{"error":"invalid_tenant"}`, http.StatusBadRequest)
		return
	}
	type jwk struct {
		Kty    string `json:"kty"`
		Use    string `json:"use"`
		Kid    string `json:"kid"`
		X5t    string `json:"x5t"`
		N      string `json:"n"`
		E      string `json:"e"`
		Issuer string `json:"issuer"`
	}
	set := struct {
		Keys []jwk `json:"keys"`
	}{}
	for _, k := range keys {
		pub := k.key.PublicKey
		set.Keys = append(set.Keys, jwk{
			Kty:    "RSA",
			Use:    "sig",
			Kid:    k.kid,
			X5t:    k.kid,
			N:      base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
			E:      base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
			Issuer: e.V2Issuer(),
		})
	}
	entraJSON(w, set)
}

// serveToken is the App Service managed identity protocol (api-version
// 2019-08-01) that azidentity speaks when IDENTITY_ENDPOINT and
// IDENTITY_HEADER are set.
func (e *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	rec := TokenRequest{
		Resource:   q.Get("resource"),
		ClientID:   q.Get("client_id"),
		ObjectID:   q.Get("object_id"),
		ResourceID: q.Get("mi_res_id"),
		Header:     r.Header.Get("X-IDENTITY-HEADER"),
	}
	fail := func(status int, code, msg string) {
		rec.Status = status
		e.mu.Lock()
		e.tokenReqs = append(e.tokenReqs, rec)
		e.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": msg})
	}
	if rec.Header != e.IdentityHeader {
		fail(http.StatusUnauthorized, "unauthorized", "X-IDENTITY-HEADER missing or wrong")
		return
	}
	resource := strings.TrimSuffix(rec.Resource, "/.default")
	if resource == "" {
		fail(http.StatusBadRequest, "invalid_request", "resource is required")
		return
	}
	id := identity{oid: e.Identity, resource: e.ResourceID}
	selector := rec.ClientID + rec.ObjectID + rec.ResourceID
	if selector != "" {
		e.mu.Lock()
		ua, ok := e.identities[selector]
		e.mu.Unlock()
		if !ok {
			fail(http.StatusBadRequest, "invalid_request", "no such user-assigned identity on this resource")
			return
		}
		id = ua
	}
	oid := id.oid
	claims := e.ManagedIdentityClaims(resource, oid, id.resource)
	if len(e.opts.Roles) > 0 {
		claims["roles"] = e.opts.Roles
	}
	token := e.Mint(claims)
	e.guard.Secret("managed-identity token", token)
	// expires_on is at most four minutes away (the token itself may live
	// longer): MSAL's process-wide cache serves a token again only when it
	// has five minutes left, so one test never gets a token another
	// test's fake signed.
	exp := time.Unix(claims["exp"].(int64), 0)
	if limit := time.Now().Add(4 * time.Minute); exp.After(limit) {
		exp = limit
	}
	rec.Status = http.StatusOK
	e.mu.Lock()
	e.tokenReqs = append(e.tokenReqs, rec)
	e.mu.Unlock()
	entraJSON(w, map[string]string{
		"access_token": token,
		"expires_on":   strconv.FormatInt(exp.Unix(), 10),
		"resource":     rec.Resource,
		"token_type":   "Bearer",
		"client_id":    oid,
	})
}

func entraJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
