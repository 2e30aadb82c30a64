package telemetry

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func check(name string, s Status) CheckFunc {
	return func(context.Context) Check { return Check{Name: name, Status: s} }
}

func TestAggregate(t *testing.T) {
	for _, tc := range []struct {
		statuses []Status
		want     State
		code     int
	}{
		{nil, Initializing, 503},
		{[]Status{OK, OK}, Healthy, 200},
		{[]Status{OK, Warn}, Degraded, 200},
		{[]Status{Warn, Fail, OK}, Unhealthy, 503},
		{[]Status{OK, "bogus"}, Unhealthy, 503},
	} {
		var fs []CheckFunc
		for i, s := range tc.statuses {
			fs = append(fs, check(string(rune('a'+i)), s))
		}
		h := Run(context.Background(), fs, time.Second)
		if h.State != tc.want || h.HTTPStatus() != tc.code {
			t.Errorf("%v: state %s code %d, want %s %d", tc.statuses, h.State, h.HTTPStatus(), tc.want, tc.code)
		}
		wantApp := "Unhealthy"
		if tc.code == 200 {
			wantApp = "Healthy"
		}
		if h.ApplicationHealthState != wantApp {
			t.Errorf("%v: ApplicationHealthState %s, want %s", tc.statuses, h.ApplicationHealthState, wantApp)
		}
	}
}

// A slow check is cut at the timeout instead of holding up the rest.
func TestRunBoundsSlowChecks(t *testing.T) {
	slow := func(ctx context.Context) Check {
		<-ctx.Done()
		return Check{Name: "slow", Status: Fail, Message: ctx.Err().Error()}
	}
	start := time.Now()
	h := Run(context.Background(), []CheckFunc{slow, check("fast", OK)}, 100*time.Millisecond)
	if time.Since(start) > 5*time.Second || h.State != Unhealthy {
		t.Fatalf("state %s after %v", h.State, time.Since(start))
	}
}

func TestMonitorServesHealthz(t *testing.T) {
	m := NewMonitor([]CheckFunc{check("engine", OK), check("cache", Warn)}, time.Hour)
	srv := httptest.NewServer(m)
	defer srv.Close()
	get := func() (int, Health) {
		resp, err := http.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var h Health
		if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, h
	}
	if code, h := get(); code != 503 || h.State != Initializing {
		t.Fatalf("before the first round: %d %s", code, h.State)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for m.Current().State == Initializing && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	code, h := get()
	if code != 200 || h.State != Degraded || len(h.Checks) != 2 || h.ApplicationHealthState != "Healthy" {
		t.Fatalf("after a round: %d %+v", code, h)
	}
}
