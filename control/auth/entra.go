package auth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Leeway is the clock skew allowed on a token's exp and nbf.
const Leeway = 2 * time.Minute

// guid is a tenant id as Entra writes it in tid and iss.
var guid = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// entraVerifier checks Entra ID access tokens for one tenant.
type entraVerifier struct {
	tenant       string
	authority    string
	audiences    []string
	issuers      []string
	operatorRole string
	scope        agentScope
	keys         *keySet
	verified     *cache
	now          func() time.Time
	parser       *jwt.Parser
}

func newEntraVerifier(e Entra, client *http.Client, log *slog.Logger, now func() time.Time) (*entraVerifier, error) {
	tenant := strings.ToLower(strings.TrimSpace(e.Tenant))
	if tenant == "" {
		return nil, errors.New("--auth entra needs --entra-tenant (the directory (tenant) id)")
	}
	if !guid.MatchString(tenant) {
		// tid and iss always carry the GUID; a domain name would never
		// match, so refuse it here rather than refuse every token later.
		return nil, fmt.Errorf("--entra-tenant %q is not a tenant id: give the directory (tenant) id GUID, not a domain name", e.Tenant)
	}
	var auds []string
	for a := range strings.SplitSeq(e.Audience, ",") {
		if a = strings.TrimSpace(a); a != "" && !slices.Contains(auds, a) {
			auds = append(auds, a)
		}
	}
	if len(auds) == 0 {
		return nil, errors.New("--auth entra needs --entra-audience (the App ID URI or application id the tokens are for)")
	}
	authority := strings.TrimRight(strings.TrimSpace(e.Authority), "/")
	if authority == "" {
		authority = DefaultAuthority
	}
	if err := checkFetchURL(authority); err != nil {
		return nil, fmt.Errorf("--entra-authority: %w", err)
	}
	role := e.OperatorRole
	if role == "" {
		role = DefaultOperatorRole
	}
	scope, err := parseAgentScope(e.AgentScope)
	if err != nil {
		return nil, err
	}
	v2 := authority + "/" + tenant + "/v2.0"
	return &entraVerifier{
		tenant:    tenant,
		authority: authority,
		audiences: auds,
		// Managed identity tokens are v1 unless the app registration asks
		// for v2 (requestedAccessTokenVersion); v1 tokens name the public
		// cloud's STS whatever login endpoint is used.
		issuers:      []string{"https://sts.windows.net/" + tenant + "/", v2},
		operatorRole: role,
		scope:        scope,
		keys:         newKeySet(v2+"/.well-known/openid-configuration", client, log, now),
		verified:     newCache(),
		now:          now,
		// Claims are checked below, for messages that say what is wrong.
		parser: jwt.NewParser(jwt.WithValidMethods([]string{"RS256"}), jwt.WithoutClaimsValidation()),
	}, nil
}

// checkFetchURL accepts https URLs, and http ones only on loopback hosts
// (tests): signing keys fetched in the clear could be swapped.
func checkFetchURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%q is not a URL: %w", raw, err)
	}
	if u.Host == "" {
		return fmt.Errorf("%q has no host", raw)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if ip := net.ParseIP(host); host == "localhost" || ip != nil && ip.IsLoopback() {
			return nil
		}
	}
	return fmt.Errorf("%q must be an https URL (http only on a loopback address)", raw)
}

// entraClaims are the claims Berth reads from an Entra access token (see
// agent.go for what idtyp, scp and xms_mirid decide).
type entraClaims struct {
	jwt.RegisteredClaims
	TenantID string   `json:"tid"`
	ObjectID string   `json:"oid"`
	Roles    []string `json:"roles"`
	IDType   string   `json:"idtyp"`
	Scope    string   `json:"scp"`
	Resource string   `json:"xms_mirid"`
}

// jwtHeader is the part of a JOSE header checked before any key is used.
type jwtHeader struct {
	Alg  string          `json:"alg"`
	Kid  string          `json:"kid"`
	Crit json.RawMessage `json:"crit"`
}

