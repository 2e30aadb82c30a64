package httpclient

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

func TestRetriesOnlyWhatCanHelp(t *testing.T) {
	for _, tc := range []struct {
		status int
		want   int32 // requests the server sees
	}{
		{http.StatusServiceUnavailable, 3},
		{http.StatusTooManyRequests, 3},
		{http.StatusBadGateway, 3},
		{http.StatusInternalServerError, 1},
		{http.StatusNotFound, 1},
		{http.StatusUnauthorized, 1},
	} {
		var n atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n.Add(1)
			w.WriteHeader(tc.status)
		}))
		c := NewStandard(Options{RetryMax: 2, WaitMin: time.Millisecond, WaitMax: 2 * time.Millisecond})
		resp, err := c.Get(srv.URL)
		if err == nil {
			resp.Body.Close()
		}
		srv.Close()
		if got := n.Load(); got != tc.want {
			t.Errorf("status %d: server saw %d requests, want %d", tc.status, got, tc.want)
		}
	}
}

func TestBackoffHonoursCappedRetryAfter(t *testing.T) {
	resp := &http.Response{StatusCode: 429, Header: http.Header{"Retry-After": []string{"7"}}}
	if d := Backoff(time.Millisecond, time.Second, 1, resp); d != 7*time.Second {
		t.Errorf("Retry-After 7 gave %v", d)
	}
	resp.Header.Set("Retry-After", "999999")
	if d := Backoff(time.Millisecond, time.Second, 1, resp); d != maxRetryAfter {
		t.Errorf("huge Retry-After gave %v, want the cap %v", d, maxRetryAfter)
	}
	for attempt := range 10 {
		d := Backoff(100*time.Millisecond, time.Second, attempt, nil)
		if d < 100*time.Millisecond || d > time.Second {
			t.Errorf("attempt %d: backoff %v outside [min, max]", attempt, d)
		}
	}
}

func TestContextCancelStopsRetries(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	c := NewStandard(Options{RetryMax: 100, WaitMin: 20 * time.Millisecond, WaitMax: 20 * time.Millisecond})
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	start := time.Now()
	resp, err := c.Do(req)
	if err == nil {
		resp.Body.Close()
	}
	if time.Since(start) > 2*time.Second {
		t.Errorf("retries went on %v after the context ended", time.Since(start))
	}
}
