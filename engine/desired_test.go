package engine

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/berthhq/berth/telemetry"
)

func TestBackoffWait(t *testing.T) {
	top := func(n int64) int64 { return n - 1 } // the largest draw
	zero := func(int64) int64 { return 0 }
	for _, tc := range []struct {
		failures int
		jitter   func(int64) int64
		want     time.Duration
	}{
		{1, top, backoffBase - 1},
		{2, top, 2*backoffBase - 1},
		{4, top, 8*backoffBase - 1},
		{7, top, backoffMax - 1}, // 5 s · 2^6 = 320 s, capped at 5 min
		{100, top, backoffMax - 1},
		{1, zero, time.Second}, // never a busy loop
	} {
		if got := backoffWait(tc.failures, tc.jitter); got != tc.want {
			t.Errorf("backoffWait(%d) = %v, want %v", tc.failures, got, tc.want)
		}
	}
}

// A resolution that fails is tried again only after its backoff, logged
// once when it starts failing and once when it works again, and shown in
// the engine check meanwhile.
func TestDesiredBacksOffAndLogsChangesOnly(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	// No pin and no release source: every resolution fails.
	m := &Manager{o: Options{}, log: log}
	d := m.Desired("")
	d.jitter = func(n int64) int64 { return n - 1 }
	ctx := context.Background()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tries := 0
	for s := 0; s < 600; s++ { // ten minutes, asked every second
		now := t0.Add(time.Duration(s) * time.Second)
		before := d.failures
		if v := d.Version(ctx, now); v != "" {
			t.Fatalf("Version = %q with nothing to resolve from", v)
		}
		if d.failures != before {
			tries++
		}
	}
	// Waits of 5, 10, 20, 40, 80, 160 s then 300 s: 7 tries in 600 s, not 120.
	if tries > 8 {
		t.Errorf("%d resolutions in 10 minutes of failure; want the backoff to keep it under 9", tries)
	}
	if n := strings.Count(logs.String(), "cannot resolve"); n != 1 {
		t.Errorf("the failure was logged %d times, want once:\n%s", n, logs.String())
	}
	err, since, _ := d.failure()
	if err == nil || !since.Equal(t0) {
		t.Fatalf("failure() = %v since %v; want the error since %v", err, since, t0)
	}
	// It works again (a pin now resolves): one line says so, and the
	// failure is gone.
	d.pin = "1.2.3"
	d.next = time.Time{}
	if v := d.Version(ctx, t0.Add(time.Hour)); v != "1.2.3" {
		t.Fatalf("Version = %q, want 1.2.3", v)
	}
	if !strings.Contains(logs.String(), "resolved again") {
		t.Errorf("the recovery was not logged:\n%s", logs.String())
	}
	if err, _, _ := d.failure(); err != nil {
		t.Errorf("failure() = %v after a success", err)
	}
}

func TestStatusCheck(t *testing.T) {
	api := &APIStatus{Version: "24.0.7", APIVersion: "1.43"}
	for _, tc := range []struct {
		name   string
		st     Status
		err    error
		pin    string
		status telemetry.Status
		msg    string
	}{
		{"healthy", Status{Flavor: "docker", Managed: true, Running: true, Healthy: true, API: api, Active: "24.0.7"}, nil, "", telemetry.OK, "docker 24.0.7 answers"},
		{"status error", Status{}, errors.New("boom"), "", telemetry.Fail, "boom"},
		{"api down", Status{APIError: "refused"}, nil, "", telemetry.Fail, "does not answer: refused"},
		{"service stopped", Status{Managed: true, API: api}, nil, "", telemetry.Fail, "not running"},
		{"behind the pin", Status{Managed: true, Running: true, Healthy: true, API: api, Active: "24.0.6"}, nil, "24.0.7", telemetry.Warn, "runs 24.0.6, desired 24.0.7"},
		{"pin failed", Status{Managed: true, Running: true, Healthy: true, API: api, Active: "24.0.6", Failed: map[string]Failure{"24.0.7": {}}}, nil, "24.0.7", telemetry.Warn, "rolled back"},
		{"host check fails", Status{Running: true, Healthy: true, API: api, Host: []HostCheck{{Name: "hns", Status: "fail", Message: "down"}}}, nil, "", telemetry.Fail, "hns: down"},
	} {
		c := statusCheck(tc.st, tc.err, tc.pin)
		if c.Status != tc.status || !strings.Contains(c.Message, tc.msg) {
			t.Errorf("%s: %s %q; want %s containing %q", tc.name, c.Status, c.Message, tc.status, tc.msg)
		}
	}
}

func TestWithResolveFailure(t *testing.T) {
	since := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	next := since.Add(time.Minute)
	boom := errors.New("blob storage: 503")
	ok := telemetry.Check{Name: "engine", Status: telemetry.OK, Message: "docker 24.0.7 answers"}
	down := telemetry.Check{Name: "engine", Status: telemetry.Fail, Message: "engine unhealthy"}
	for _, tc := range []struct {
		name   string
		in     telemetry.Check
		err    error
		status telemetry.Status
		msg    string
	}{
		{"resolves", ok, nil, telemetry.OK, "docker 24.0.7 answers"},
		{"fails to resolve", ok, boom, telemetry.Warn, "cannot resolve the desired engine version since 2026-01-01T00:00:00Z: blob storage: 503 (next try 2026-01-01T00:01:00Z); docker 24.0.7 answers"},
		{"engine down wins", down, boom, telemetry.Fail, "engine unhealthy"},
	} {
		got := withResolveFailure(tc.in, tc.err, since, next)
		if got.Status != tc.status || got.Message != tc.msg {
			t.Errorf("%s: %s %q; want %s %q", tc.name, got.Status, got.Message, tc.status, tc.msg)
		}
	}
}
