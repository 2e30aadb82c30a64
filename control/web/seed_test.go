package web

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/berthhq/berth/control/store"
	"github.com/berthhq/berth/control/wire"
)

// openStore opens a fresh SQLite store private to the test.
func openStore(t testing.TB) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), "sqlite://"+filepath.Join(t.TempDir(), "berth.db"), store.Options{})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// seedHost describes one host for seed: a heartbeat received at Received,
// then its events.
type seedHost struct {
	ID       string
	State    string
	Flavor   string
	Engine   string
	Agent    string
	Labels   map[string]string
	Checks   []wire.Check
	Events   []wire.Event
	Received time.Time
	// Interval is the report interval; 0 means 10 s.
	Interval time.Duration
	// Before are the states of earlier heartbeats, oldest first, one
	// interval apart, for the health history.
	Before []string
}

// ingest sends h to the store as one batch starting at seq.
func ingest(t testing.TB, st *store.Store, h seedHost, seq uint64) uint64 {
	t.Helper()
	iv := h.Interval
	if iv == 0 {
		iv = 10 * time.Second
	}
	at := h.Received.Add(-time.Second)
	b := wire.Batch{Agent: h.ID}
	for i, state := range h.Before {
		b.Records = append(b.Records, wire.Record{Seq: seq, Kind: wire.KindHeartbeat,
			Time: at.Add(-time.Duration(len(h.Before)-i) * iv),
			Heartbeat: &wire.Heartbeat{State: state, Engine: wire.Engine{Flavor: h.Flavor, Version: h.Engine},
				AgentVersion: h.Agent, Labels: h.Labels, IntervalSeconds: int64(iv / time.Second)}})
		seq++
	}
	b.Records = append(b.Records, wire.Record{Seq: seq, Kind: wire.KindHeartbeat, Time: at, Heartbeat: &wire.Heartbeat{
		State:           h.State,
		Checks:          h.Checks,
		Engine:          wire.Engine{Flavor: h.Flavor, Version: h.Engine, Active: h.State != "Unhealthy", Healthy: h.State == "Healthy"},
		AgentVersion:    h.Agent,
		Labels:          h.Labels,
		OSBuild:         "Debian 12",
		IntervalSeconds: int64(iv / time.Second),
		Cache:           map[string]float64{"hits": 41, "misses": 3},
	}})
	for i, e := range h.Events {
		seq++
		e := e
		b.Records = append(b.Records, wire.Record{Seq: seq, Kind: wire.KindEvent, Time: at.Add(time.Duration(i+1) * time.Millisecond), Event: &e})
	}
	if _, err := st.Ingest(context.Background(), b, h.Received); err != nil {
		t.Fatalf("ingest %s: %v", h.ID, err)
	}
	return seq + 1
}

// fleet is the test fleet: every state, two engine flavours and versions,
// two agent versions, and one host whose reports are hostile markup.
func fleet(now time.Time) []seedHost {
	ok := func(name string) wire.Check {
		return wire.Check{Name: name, Status: "ok", Time: now.Add(-2 * time.Second)}
	}
	return []seedHost{
		{
			ID: "h-canary-1", State: "Healthy", Flavor: "docker", Engine: "27.3.1", Agent: "0.4.0",
			Labels:   map[string]string{"ring": "canary", "region": "westeurope"},
			Checks:   []wire.Check{ok("engine"), ok("cache")},
			Received: now.Add(-12 * time.Second),
		},
		{
			ID: "h-prod-2", State: "Degraded", Flavor: "containerd", Engine: "1.7.22", Agent: "0.4.0",
			Labels:   map[string]string{"ring": "prod", "region": "northeurope"},
			Checks:   []wire.Check{ok("engine"), {Name: "cache", Status: "warn", Message: "blob tier slow: 2.1 s", Time: now.Add(-3 * time.Second)}},
			Received: now.Add(-4 * time.Second),
		},
		{
			ID: "h-prod-3", State: "Unhealthy", Flavor: "docker", Engine: "27.3.1", Agent: "0.3.9",
			Before: []string{"Healthy", "Healthy", "Degraded", "Unhealthy"},
			Labels: map[string]string{"ring": "prod", "region": "westeurope"},
			Checks: []wire.Check{
				{Name: "engine", Status: "fail", Message: "dockerd is not answering on its socket", Time: now.Add(-6 * time.Second)},
				ok("cache"),
			},
			Events: []wire.Event{
				{Kind: "engine.upgrade.started", Message: "upgrading docker to 27.3.1", Fields: map[string]string{"from": "26.1.4", "to": "27.3.1"}},
				{Kind: "engine.restart.failed", Message: "dockerd exited with status 1", Fields: map[string]string{"attempt": "3"}},
			},
			Received: now.Add(-7 * time.Second),
		},
		{
			ID: "h-gone-4", State: "Healthy", Flavor: "docker", Engine: "26.1.4", Agent: "0.3.9",
			Labels:   map[string]string{"ring": "prod"},
			Checks:   []wire.Check{ok("engine")},
			Received: now.Add(-10 * time.Minute),
		},
		{
			ID: "h-evil-5", State: "Initializing", Flavor: "docker", Engine: "27.3.1", Agent: "0.4.0",
			Labels:   map[string]string{"team": "<script>alert(1)</script>", "x\"><b>": "y"},
			Checks:   []wire.Check{{Name: "engine", Status: "warn", Message: "<img src=x onerror=alert(2)>", Time: now.Add(-time.Second)}},
			Events:   []wire.Event{{Kind: "evil", Message: "<script>alert(3)</script>", Fields: map[string]string{"k": "<svg onload=alert(4)>"}}},
			Received: now.Add(-2 * time.Second),
		},
	}
}

// seed ingests hosts and returns the store.
func seed(t testing.TB, hosts []seedHost) *store.Store {
	t.Helper()
	st := openStore(t)
	for _, h := range hosts {
		ingest(t, st, h, 1)
	}
	return st
}
