// Package upstream is the lowest tier of the image cache: a client of the
// registries the cache mirrors. It fetches manifests and blobs over the OCI
// distribution API and handles what a registry on the internet throws at
// it:
//
//   - auth: anonymous, basic, the bearer-token challenge flow, and Azure
//     Container Registry through the VM's managed identity (Entra token →
//     /oauth2/exchange → /oauth2/token), with tokens cached per scope;
//   - redirects to storage backends, followed without credentials when they
//     leave the registry's host, and bounded;
//   - blob bodies that break mid-way, resumed with Range from where they
//     broke, never handed on short;
//   - manifests checked against the digest they were asked by or announced
//     with, and bounded in size;
//   - error bodies mapped to typed errors, and credentials kept out of logs.
package upstream

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/hashicorp/go-retryablehttp"
	"golang.org/x/sync/singleflight"

	"github.com/berthhq/berth/imagecache/cas"
	"github.com/berthhq/berth/internal/httpclient"
	"github.com/berthhq/berth/internal/secret"
)

// TokenSource gives Entra ID access tokens; azidentity's credentials
// (ManagedIdentityCredential and the rest) satisfy it.
type TokenSource interface {
	GetToken(ctx context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error)
}

// Options configure a Client.
type Options struct {
	// Registry is the registry's name as image references use it:
	// "docker.io", "mcr.microsoft.com", "myregistry.azurecr.io",
	// "127.0.0.1:5000".
	Registry string
	// Config is the registry's entry of cache.upstreams (zero: defaults).
	Config Config
	// HTTPClient sends the requests; nil means httpclient.NewStandard.
	// The client never lets it follow redirects itself.
	HTTPClient *http.Client
	// TokenSource gives the managed identity's Entra tokens; required when
	// Config.Auth is managed-identity.
	TokenSource TokenSource
	// Logger receives the client's logs (nil: none).
	Logger *slog.Logger

	// MaxManifestSize bounds a manifest body (default 4 MiB).
	MaxManifestSize int64
	// MaxResumes bounds how many times in a row a broken blob body is
	// reopened without getting a byte further (default 5).
	MaxResumes int
	// ResumeWait is the pause before reopening a broken blob body,
	// doubled each time in a row (default 200ms).
	ResumeWait time.Duration
}

// Defaults.
const (
	DefaultMaxManifestSize = 4 << 20
	defaultMaxResumes      = 5
	defaultResumeWait      = 200 * time.Millisecond
	// maxRedirects bounds a chain of redirects.
	maxRedirects = 5
	// maxTokenResponse bounds a token endpoint's answer.
	maxTokenResponse = 1 << 20
)

// dockerHubEndpoint is where docker.io's API lives.
const dockerHubEndpoint = "https://registry-1.docker.io"

// Client talks to one upstream registry. It is safe for concurrent use.
type Client struct {
	registry  string
	base      *url.URL // endpoint, without a trailing slash
	dockerHub bool
	hc        *http.Client // follows no redirects
	given     *http.Client // as given in Options
	hopOnce   sync.Once
	hopHC     *http.Client // follows redirects off the registry's host, see hop
	log       *slog.Logger
	mode      string
	user      secret.Value
	pass      secret.Value
	ts        TokenSource

	maxManifest int64
	maxResumes  int
	resumeWait  time.Duration
	now         func() time.Time

	mu        sync.Mutex
	challenge *challenge             // the registry's last challenge
	tokens    map[string]cachedToken // access tokens by realm, service and scope
	refresh   map[string]cachedToken // ACR refresh tokens by realm host and service
	flight    singleflight.Group
}

// cachedToken is a token and when to stop using it.
type cachedToken struct {
	value secret.Value
	until time.Time
}

