package upstream

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"golang.org/x/net/publicsuffix"

	"github.com/berthhq/berth/internal/secret"
)

// ACRScope is the Entra ID scope of a token Azure Container Registry
// exchanges for its own refresh token.
const ACRScope = "https://containerregistry.azure.net/.default"

// Token lifetimes assumed when a token does not say, and the bounds on
// what a token may look like.
const (
	defaultTokenLifetime   = 60 * time.Second // the Docker token spec's default
	defaultRefreshLifetime = 30 * time.Minute
	maxTokenLength         = 64 << 10
	tokenFetchTimeout      = 60 * time.Second
	maxCachedTokens        = 512
)

func tokenKey(ch challenge, scope string) string {
	return ch.params["realm"] + "\x00" + ch.params["service"] + "\x00" + scope
}

// token returns a bearer token for scope under challenge ch, from the cache
// or fetched now. Concurrent callers for one key share one fetch; a caller
// whose context ends stops waiting, the fetch carries on for the others.
func (c *Client) token(ctx context.Context, ch challenge, scope string) (secret.Value, error) {
	key := tokenKey(ch, scope)
	if tok, ok := c.cached(c.tokens, key); ok {
		return tok, nil
	}
	res := c.flight.DoChan("access\x00"+key, func() (any, error) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), tokenFetchTimeout)
		defer cancel()
		var tok cachedToken
		var err error
		if c.mode == AuthManagedIdentity {
			tok, err = c.acrAccessToken(fctx, ch, scope)
		} else {
			tok, err = c.registryToken(fctx, ch, scope)
		}
		if err != nil {
			return secret.Value(""), err
		}
		c.store(c.tokens, key, tok)
		return tok.value, nil
	})
	select {
	case r := <-res:
		if r.Err != nil {
			return "", r.Err
		}
		return r.Val.(secret.Value), nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

func (c *Client) cached(m map[string]cachedToken, key string) (secret.Value, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := m[key]
	if !ok || !c.now().Before(t.until) {
		return "", false
	}
	return t.value, true
}

func (c *Client) store(m map[string]cachedToken, key string, t cachedToken) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(m) >= maxCachedTokens {
		now := c.now()
		for k, v := range m {
			if !now.Before(v.until) {
				delete(m, k)
			}
		}
		if len(m) >= maxCachedTokens {
			clear(m)
		}
	}
	m[key] = t
}

// until returns when to stop using a token issued now with lifetime d: a
// tenth of its life (at most a minute) before it ends.
func (c *Client) until(d time.Duration) time.Time {
	return c.now().Add(d - min(d/10, time.Minute))
}

// realmURL checks a challenge's realm: https, or http to loopback, and no
// user info.
func realmURL(ch challenge) (*url.URL, error) {
	raw := ch.params["realm"]
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil || u.Fragment != "" ||
		!(u.Scheme == "https" || u.Scheme == "http" && isLoopback(u.Hostname())) {
		return nil, fmt.Errorf("%w: unusable token realm %q", ErrUnauthorized, cleanText(raw, 200))
	}
	return u, nil
}

// sameSite reports whether two hosts belong to one registrable domain
// (auth.docker.io and registry-1.docker.io do; gitlab.com and
// registry.gitlab.com too) and that domain is not shared by many tenants
// (r.azurecr.io and evil.azurecr.io are not one site). IP addresses and
// loopback names only match themselves.
func sameSite(a, b string) bool {
	a, b = strings.ToLower(a), strings.ToLower(b)
	if a == b {
		return true
	}
	if net.ParseIP(a) != nil || net.ParseIP(b) != nil || isLoopback(a) || isLoopback(b) {
		return false
	}
	ea, err1 := publicsuffix.EffectiveTLDPlusOne(a)
	eb, err2 := publicsuffix.EffectiveTLDPlusOne(b)
	return err1 == nil && err2 == nil && ea == eb && !multiTenant[ea]
}

// multiTenant are registrable domains under which every tenant's registry
// has its own host, missing from the public suffix list.
var multiTenant = map[string]bool{
	"azurecr.io": true, "azurecr.cn": true, "azurecr.us": true,
	"amazonaws.com": true, "amazonaws.com.cn": true,
	"pkg.dev": true,
}

