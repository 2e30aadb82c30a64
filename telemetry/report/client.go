package report

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
	"sync"
	"time"

	"github.com/berthhq/berth/internal/clip"

	"github.com/hashicorp/go-retryablehttp"
	"github.com/klauspost/compress/gzip"

	"github.com/berthhq/berth/control/wire"
	"github.com/berthhq/berth/internal/buildinfo"
	"github.com/berthhq/berth/internal/httpclient"
)

// ClientOptions wire a Client.
type ClientOptions struct {
	// URL is control.url, the endpoint's base; each client adds its path.
	URL string
	// Tokens gives the bearer token; nil sends none.
	Tokens TokenSource
	// HTTP replaces the default client (NewHTTPClient with no logger).
	HTTP *retryablehttp.Client
	// UserAgent defaults to berth-agent/<version>.
	UserAgent string
	Logger    *slog.Logger
}

// Client posts batches to the control endpoint. It keeps no state between
// calls beyond its options, so one process may hold thousands (the load
// generator simulates a fleet this way) and share one HTTP client between
// them.
type Client struct {
	url    string
	tokens TokenSource
	http   *retryablehttp.Client
	ua     string
	log    *slog.Logger
}

// NewClient returns a Client of o.URL, which must be an http(s) URL.
func NewClient(o ClientOptions) (*Client, error) {
	o, base, err := o.Resolve(NewHTTPClient)
	if err != nil {
		return nil, err
	}
	return &Client{
		url:    base + wire.ReportsPath,
		tokens: o.Tokens,
		http:   o.HTTP,
		ua:     o.UserAgent,
		log:    o.Logger.With("component", "report"),
	}, nil
}

