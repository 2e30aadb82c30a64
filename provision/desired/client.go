// Package desired is the agent's side of the desired state: what the
// control endpoint says this host should run (GET /v1/agents/{id}/desired).
//
// A Client asks once, long polling with If-None-Match and ?wait= when it
// has an ETag; it keeps no state between calls, so the load generator can
// hold one per simulated host. A Poller owns the loop of one host: jitter
// before each poll, full-jitter backoff while the endpoint fails or
// refuses, the last answer and its ETag kept in agent.db (bucket
// "desired") so that a restart knows at once what control said, and a
// signal when the answer changes.
//
// An answer is only what control asks for. Whether a version is signed for
// this host, failed here before, or is overridden by a pin is the agent's
// decision (see agent/desired.go and engine.Desired), not this package's.
package desired

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/berthhq/berth/control/wire"
	"github.com/berthhq/berth/internal/clip"
	"github.com/berthhq/berth/telemetry/report"
)

// Limits of an answer. A desired state is a few hundred bytes; anything
// near these is a confused or hostile endpoint, refused whole.
const (
	MaxAnswerBytes = 64 << 10
	MaxRollouts    = 64
	maxETagLen     = 256
)

// ErrBadAnswer: an answer the agent refuses (too large, not JSON, a
// version that is not a version, no ETag). The last good answer stays.
var ErrBadAnswer = errors.New("bad desired-state answer")

// ClientOptions wire a Client; they are the reporter's, converted, and
// resolved by report.ClientOptions.Resolve with this package's HTTP client.
type ClientOptions struct {
	// URL is control.url, the endpoint's base.
	URL string
	// Tokens gives the bearer token, the reporter's source; nil sends none.
	Tokens report.TokenSource
	// HTTP replaces NewHTTPClient's.
	HTTP *retryablehttp.Client
	// UserAgent defaults to berth-agent/<version>.
	UserAgent string
	Logger    *slog.Logger
}

// Client reads one host's desired state.
type Client struct {
	base   string
	tokens report.TokenSource
	http   *retryablehttp.Client
	ua     string
	log    *slog.Logger
}

// NewClient returns a Client of o.URL, which must be an http(s) URL.
func NewClient(o ClientOptions) (*Client, error) {
	ro, base, err := report.ClientOptions(o).Resolve(NewHTTPClient)
	if err != nil {
		return nil, err
	}
	return &Client{base: base, tokens: ro.Tokens, http: ro.HTTP, ua: ro.UserAgent, log: ro.Logger.With("component", "desired")}, nil
}

// NewHTTPClient is the Client's default: the reporter's (internal/
// httpclient's retryablehttp, two quick retries for network errors and
// 502/504; 429 and 503 come back to the Poller, which waits as long as
// they ask), with no overall timeout: a long poll lasts minutes, and each
// call bounds itself by its wait.
func NewHTTPClient(log *slog.Logger) *retryablehttp.Client {
	c := report.NewHTTPClient(log)
	c.HTTPClient.Timeout = 0
	return c
}

// Answer is one desired state as control gave it.
type Answer struct {
	Desired wire.Desired `json:"desired"`
	// ETag is the answer's entity tag, without quotes.
	ETag string `json:"etag"`
	// Time is when this host received it.
	Time time.Time `json:"time"`
}

// answerSlack is how much longer than its wait a long poll may take before
// the call gives up: the endpoint's answer after the wait, and a slow
// network.
const answerSlack = 30 * time.Second

// Get asks for agent's desired state. With etag set and wait > 0 it long
// polls: the endpoint answers when the state differs from etag, or after
// wait with 304. changed is false for a 304 and for an answer whose ETag is
// etag. A refusal is a *report.StatusError; a 401 fetches a fresh token and
// asks once more before it is returned.
func (c *Client) Get(ctx context.Context, agent, etag string, wait time.Duration) (a Answer, changed bool, err error) {
	a, changed, err = c.get(ctx, agent, etag, wait, false)
	var se *report.StatusError
	if errors.As(err, &se) && se.Status == http.StatusUnauthorized {
		c.log.Info("control endpoint refused the token for the desired state; fetching a fresh one", "code", se.Code)
		a, changed, err = c.get(ctx, agent, etag, wait, true)
	}
	return a, changed, err
}