// registryToken runs the Docker token flow: GET realm?service=&scope=,
// with the basic credentials when the realm is on the registry's own site
// (they are never sent to a realm elsewhere: a token is then asked for
// anonymously).
func (c *Client) registryToken(ctx context.Context, ch challenge, scope string) (cachedToken, error) {
	realm, err := realmURL(ch)
	if err != nil {
		return cachedToken{}, err
	}
	q := realm.Query()
	if svc := ch.params["service"]; svc != "" {
		q.Set("service", svc)
	}
	if scope == "" {
		scope = ch.params["scope"]
	}
	for _, s := range strings.Fields(scope) {
		q.Add("scope", s)
	}
	realm.RawQuery = q.Encode()
	authz := ""
	if c.mode == AuthBasic {
		if sameSite(realm.Hostname(), c.base.Hostname()) {
			authz = "Basic " + basicAuth(c.user, c.pass)
		} else {
			c.log.Warn("token realm is not on the registry's site: asking for an anonymous token", "realm", safeURL(realm))
		}
	}
	resp, err := c.send(ctx, http.MethodGet, realm, nil, authz, false)
	if err != nil {
		return cachedToken{}, fmt.Errorf("token from %s: %w", safeURL(realm), err)
	}
	if resp.StatusCode != http.StatusOK {
		return cachedToken{}, fmt.Errorf("token from %s: %w", safeURL(realm), c.answerError(resp))
	}
	var body struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
		ExpiresIn   int64  `json:"expires_in"`
	}
	if err := readJSON(resp, &body); err != nil {
		return cachedToken{}, fmt.Errorf("token from %s: %w", safeURL(realm), err)
	}
	tok := body.Token
	if tok == "" {
		tok = body.AccessToken
	}
	if !validToken(tok) {
		return cachedToken{}, fmt.Errorf("%w: token from %s: no usable token in the answer", ErrUnauthorized, safeURL(realm))
	}
	life := defaultTokenLifetime
	if body.ExpiresIn > 0 && body.ExpiresIn < int64(24*time.Hour/time.Second) {
		life = time.Duration(body.ExpiresIn) * time.Second
	}
	c.log.Debug("got registry token", "realm", safeURL(realm), "scope", scope, "lifetime", life)
	return cachedToken{value: secret.Value(tok), until: c.until(life)}, nil
}

// acrAccessToken runs Azure Container Registry's flow for the managed
// identity: a refresh token (see acrRefreshToken) → POST realm with
// grant_type=refresh_token for the scope → access token. The realm must be
// on the registry's own host, or the identity's token is not sent at all.
func (c *Client) acrAccessToken(ctx context.Context, ch challenge, scope string) (cachedToken, error) {
	realm, err := realmURL(ch)
	if err != nil {
		return cachedToken{}, err
	}
	if !strings.EqualFold(realm.Host, c.base.Host) || realm.Scheme != c.base.Scheme {
		return cachedToken{}, fmt.Errorf("%w: token realm %s is not on the registry's host %s: the managed identity's token is not sent there",
			ErrUnauthorized, safeURL(realm), c.base.Host)
	}
	realm.RawQuery = ""
	service := ch.params["service"]
	if service == "" {
		service = c.base.Hostname()
	}
	if scope == "" {
		scope = ch.params["scope"]
	}
	for attempt := 0; ; attempt++ {
		refresh, err := c.acrRefreshToken(ctx, realm, service, attempt > 0)
		if err != nil {
			return cachedToken{}, err
		}
		form := url.Values{
			"grant_type":    {"refresh_token"},
			"service":       {service},
			"refresh_token": {refresh.Reveal()},
		}
		for _, s := range strings.Fields(scope) {
			form.Add("scope", s)
		}
		var body struct {
			AccessToken string `json:"access_token"`
		}
		err = c.postForm(ctx, realm, form, &body)
		if err != nil {
			var re *RegistryError
			if attempt == 0 && errors.As(err, &re) && re.Status == http.StatusUnauthorized {
				continue // the refresh token may have been revoked: exchange again
			}
			return cachedToken{}, fmt.Errorf("acr access token: %w", err)
		}
		if !validToken(body.AccessToken) {
			return cachedToken{}, fmt.Errorf("%w: acr access token: no usable token in the answer", ErrUnauthorized)
		}
		until := c.until(5 * time.Minute)
		if exp, ok := jwtExpiry(body.AccessToken); ok {
			until = c.until(exp.Sub(c.now()))
		}
		c.log.Debug("got acr access token", "scope", scope)
		return cachedToken{value: secret.Value(body.AccessToken), until: until}, nil
	}
}