// New returns a client for o.Registry. It reads basic credentials from
// their files now, and checks the endpoint: plain http only to loopback.
func New(o Options) (*Client, error) {
	name := canonicalName(o.Registry)
	base, err := endpoint(name, o.Config.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", o.Registry, err)
	}
	c := &Client{
		registry:    name,
		base:        base,
		dockerHub:   name == "docker.io",
		log:         o.Logger,
		mode:        o.Config.Auth,
		ts:          o.TokenSource,
		maxManifest: o.MaxManifestSize,
		maxResumes:  o.MaxResumes,
		resumeWait:  o.ResumeWait,
		now:         time.Now,
		tokens:      map[string]cachedToken{},
		refresh:     map[string]cachedToken{},
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.log = c.log.With("component", "upstream", "registry", name)
	if c.maxManifest <= 0 {
		c.maxManifest = DefaultMaxManifestSize
	}
	if c.maxResumes <= 0 {
		c.maxResumes = defaultMaxResumes
	}
	if c.resumeWait <= 0 {
		c.resumeWait = defaultResumeWait
	}
	switch c.mode {
	case "", AuthNone:
		c.mode = AuthNone
	case AuthBasic:
		if c.user, err = readSecretFile("usernameFile", o.Config.UsernameFile); err != nil {
			return nil, fmt.Errorf("upstream %s: %w", name, err)
		}
		if strings.Contains(c.user.Reveal(), ":") {
			return nil, fmt.Errorf("upstream %s: usernameFile: a user name cannot hold ':'", name)
		}
		if c.pass, err = readSecretFile("passwordFile", o.Config.PasswordFile); err != nil {
			return nil, fmt.Errorf("upstream %s: %w", name, err)
		}
	case AuthManagedIdentity:
		if o.TokenSource == nil {
			return nil, fmt.Errorf("upstream %s: auth managed-identity needs a token source", name)
		}
	default:
		return nil, fmt.Errorf("upstream %s: auth %q: want none, basic or managed-identity", name, c.mode)
	}
	hc := o.HTTPClient
	if hc == nil {
		hc = httpclient.NewStandard(httpclient.Options{Logger: o.Logger})
	}
	c.given, c.hc = hc, withoutRedirects(hc)
	return c, nil
}

// hop returns the client that fetches redirect targets off the registry's
// host, made on first use: the given client's retries and TLS settings,
// its transport copied with a dialer that refuses addresses that are not
// public (guardTransport).
func (c *Client) hop() *http.Client {
	c.hopOnce.Do(func() { c.hopHC = rebuild(c.given, guardTransport) })
	return c.hopHC
}

// CloseIdleConnections closes the client's idle connections, the
// redirect client's too: for a client that will not be used again.
func (c *Client) CloseIdleConnections() {
	closeIdle(c.hc)
	c.hopOnce.Do(func() {}) // no redirect client is made after this
	if c.hopHC != nil {
		closeIdle(c.hopHC)
	}
}

// closeIdle closes hc's idle connections, reaching through httpclient's
// retrying transport to the one that holds them.
func closeIdle(hc *http.Client) {
	if rt, ok := hc.Transport.(*retryablehttp.RoundTripper); ok && rt.Client != nil && rt.Client.HTTPClient != nil {
		rt.Client.HTTPClient.CloseIdleConnections()
		return
	}
	hc.CloseIdleConnections()
}

// Registry returns the registry's name as images use it.
func (c *Client) Registry() string { return c.registry }

// Endpoint returns the base URL requests go to.
func (c *Client) Endpoint() string { return c.base.String() }

// endpoint picks the registry's base URL: the configured one, Docker Hub's
// API host for docker.io, else https://<name> (http for a loopback name).
func endpoint(name, configured string) (*url.URL, error) {
	if configured == "" {
		if name == "" {
			return nil, fmt.Errorf("no registry name")
		}
		if name == "docker.io" {
			configured = dockerHubEndpoint
		} else {
			u, err := url.Parse("https://" + name)
			if err != nil || u.Host != name || u.Path != "" || u.User != nil {
				return nil, fmt.Errorf("registry name %q is not a host[:port]", name)
			}
			if isLoopback(u.Hostname()) {
				u.Scheme = "http"
			}
			return u, nil
		}
	}
	u, err := url.Parse(configured)
	if err != nil {
		return nil, fmt.Errorf("endpoint: %w", err)
	}
	switch {
	case u.Scheme != "https" && u.Scheme != "http":
		return nil, fmt.Errorf("endpoint %s: want an https URL", configured)
	case u.Host == "":
		return nil, fmt.Errorf("endpoint %s: no host", configured)
	case u.User != nil:
		return nil, fmt.Errorf("endpoint: credentials in the URL are not allowed; use usernameFile and passwordFile")
	case u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("endpoint %s: no query or fragment allowed", configured)
	case u.Scheme == "http" && !isLoopback(u.Hostname()):
		return nil, fmt.Errorf("endpoint %s: plain http is only allowed to loopback", configured)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// isLoopback reports whether host (no port) is localhost or a loopback IP.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// repoPattern is the distribution-spec grammar of a repository name.
var repoPattern = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*)*$`)

// tagPattern is the grammar of a tag.
var tagPattern = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)

// repoName checks repo and returns the name the registry knows it by
// (Docker Hub's official images live under library/).
func (c *Client) repoName(repo string) (string, error) {
	if len(repo) == 0 || len(repo) > 255 || !repoPattern.MatchString(repo) {
		return "", fmt.Errorf("%w: repository name %q", ErrInvalid, cleanText(repo, 80))
	}
	if c.dockerHub && !strings.Contains(repo, "/") {
		repo = "library/" + repo
	}
	return repo, nil
}

// parseReference tells a digest from a tag; anything else is ErrInvalid.
func parseReference(ref string) (tag string, d cas.Digest, err error) {
	if strings.Contains(ref, ":") {
		d, err := cas.ParseDigest(ref)
		if err != nil {
			return "", "", fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		return "", d, nil
	}
	if !tagPattern.MatchString(ref) {
		return "", "", fmt.Errorf("%w: tag %q", ErrInvalid, cleanText(ref, 80))
	}
	return ref, "", nil
}

// pullScope is the token scope of reading repo.
func pullScope(repo string) string { return "repository:" + repo + ":pull" }

// request is one API call before auth and redirects.
type request struct {
	method string
	path   string // below the endpoint, e.g. /v2/library/busybox/manifests/latest
	header http.Header
	scope  string // token scope, "" for /v2/
	blob   bool   // a blob: its redirects to storage are followed
}

// do sends r with whatever auth the registry asks for and follows its
// redirects. It returns a 2xx response, or an error: a *RegistryError for
// any other answer, or a transport error.
func (c *Client) do(ctx context.Context, r request) (*http.Response, error) {
	u := *c.base
	u.Path = c.base.Path + r.path
	for attempt := 0; ; attempt++ {
		authz, err := c.authorization(ctx, r.scope)
		if err != nil {
			return nil, err
		}
		resp, err := c.send(ctx, r.method, &u, r.header, authz, r.blob)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode >= 200 && resp.StatusCode < 300 {
			return resp, nil
		}
		if resp.StatusCode == http.StatusUnauthorized && attempt == 0 && sameOrigin(resp.Request.URL, c.base) {
			cs := parseChallenges(resp.Header.Values("Www-Authenticate"))
			if c.learn(cs, r.scope, authz) {
				drain(resp)
				continue
			}
		}
		return nil, c.answerError(resp)
	}
}

// answerError turns a non-2xx response into a *RegistryError, consuming
// and closing the body.
func (c *Client) answerError(resp *http.Response) error {
	defer resp.Body.Close()
	var details []ErrorDetail
	if resp.Request == nil || resp.Request.Method != http.MethodHead {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody+1))
		details = parseErrorBody(body)
	}
	return &RegistryError{Status: resp.StatusCode, Errors: details, kind: classify(resp.StatusCode, details)}
}

// learn takes in the challenges of a 401 and reports whether asking again
// can help: a new challenge, or a token that may just have expired.
func (c *Client) learn(cs []challenge, scope, used string) bool {
	ch, ok := bearerChallenge(cs)
	if !ok {
		if !hasScheme(cs, "basic") {
			return false
		}
		ch = challenge{scheme: "basic", params: map[string]string{}}
	}
	c.mu.Lock()
	prev := c.challenge
	c.challenge = &ch
	if ch.scheme == "bearer" {
		delete(c.tokens, tokenKey(ch, scope))
	}
	c.mu.Unlock()
	switch ch.scheme {
	case "basic":
		// Only helps if we have credentials and did not send them.
		return c.mode == AuthBasic && used == ""
	default:
		if used == "" || prev == nil || !sameChallenge(*prev, ch) {
			return true
		}
		// The token we sent was refused: one more try with a fresh one.
		return strings.HasPrefix(used, "Bearer ")
	}
}

func sameChallenge(a, b challenge) bool {
	return a.scheme == b.scheme && a.params["realm"] == b.params["realm"] && a.params["service"] == b.params["service"]
}

// authorization returns the Authorization header for a request in scope,
// from what the registry asked before: nothing, basic credentials, or a
// bearer token (fetched now if none is cached).
func (c *Client) authorization(ctx context.Context, scope string) (string, error) {
	c.mu.Lock()
	ch := c.challenge
	c.mu.Unlock()
	if ch == nil {
		return "", nil
	}
	switch ch.scheme {
	case "basic":
		if c.mode != AuthBasic {
			return "", nil
		}
		return "Basic " + basicAuth(c.user, c.pass), nil
	case "bearer":
		tok, err := c.token(ctx, *ch, scope)
		if err != nil {
			return "", err
		}
		return "Bearer " + tok.Reveal(), nil
	}
	return "", nil
}

func basicAuth(user, pass secret.Value) string {
	return base64.StdEncoding.EncodeToString([]byte(user.Reveal() + ":" + pass.Reveal()))
}

// send makes one request. With follow (blob requests only), it follows
// redirects by hand, at most maxRedirects, where redirectTarget allows;
// the Authorization header goes along only while the request stays on the
// registry's own scheme and host. Without follow, a redirect is an error.
func (c *Client) send(ctx context.Context, method string, u *url.URL, header http.Header, authz string, follow bool) (*http.Response, error) {
	origin := u
	cur := u
	hc := c.hc
	for hop := 0; ; hop++ {
		req, err := http.NewRequestWithContext(ctx, method, cur.String(), nil)
		if err != nil {
			return nil, fmt.Errorf("%w: %s %s: %w", ErrInvalid, method, safeURL(cur), err)
		}
		for k, v := range header {
			req.Header[k] = v
		}
		// No transparent gzip: bodies are content-addressed bytes.
		req.Header.Set("Accept-Encoding", "identity")
		if authz != "" && sameOrigin(cur, origin) {
			req.Header.Set("Authorization", authz)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return nil, transportError(ctx, method+" "+safeURL(cur), redactError(err))
		}
		switch resp.StatusCode {
		case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
			http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		default:
			return resp, nil
		}
		loc := resp.Header.Get("Location")
		drain(resp)
		if !follow {
			return nil, fmt.Errorf("%w: %s %s: answered %d: redirects are followed for blobs only", ErrUpstreamUnavailable, method, safeURL(cur), resp.StatusCode)
		}
		if hop >= maxRedirects {
			return nil, fmt.Errorf("%w: %s %s: more than %d redirects", ErrUpstreamUnavailable, method, safeURL(origin), maxRedirects)
		}
		next, own, err := redirectTarget(c.base, cur, loc)
		if err != nil {
			c.log.Warn("refused a redirect", "from", safeURL(cur), "err", err)
			return nil, fmt.Errorf("%w: %s %s: %w", ErrUpstreamUnavailable, method, safeURL(cur), err)
		}
		hc = c.hc
		if !own {
			hc = c.hop()
		}
		c.log.Debug("following redirect", "from", safeURL(cur), "to", safeURL(next), "credentials", authz != "" && sameOrigin(next, origin))
		cur = next
	}
}

// sameOrigin reports whether a and b share scheme and host:port.
func sameOrigin(a, b *url.URL) bool {
	return a != nil && b != nil && strings.EqualFold(a.Scheme, b.Scheme) && strings.EqualFold(a.Host, b.Host)
}

// drain reads a little of a body we do not want, so that the connection
// can be reused, and closes it.
func drain(resp *http.Response) {
	_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
	resp.Body.Close()
}

// noFollow makes an http.Client hand redirects back instead of following.
func noFollow(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// withoutRedirects returns a copy of hc that does not follow redirects,
// since the client follows them itself to control where they lead and
// where credentials go.
func withoutRedirects(hc *http.Client) *http.Client { return rebuild(hc, nil) }

// rebuild returns a copy of hc that does not follow redirects, its
// transport wrapped by wrap (nil: kept). httpclient's clients do their
// retries in an inner http.Client, which would follow redirects on its
// own: that one is copied and stopped too, wrap applies to its transport,
// and its logger is made to drop URL queries (storage signatures).
func rebuild(hc *http.Client, wrap func(http.RoundTripper) http.RoundTripper) *http.Client {
	out := *hc
	out.CheckRedirect = noFollow
	rt, ok := hc.Transport.(*retryablehttp.RoundTripper)
	if !ok || rt.Client == nil {
		if wrap != nil {
			out.Transport = wrap(hc.Transport)
		}
		return &out
	}
	in := rt.Client
	inner := &http.Client{}
	if in.HTTPClient != nil {
		*inner = *in.HTTPClient
	}
	inner.CheckRedirect = noFollow
	if wrap != nil {
		inner.Transport = wrap(inner.Transport)
	}
	rc := &retryablehttp.Client{
		HTTPClient:      inner,
		Logger:          in.Logger,
		RetryWaitMin:    in.RetryWaitMin,
		RetryWaitMax:    in.RetryWaitMax,
		RetryMax:        in.RetryMax,
		RequestLogHook:  in.RequestLogHook,
		ResponseLogHook: in.ResponseLogHook,
		CheckRetry:      in.CheckRetry,
		Backoff:         in.Backoff,
		ErrorHandler:    in.ErrorHandler,
		PrepareRetry:    in.PrepareRetry,
	}
	if l, ok := in.Logger.(retryablehttp.LeveledLogger); ok {
		rc.Logger = redactingLogger{l}
	}
	out.Transport = &retryablehttp.RoundTripper{Client: rc}
	return &out
}

// Ping checks that the registry answers its API root; a 401 counts as an
// answer.
func (c *Client) Ping(ctx context.Context) error {
	u := *c.base
	u.Path = c.base.Path + "/v2/"
	resp, err := c.send(ctx, http.MethodGet, &u, nil, "", false)
	if err != nil {
		return err
	}
	defer drain(resp)
	if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
		return nil
	}
	return fmt.Errorf("%w: GET /v2/ answered %d", ErrUpstreamUnavailable, resp.StatusCode)
}
