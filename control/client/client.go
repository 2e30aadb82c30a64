// Package client is a typed client of berth-control's operator API (hosts,
// counts, forgetting a host, rollouts and pins), for the berth-control CLI and for tools that want the
// fleet without parsing JSON themselves. Errors from the server come back
// as *APIError with the status, code and message the server sent.
package client

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
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/berthhq/berth/control/wire"
	"github.com/berthhq/berth/internal/httpclient"
	"github.com/berthhq/berth/internal/secret"
)

// DefaultServer is the server the CLI talks to without --server or
// BERTH_SERVER: berth-control serve's default --listen.
const DefaultServer = "http://127.0.0.1:8080"

// maxResponseBytes bounds what the client reads of one answer: a page of
// wire.MaxLimit hosts with their checks fits with room to spare.
const maxResponseBytes = 64 << 20

// Options configure a Client.
type Options struct {
	// Server is the base URL, http(s)://HOST[:PORT][/PREFIX].
	Server string
	// Token is the operator's bearer token; "" sends none (a server
	// under --auth none).
	Token secret.Value
	// Logger receives retries; nil discards them.
	Logger *slog.Logger
	// Timeout bounds one request including retries' waits (default 30 s).
	Timeout time.Duration
	// RetryMax is the retries after a network error or a 429/502/503/504
	// (default 2: an operator at a terminal would rather see the error).
	RetryMax int
	// Transport replaces the HTTP transport (tests).
	Transport http.RoundTripper
}

// Client talks to one berth-control server.
type Client struct {
	base    *url.URL
	token   secret.Value
	http    *retryablehttp.Client
	timeout time.Duration
}

// New returns a Client of o.Server.
func New(o Options) (*Client, error) {
	if o.Server == "" {
		o.Server = DefaultServer
	}
	u, err := url.Parse(o.Server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("server URL %q: want http(s)://HOST[:PORT], for example %s", o.Server, DefaultServer)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("server URL %s: give scheme, host, port and path only (the token goes in --token-file or BERTH_TOKEN)", u.Redacted())
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	retries := o.RetryMax
	if retries <= 0 {
		retries = 2
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	hc := httpclient.New(httpclient.Options{
		RetryMax:  retries,
		WaitMin:   200 * time.Millisecond,
		WaitMax:   3 * time.Second,
		Logger:    o.Logger,
		Transport: o.Transport,
	})
	return &Client{base: u, token: o.Token, http: hc, timeout: timeout}, nil
}

// APIError is an error answer of the server: the HTTP status and the
// wire.Error it carried.
type APIError struct {
	Status  int
	Code    string
	Message string
}

// Error says the status, the code and the server's message, with a hint
// for the statuses an operator can fix (401, 403).
func (e *APIError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	hint := ""
	switch e.Status {
	case http.StatusUnauthorized:
		hint = " (pass an operator token with --token-file or BERTH_TOKEN)"
	case http.StatusForbidden:
		hint = " (use an operator token: berth-control token issue --operator NAME)"
	}
	return fmt.Sprintf("server answered %d %s: %s%s", e.Status, e.Code, msg, hint)
}

// Is makes errors.Is(err, wire.ErrNotFound) true for a 404, so callers
// need not know HTTP.
func (e *APIError) Is(target error) bool {
	return target == wire.ErrNotFound && e.Status == http.StatusNotFound
}

// Hosts returns one page of the hosts f selects.
func (c *Client) Hosts(ctx context.Context, f wire.HostFilter) (wire.HostPage, error) {
	var page wire.HostPage
	err := c.get(ctx, "/v1/hosts", HostQuery(f), &page)
	return page, err
}

// AllHosts follows the pages of f from its cursor to the last, at most
// max hosts (0: no bound), and returns them as one page.
func (c *Client) AllHosts(ctx context.Context, f wire.HostFilter, max int) (wire.HostPage, error) {
	var all wire.HostPage
	for {
		page, err := c.Hosts(ctx, f)
		if err != nil {
			return all, err
		}
		all.Hosts = append(all.Hosts, page.Hosts...)
		all.Total = page.Total
		if page.Next == "" || (max > 0 && len(all.Hosts) >= max) {
			all.Next = page.Next
			return all, nil
		}
		if page.Next == f.Cursor {
			return all, fmt.Errorf("the server returned the same cursor twice; stopping after %d hosts", len(all.Hosts))
		}
		f.Cursor = page.Next
	}
}

// Host returns one host with its newest history heartbeats and events
// (history <= 0: the server's default).
func (c *Client) Host(ctx context.Context, id string, history int) (wire.HostDetail, error) {
	var d wire.HostDetail
	if id == "" {
		return d, errors.New("no host id given")
	}
	q := url.Values{}
	if history > 0 {
		q.Set("history", strconv.Itoa(history))
	}
	err := c.get(ctx, "/v1/hosts/"+url.PathEscape(id), q, &d)
	return d, err
}

// Counts returns the fleet's hosts by state and version.
func (c *Client) Counts(ctx context.Context) (wire.Counts, error) {
	var cs wire.Counts
	err := c.get(ctx, "/v1/counts", nil, &cs)
	return cs, err
}

// Forget forgets host id (DELETE /v1/hosts/{id}): its next reports are
// taken whatever their numbers; its heartbeats and events are deleted too
// when dropHistory.
func (c *Client) Forget(ctx context.Context, id string, dropHistory bool) (wire.Forgotten, error) {
	var f wire.Forgotten
	if id == "" {
		return f, errors.New("no host id given")
	}
	var q url.Values
	if dropHistory {
		q = url.Values{"dropHistory": {"true"}}
	}
	err := c.call(ctx, http.MethodDelete, "/v1/hosts/"+url.PathEscape(id), q, &f)
	return f, err
}

// get fetches path?q into v.
func (c *Client) get(ctx context.Context, path string, q url.Values, v any) error {
	return c.call(ctx, http.MethodGet, path, q, v)
}

// call sends method path?q and decodes the answer into v.
func (c *Client) call(ctx context.Context, method, path string, q url.Values, v any) error {
	return c.send(ctx, request{method: method, path: path, query: q, retry: true}, v)
}

// request is one call of the API.
type request struct {
	method, path string
	query        url.Values
	// body, when not nil, is sent as JSON.
	body any
	// retry allows retries after a network error or a 429/5xx: true for
	// requests that do the same when repeated. A POST that creates or
	// changes a rollout is sent once: a retry after a lost answer would
	// be refused as a conflict with what the first one did.
	retry bool
}

// send sends rq and decodes a 2xx answer into v.
func (c *Client) send(ctx context.Context, rq request, v any) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	u := *c.base
	u.Path += rq.path
	u.RawPath = ""
	if len(rq.query) > 0 {
		u.RawQuery = rq.query.Encode()
	}
	var body []byte
	if rq.body != nil {
		var err error
		if body, err = json.Marshal(rq.body); err != nil {
			return fmt.Errorf("%s %s: encode the request: %w", rq.method, rq.path, err)
		}
	}
	req, err := retryablehttp.NewRequestWithContext(ctx, rq.method, u.String(), body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", rq.method, rq.path, err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token.Reveal())
	}
	var resp *http.Response
	if rq.retry {
		resp, err = c.http.Do(req)
	} else {
		// retryablehttp sets the body on each attempt; sent directly, the
		// request needs it set here.
		hr := req.Request
		if body != nil {
			hr.Body = io.NopCloser(bytes.NewReader(body))
		}
		resp, err = c.http.HTTPClient.Do(hr)
	}
	if err != nil {
		// err is a *url.Error, which names the method and the URL.
		return fmt.Errorf("%w (is berth-control serve running at %s? set --server or BERTH_SERVER)", err, c.base.Redacted())
	}
	defer resp.Body.Close()
	rd := io.LimitReader(resp.Body, maxResponseBytes)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return decodeError(resp.StatusCode, rd)
	}
	if err := json.NewDecoder(rd).Decode(v); err != nil {
		return fmt.Errorf("%s %s: decode the answer: %w", rq.method, rq.path, err)
	}
	return nil
}