// acrRefreshToken returns ACR's refresh token for the managed identity,
// cached until it expires: an Entra token for ACRScope, POSTed to
// /oauth2/exchange with grant_type=access_token.
func (c *Client) acrRefreshToken(ctx context.Context, realm *url.URL, service string, force bool) (secret.Value, error) {
	key := realm.Host + "\x00" + service
	if !force {
		if tok, ok := c.cached(c.refresh, key); ok {
			return tok, nil
		}
	}
	res := c.flight.DoChan("refresh\x00"+key, func() (any, error) {
		if !force {
			if tok, ok := c.cached(c.refresh, key); ok {
				return tok, nil
			}
		}
		at, err := c.ts.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{ACRScope}})
		if err != nil {
			return secret.Value(""), fmt.Errorf("%w: managed identity token for %s: %w", ErrUnauthorized, ACRScope, err)
		}
		exchange := *realm
		exchange.Path = strings.TrimSuffix(realm.Path, "/token") + "/exchange"
		if !strings.HasSuffix(realm.Path, "/token") {
			exchange.Path = "/oauth2/exchange"
		}
		form := url.Values{
			"grant_type":   {"access_token"},
			"service":      {service},
			"access_token": {at.Token},
		}
		var body struct {
			RefreshToken string `json:"refresh_token"`
		}
		if err := c.postForm(ctx, &exchange, form, &body); err != nil {
			return secret.Value(""), fmt.Errorf("acr token exchange: %w", err)
		}
		if !validToken(body.RefreshToken) {
			return secret.Value(""), fmt.Errorf("%w: acr token exchange: no usable refresh token in the answer", ErrUnauthorized)
		}
		until := c.until(defaultRefreshLifetime)
		if exp, ok := jwtExpiry(body.RefreshToken); ok {
			until = c.until(exp.Sub(c.now()))
		}
		c.store(c.refresh, key, cachedToken{value: secret.Value(body.RefreshToken), until: until})
		c.log.Debug("exchanged managed identity token for an acr refresh token", "service", service)
		return secret.Value(body.RefreshToken), nil
	})
	select {
	case r := <-res:
		if r.Err != nil {
			return "", r.Err
		}
		return r.Val.(secret.Value), nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// postForm POSTs form to u (no redirects) and decodes a 200's JSON body
// into out; any other answer is a *RegistryError.
func (c *Client) postForm(ctx context.Context, u *url.URL, form url.Values, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), strings.NewReader(form.Encode()))
	if err != nil {
		return fmt.Errorf("%w: POST %s: %w", ErrInvalid, safeURL(u), err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.hc.Do(req)
	if err != nil {
		return transportError(ctx, "POST "+safeURL(u), redactError(err))
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s: %w", safeURL(u), c.answerError(resp))
	}
	return readJSON(resp, out)
}

// readJSON decodes a bounded JSON body and closes it.
func readJSON(resp *http.Response, out any) error {
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenResponse+1))
	if err != nil {
		return fmt.Errorf("%w: read answer: %w", ErrUpstreamUnavailable, err)
	}
	if len(b) > maxTokenResponse {
		return fmt.Errorf("%w: answer over %d bytes", ErrTooLarge, maxTokenResponse)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%w: answer is not JSON: %v", ErrUnauthorized, err)
	}
	return nil
}

// validToken accepts what can go in an Authorization header: visible
// ASCII, bounded.
func validToken(s string) bool {
	if s == "" || len(s) > maxTokenLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// jwtExpiry reads the exp claim of a JWT without checking its signature
// (only the issuer can, and we only use it to know when to ask again).
func jwtExpiry(tok string) (time.Time, bool) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return time.Time{}, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return time.Time{}, false
	}
	var claims struct {
		Exp json.Number `json:"exp"`
	}
	if json.Unmarshal(payload, &claims) != nil {
		return time.Time{}, false
	}
	f, err := claims.Exp.Float64()
	if err != nil || f <= 0 || f > 1e11 {
		return time.Time{}, false
	}
	return time.Unix(int64(f), 0), true
}