func (v *entraVerifier) authenticate(ctx context.Context, tok string) (Principal, error) {
	// An agent presents the same token for an hour or more; remembering
	// it spares an RSA verification per request.
	sum := sha256.Sum256([]byte(tok))
	if e, ok := v.verified.get(sum, v.now()); ok {
		return e.p, e.err
	}
	head, _, _ := strings.Cut(tok, ".")
	raw, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		return Principal{}, unauthenticated("malformed JWT: header is not base64url")
	}
	var h jwtHeader
	if err := json.Unmarshal(raw, &h); err != nil {
		return Principal{}, unauthenticated("malformed JWT: header is not a JSON object")
	}
	switch alg := strings.ToUpper(h.Alg); {
	case alg == "RS256" && h.Alg == "RS256":
	case alg == "" || alg == "NONE":
		return Principal{}, unauthenticated("unsigned token (alg %s) refused: only RS256-signed Entra ID tokens are accepted", claim(h.Alg))
	case strings.HasPrefix(alg, "HS"):
		return Principal{}, unauthenticated("HMAC-signed token (alg %s) refused: only RS256-signed Entra ID tokens are accepted", claim(h.Alg))
	default:
		return Principal{}, unauthenticated("token signed with alg %s refused: only RS256 is accepted", claim(h.Alg))
	}
	if len(h.Crit) > 0 {
		// RFC 7515 4.1.11: extensions we do not understand must fail.
		return Principal{}, unauthenticated("token has critical header extensions (crit) that are not supported")
	}
	if h.Kid == "" {
		return Principal{}, unauthenticated("token names no signing key (kid)")
	}
	key, err := v.keys.key(ctx, h.Kid)
	if err != nil {
		return Principal{}, err
	}
	var c entraClaims
	if _, err := v.parser.ParseWithClaims(tok, &c, func(*jwt.Token) (any, error) { return key, nil }); err != nil {
		if errors.Is(err, jwt.ErrTokenSignatureInvalid) {
			return Principal{}, unauthenticated("token signature does not verify with signing key %s", claim(h.Kid))
		}
		// The library's message names the part that is malformed and
		// never includes the token.
		return Principal{}, unauthenticated("malformed JWT: %v", err)
	}
	p, err := v.check(&c)
	if err != nil && !errors.Is(err, ErrForbidden) {
		return Principal{}, err
	}
	// Until the cache lifetime or the token's expiry, whichever is first;
	// a withdrawn signing key thus stops a cached token within
	// TokenCacheTTL. A genuine token that grants nothing is remembered
	// too: its claims will not change.
	now := v.now()
	until := now.Add(TokenCacheTTL)
	if exp := c.ExpiresAt.Add(Leeway); exp.Before(until) {
		until = exp
	}
	v.verified.put(sum, cacheEntry{p: p, err: err, until: until}, now)
	return p, err
}

// check applies the claim rules to a token whose signature verified.
func (v *entraVerifier) check(c *entraClaims) (Principal, error) {
	now := v.now()
	if c.ExpiresAt == nil {
		return Principal{}, unauthenticated("token has no expiry (exp)")
	}
	if exp := c.ExpiresAt.Time; now.After(exp.Add(Leeway)) {
		return Principal{}, unauthenticated("token expired at %s", exp.UTC().Format(time.RFC3339))
	}
	if c.NotBefore != nil && now.Add(Leeway).Before(c.NotBefore.Time) {
		return Principal{}, unauthenticated("token not valid before %s", c.NotBefore.UTC().Format(time.RFC3339))
	}
	if !slices.Contains(v.issuers, c.Issuer) {
		return Principal{}, unauthenticated("issuer %s is not this tenant's (%s)", claim(c.Issuer), strings.Join(v.issuers, " or "))
	}
	if !strings.EqualFold(c.TenantID, v.tenant) {
		return Principal{}, unauthenticated("tenant (tid) %s is not %s", claim(c.TenantID), v.tenant)
	}
	if !slices.ContainsFunc(c.Audience, func(a string) bool { return slices.Contains(v.audiences, a) }) {
		got := make([]string, 0, len(c.Audience))
		for _, a := range c.Audience {
			got = append(got, claim(a))
		}
		if len(got) > 4 {
			got = append(got[:4], "…")
		}
		return Principal{}, unauthenticated("audience [%s] is not %s", strings.Join(got, " "), strings.Join(v.audiences, " or "))
	}
	if c.ObjectID == "" {
		return Principal{}, unauthenticated("token has no object id (oid) to name its principal")
	}
	return principalOf(c, v.operatorRole, v.scope)
}