func (c *Client) get(ctx context.Context, agent, etag string, wait time.Duration, refresh bool) (Answer, bool, error) {
	tok, err := c.tokens.Token(ctx, refresh)
	if err != nil {
		return Answer{}, false, err
	}
	u := c.base + wire.DesiredPath(url.PathEscape(agent))
	if etag != "" && wait > 0 {
		u += "?wait=" + url.QueryEscape(wait.String())
	}
	ctx, cancel := context.WithTimeout(ctx, wait+answerSlack)
	defer cancel()
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return Answer{}, false, fmt.Errorf("desired-state request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.ua)
	if etag != "" {
		req.Header.Set("If-None-Match", strconv.Quote(etag))
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return Answer{}, false, fmt.Errorf("get the desired state from %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxAnswerBytes+1))
	if err != nil {
		return Answer{}, false, fmt.Errorf("get the desired state from %s: read the answer: %w", c.base, err)
	}
	switch resp.StatusCode {
	case http.StatusNotModified:
		return Answer{}, false, nil
	case http.StatusOK:
	default:
		return Answer{}, false, report.NewStatusError(resp, body)
	}
	a, err := decodeAnswer(body, resp.Header.Get("ETag"))
	if err != nil {
		return Answer{}, false, fmt.Errorf("desired state from %s: %w", c.base, err)
	}
	return a, a.ETag != etag, nil
}

// decodeAnswer reads a 200's body and ETag. Unknown members are taken (a
// newer endpoint may say more); a value that cannot be what it claims is
// refused, and the whole answer with it.
func decodeAnswer(body []byte, etagHeader string) (Answer, error) {
	if len(body) > MaxAnswerBytes {
		return Answer{}, fmt.Errorf("%w: over %d bytes", ErrBadAnswer, MaxAnswerBytes)
	}
	etag, err := parseETag(etagHeader)
	if err != nil {
		return Answer{}, err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	var d wire.Desired
	if err := dec.Decode(&d); err != nil {
		return Answer{}, fmt.Errorf("%w: not a desired state: %v", ErrBadAnswer, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Answer{}, fmt.Errorf("%w: data after the desired state", ErrBadAnswer)
	}
	if err := validate(d); err != nil {
		return Answer{}, fmt.Errorf("%w: %v", ErrBadAnswer, err)
	}
	return Answer{Desired: d, ETag: etag}, nil
}

// parseETag takes a strong or weak entity tag and returns what is between
// its quotes. An answer without one would make every long poll return at
// once, so it is refused.
func parseETag(h string) (string, error) {
	h = strings.TrimPrefix(strings.TrimSpace(h), "W/")
	if len(h) < 3 || len(h) > maxETagLen || h[0] != '"' || h[len(h)-1] != '"' {
		return "", fmt.Errorf("%w: ETag %q is not a quoted entity tag", ErrBadAnswer, clip.String(h, 64))
	}
	tag := h[1 : len(h)-1]
	for i := 0; i < len(tag); i++ {
		if c := tag[i]; c < 0x21 || c == '"' || c == 0x7f {
			return "", fmt.Errorf("%w: ETag has byte %#x", ErrBadAnswer, c)
		}
	}
	return tag, nil
}

// validate checks the members an agent acts on.
func validate(d wire.Desired) error {
	if e := d.Engine; e != nil {
		if err := checkName(e.Flavor); err != nil {
			return fmt.Errorf("engine.flavor: %v", err)
		}
		if err := wire.CheckVersion(e.Version); err != nil {
			return fmt.Errorf("engine.version: %v", err)
		}
	}
	if a := d.Agent; a != nil {
		if err := wire.CheckVersion(a.Version); err != nil {
			return fmt.Errorf("agent.version: %v", err)
		}
	}
	if len(d.Rollouts) > MaxRollouts {
		return fmt.Errorf("rollouts: %d, over the limit of %d", len(d.Rollouts), MaxRollouts)
	}
	for i, id := range d.Rollouts {
		if err := checkName(id); err != nil {
			return fmt.Errorf("rollouts[%d]: %v", i, err)
		}
	}
	return nil
}

// checkName accepts 1 to wire.MaxIDLen of [A-Za-z0-9._-]: flavors and
// rollout ids.
func checkName(s string) error {
	if s == "" {
		return errors.New("missing")
	}
	if len(s) > wire.MaxIDLen {
		return fmt.Errorf("%d bytes, over the limit of %d", len(s), wire.MaxIDLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%q has %q at byte %d", clip.String(s, 64), rune(c), i)
		}
	}
	return nil
}
