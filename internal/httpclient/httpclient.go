// Package httpclient is the one constructor of outbound HTTP clients that
// every Berth component uses (release downloads, control reports, upstream
// registries): go-retryablehttp with full-jitter backoff, a capped
// Retry-After, retries only where a retry can help, and logs through slog.
package httpclient

import (
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/hashicorp/go-retryablehttp"
)

// Options tune a client; the zero value is a sane default.
type Options struct {
	// RetryMax is the number of retries after the first try (default 4).
	RetryMax int
	// WaitMin and WaitMax bound the backoff (defaults 500ms and 30s).
	WaitMin, WaitMax time.Duration
	// Timeout bounds one whole request including the body (0: none, for
	// large downloads; rely on the context).
	Timeout time.Duration
	Logger  *slog.Logger
	// Transport replaces the default transport (tests, unix sockets).
	Transport http.RoundTripper
}

// New returns a *retryablehttp.Client configured the Berth way.
func New(o Options) *retryablehttp.Client {
	c := retryablehttp.NewClient()
	c.RetryMax = 4
	if o.RetryMax > 0 {
		c.RetryMax = o.RetryMax
	}
	c.RetryWaitMin, c.RetryWaitMax = 500*time.Millisecond, 30*time.Second
	if o.WaitMin > 0 {
		c.RetryWaitMin = o.WaitMin
	}
	if o.WaitMax > 0 {
		c.RetryWaitMax = o.WaitMax
	}
	if o.Transport != nil {
		c.HTTPClient.Transport = o.Transport
	}
	c.HTTPClient.Timeout = o.Timeout
	c.CheckRetry = CheckRetry
	c.Backoff = Backoff
	c.ErrorHandler = retryablehttp.PassthroughErrorHandler
	if o.Logger != nil {
		c.Logger = leveled{o.Logger.With("component", "http")}
	} else {
		c.Logger = nil
	}
	return c
}

// NewStandard returns New's client as a plain *http.Client, for libraries
// that take one.
func NewStandard(o Options) *http.Client { return New(o).StandardClient() }

// retryable are the statuses where the server asks to come back later.
var retryable = map[int]bool{
	http.StatusTooManyRequests:    true,
	http.StatusBadGateway:         true,
	http.StatusServiceUnavailable: true,
	http.StatusGatewayTimeout:     true,
}

// CheckRetry retries network errors and 429/502/503/504, nothing else: a
// 500 or a 4xx will not change by asking again, and TLS or URL errors never.
func CheckRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			var cert x509.UnknownAuthorityError
			if errors.As(uerr.Err, &cert) {
				return false, err
			}
			var inv x509.CertificateInvalidError
			if errors.As(uerr.Err, &inv) {
				return false, err
			}
		}
		return true, nil
	}
	return retryable[resp.StatusCode], nil
}

// maxRetryAfter caps a server's Retry-After so a bad header cannot park an
// agent for hours.
const maxRetryAfter = 5 * time.Minute

// Backoff is full jitter (a random wait between min and the exponential
// bound), so that thousands of agents do not retry in lockstep; a
// Retry-After header from a 429 or 503 is honoured, capped.
func Backoff(min, max time.Duration, attempt int, resp *http.Response) time.Duration {
	if resp != nil && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) {
		if d, ok := retryAfter(resp.Header.Get("Retry-After")); ok {
			return d
		}
	}
	bound := min << min64(attempt, 30)
	if bound > max || bound <= 0 {
		bound = max
	}
	if bound <= min {
		return min
	}
	return min + rand.N(bound-min)
}

func min64(a, b int) uint {
	if a < b {
		return uint(a)
	}
	return uint(b)
}

func retryAfter(h string) (time.Duration, bool) {
	if h == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(h); err == nil && s >= 0 {
		return min(time.Duration(s)*time.Second, maxRetryAfter), true
	}
	if t, err := http.ParseTime(h); err == nil {
		return min(max(time.Until(t), 0), maxRetryAfter), true
	}
	return 0, false
}

// leveled adapts slog to retryablehttp's LeveledLogger.
type leveled struct{ l *slog.Logger }

func (l leveled) Error(msg string, kv ...any) { l.l.Error(msg, kv...) }
func (l leveled) Info(msg string, kv ...any)  { l.l.Debug(msg, kv...) }
func (l leveled) Debug(msg string, kv ...any) { l.l.Debug(msg, kv...) }
func (l leveled) Warn(msg string, kv ...any)  { l.l.Warn(msg, kv...) }