// decodeError reads the server's wire.Error; a body that is not one (a
// proxy's error page) still gives the status.
func decodeError(status int, body io.Reader) error {
	data, _ := io.ReadAll(io.LimitReader(body, 64<<10))
	var we wire.Error
	if err := json.Unmarshal(data, &we); err != nil || we.Code == "" {
		we = wire.Error{Message: strings.TrimSpace(string(data))}
		if len(we.Message) > 200 {
			we.Message = we.Message[:200] + "…"
		}
	}
	return &APIError{Status: status, Code: we.Code, Message: we.Message}
}

// HostQuery is the query string that asks GET /v1/hosts for f.
func HostQuery(f wire.HostFilter) url.Values {
	q := url.Values{}
	for k, v := range f.Labels {
		q.Add("label", k+"="+v)
	}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	set("state", f.State)
	set("engineVersion", f.EngineVersion)
	set("agentVersion", f.AgentVersion)
	set("sort", f.Sort)
	set("cursor", f.Cursor)
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	return q
}

// LoadToken returns the operator token from file (trimmed; an empty file
// is an error), else env (the value of BERTH_TOKEN), else none.
func LoadToken(file, env string) (secret.Value, error) {
	if file == "" {
		return secret.Value(strings.TrimSpace(env)), nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("read the token: %w", err)
	}
	tok := strings.TrimSpace(string(data))
	if tok == "" {
		return "", fmt.Errorf("token file %s is empty: put the token berth-control token issue printed in it", file)
	}
	if strings.ContainsAny(tok, " \t\r\n") {
		return "", fmt.Errorf("token file %s holds more than one line or word; put only the token in it", file)
	}
	return secret.Value(tok), nil
}