// Resolve checks o.URL and fills in o's defaults, newHTTP making the HTTP
// client when none is given, and returns o with the URL's base (no
// trailing slash). The agent's other clients of control (the desired
// state's) resolve their options here too, so that every call to control
// carries the same token source, user agent and URL rules.
func (o ClientOptions) Resolve(newHTTP func(*slog.Logger) *retryablehttp.Client) (ClientOptions, string, error) {
	u, err := url.Parse(o.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return o, "", fmt.Errorf("control.url %q is not an http(s) URL; give the endpoint's base, such as https://control.example:8443", o.URL)
	}
	if o.Tokens == nil {
		o.Tokens = NoToken{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.HTTP == nil {
		o.HTTP = newHTTP(o.Logger)
	}
	if o.UserAgent == "" {
		o.UserAgent = "berth-agent/" + buildinfo.Version
	}
	return o, strings.TrimSuffix(o.URL, "/"), nil
}

// NewHTTPClient returns the HTTP client a Client uses by default: the one
// retryablehttp constructor of internal/httpclient, with a 30 s bound per
// attempt and two quick retries for network errors and 502/504 from a
// proxy in between. 429 and 503 are not retried here but returned: the
// Reporter owns the longer wait they ask for, so that Retry-After is
// honoured (and capped) in one place, and a batch is not held for minutes
// inside one call.
func NewHTTPClient(log *slog.Logger) *retryablehttp.Client {
	c := httpclient.New(httpclient.Options{RetryMax: 2, WaitMin: 250 * time.Millisecond, WaitMax: 2 * time.Second, Timeout: 30 * time.Second, Logger: log})
	c.CheckRetry = func(ctx context.Context, resp *http.Response, err error) (bool, error) {
		if resp != nil && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) {
			return false, nil
		}
		return httpclient.CheckRetry(ctx, resp, err)
	}
	return c
}

// StatusError is the endpoint's refusal of a batch: its status, its
// wire.Error, and the Retry-After it asked for (0 when none).
type StatusError struct {
	Status     int
	Code       string
	Message    string
	RetryAfter time.Duration
}

// Error says the status and the endpoint's code and message.
func (e *StatusError) Error() string {
	msg := fmt.Sprintf("control endpoint answered %d %s", e.Status, http.StatusText(e.Status))
	if e.Code != "" || e.Message != "" {
		msg += ": " + (&wire.Error{Code: e.Code, Message: e.Message}).Error()
	}
	return msg
}

// Permanent reports whether sending the same batch again cannot succeed:
// every 4xx but 408 (timeout) and 429 (rate limited).
func (e *StatusError) Permanent() bool {
	return e.Status >= 400 && e.Status < 500 && e.Status != http.StatusRequestTimeout && e.Status != http.StatusTooManyRequests
}

// Invalid reports whether the endpoint refused the batch's content (400,
// 413 or 422) rather than the agent or the moment.
func (e *StatusError) Invalid() bool {
	return e.Status == http.StatusBadRequest || e.Status == http.StatusRequestEntityTooLarge || e.Status == http.StatusUnprocessableEntity
}

// gzipWriters are reused: a compressor holds hundreds of KiB of state,
// too much to allocate per batch.
var gzipWriters sync.Pool

// maxAnswer bounds how much of an answer is read.
const maxAnswer = 64 << 10

// Send posts b as gzip'd JSON and returns the endpoint's Ack. A refusal is
// a *StatusError; a 401 fetches a fresh token and tries once more before
// it is returned. Other errors are the network's or the token source's.
func (c *Client) Send(ctx context.Context, b wire.Batch) (wire.Ack, error) {
	raw, err := json.Marshal(b)
	if err != nil {
		return wire.Ack{}, fmt.Errorf("encode batch: %w", err)
	}
	var buf bytes.Buffer
	zw, _ := gzipWriters.Get().(*gzip.Writer)
	if zw == nil {
		// JSON of a heartbeat shrinks to a fifth at the fastest level;
		// higher levels buy little and cost the load generator, which
		// simulates thousands of hosts with this code, most of its CPU.
		zw, _ = gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	} else {
		zw.Reset(&buf)
	}
	_, err = zw.Write(raw)
	if err == nil {
		err = zw.Close()
	}
	gzipWriters.Put(zw)
	if err != nil {
		return wire.Ack{}, fmt.Errorf("compress batch: %w", err)
	}
	body := buf.Bytes()
	ack, err := c.post(ctx, body, false)
	var se *StatusError
	if errors.As(err, &se) && se.Status == http.StatusUnauthorized {
		c.log.Info("control endpoint refused the token; fetching a fresh one", "code", se.Code)
		ack, err = c.post(ctx, body, true)
	}
	if err != nil {
		return wire.Ack{}, err
	}
	// An Ack without an agent is taken (its UpTo still applies to this
	// batch); one naming another agent means a confused endpoint or
	// proxy, and nothing is deleted on its word.
	if ack.Agent != "" && ack.Agent != b.Agent {
		return wire.Ack{}, fmt.Errorf("control endpoint acknowledged agent %q, sent %q", ack.Agent, b.Agent)
	}
	return ack, nil
}

func (c *Client) post(ctx context.Context, body []byte, refresh bool) (wire.Ack, error) {
	tok, err := c.tokens.Token(ctx, refresh)
	if err != nil {
		return wire.Ack{}, err
	}
	// A []byte body is rewound by retryablehttp for every attempt.
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, c.url, body)
	if err != nil {
		return wire.Ack{}, fmt.Errorf("report request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Content-Encoding", "gzip")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.ua)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return wire.Ack{}, fmt.Errorf("post reports to %s: %w", c.url, err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return wire.Ack{}, fmt.Errorf("post reports to %s: read the answer: %w", c.url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return wire.Ack{}, NewStatusError(resp, answer)
	}
	var ack wire.Ack
	if err := json.Unmarshal(answer, &ack); err != nil {
		return wire.Ack{}, fmt.Errorf("post reports to %s: the answer is not an acknowledgement: %w", c.url, err)
	}
	return ack, nil
}

// NewStatusError is the refusal resp (with its body read) stands for: its
// status, its wire.Error (or the start of whatever it said) and the
// Retry-After it asked for. The desired-state client shares it.
func NewStatusError(resp *http.Response, body []byte) *StatusError {
	se := &StatusError{Status: resp.StatusCode, RetryAfter: retryAfter(resp.Header.Get("Retry-After"), time.Now())}
	var we wire.Error
	if json.Unmarshal(body, &we) == nil {
		se.Code, se.Message = we.Code, we.Message
	} else {
		se.Message = clip.String(strings.TrimSpace(string(body)), 256)
	}
	return se
}

// retryAfter reads a Retry-After header: seconds or an HTTP date. It is not
// capped here; the Reporter caps it.
func retryAfter(h string, now time.Time) time.Duration {
	if h == "" {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(h)); err == nil {
		return time.Duration(min(max(s, 0), 86400)) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil {
		return max(t.Sub(now), 0)
	}
	return 0
}
