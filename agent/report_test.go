package agent

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/berthhq/berth/agent/config"
	"github.com/berthhq/berth/control/wire"
	"github.com/berthhq/berth/engine"
	"github.com/berthhq/berth/internal/hostid"
	"github.com/berthhq/berth/internal/units"
	"github.com/berthhq/berth/telemetry/report"
)

// The daemon reports: the agent id from IMDS, an agent.started event, an
// engine event from the manager, and heartbeats with the Monitor's checks
// and the agent's labels; and Run returns promptly when its context ends
// (SIGTERM).
func TestAgentReports(t *testing.T) {
	imds := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("0A1B2C3D-0000-4000-8000-000000000001"))
	}))
	defer imds.Close()
	t.Setenv(hostid.IMDSEnv, imds.URL)

	var mu sync.Mutex
	var got []wire.Record
	var agents []string
	ctl := fakeControl(t, func(b wire.Batch) {
		mu.Lock()
		got = append(got, b.Records...)
		agents = append(agents, b.Agent)
		mu.Unlock()
	})

	cfg := config.Default()
	cfg.Agent.StateDir = t.TempDir()
	cfg.Agent.Labels = map[string]string{"pool": "blue"}
	cfg.Control = report.Config{URL: ctl.URL, Auth: "none", ReportInterval: units.Duration(200 * time.Millisecond)}
	cfg.Engine.Managed = false
	cfg.Engine.Endpoint = "unix://" + t.TempDir() + "/no-engine.sock"
	cfg.Cache.Enabled = false
	cfg.Health.Listen = "127.0.0.1:0"

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h, err := New(ctx, cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if want := "0a1b2c3d-0000-4000-8000-000000000001"; h.reporter.Agent() != want {
		t.Fatalf("AgentID = %q, want %q (from IMDS, lower-cased)", h.reporter.Agent(), want)
	}
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	engineEvents(h.reporter, h.log)(engine.Event{Kind: "upgrade-started", Flavor: "docker", From: "1.0.0", To: "1.1.0"})

	deadline := time.Now().Add(15 * time.Second)
	var started, upgrade, beat bool
	for !(started && upgrade && beat) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out: agent.started %v, engine.upgrade-started %v, heartbeat with checks %v", started, upgrade, beat)
		}
		time.Sleep(20 * time.Millisecond)
		mu.Lock()
		for _, r := range got {
			switch {
			case r.Event != nil && r.Event.Kind == "agent.started":
				started = true
			case r.Event != nil && r.Event.Kind == "engine.upgrade-started":
				upgrade = r.Event.Fields["to"] == "1.1.0" && r.Event.Fields["flavor"] == "docker"
			case r.Heartbeat != nil && len(r.Heartbeat.Checks) > 0:
				hb := r.Heartbeat
				beat = hb.Labels["pool"] == "blue" && hb.Engine.Flavor == "docker" && hb.OSBuild != "" && hb.State != "Initializing"
			}
		}
		mu.Unlock()
	}
	for _, a := range agents {
		if a != h.reporter.Agent() {
			t.Errorf("batch from agent %q, want %q", a, h.reporter.Agent())
		}
	}
	stopRun(t, cancel, done)
}

// fakeControl is a control endpoint that hands every batch to got and
// acknowledges it.
func fakeControl(t *testing.T, got func(wire.Batch)) *httptest.Server {
	t.Helper()
	ctl := httptest.NewServer(reportsHandler(got))
	t.Cleanup(ctl.Close)
	return ctl
}

// reportsHandler is POST /v1/reports: every batch handed to got and
// acknowledged.
func reportsHandler(got func(wire.Batch)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		b, err := wire.DecodeBatch(zr, 0)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		got(b)
		json.NewEncoder(w).Encode(wire.Ack{Agent: b.Agent, UpTo: b.Records[len(b.Records)-1].Seq, Stored: len(b.Records)})
	}
}

// stopRun cancels a Run and checks that it returns nil, promptly.
func stopRun(t *testing.T, cancel context.CancelFunc, done <-chan error) {
	t.Helper()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s of its context ending")
	}
}

// A heartbeat taken while the engine switches versions reports the
// version being left, so that control never sees the new version
// Unhealthy while its health gate runs; the new one once the switch is
// done.
func TestReportedEngine(t *testing.T) {
	api := &engine.APIStatus{Version: "24.0.7"}
	for _, tc := range []struct {
		name string
		st   engine.Status
		want wire.Engine
	}{
		{"settled", engine.Status{Flavor: "docker", Active: "2.0.0", Running: true, Healthy: true},
			wire.Engine{Flavor: "docker", Version: "2.0.0", Active: true, Healthy: true}},
		{"new version started, gate running", engine.Status{Flavor: "docker", Active: "2.0.0", Running: true,
			Journal: &engine.Journal{Op: "upgrade", From: "1.0.0", To: "2.0.0", Step: engine.StepStarted}},
			wire.Engine{Flavor: "docker", Version: "1.0.0", Active: true}},
		{"old version stopped", engine.Status{Flavor: "docker", Active: "1.0.0",
			Journal: &engine.Journal{Op: "upgrade", From: "1.0.0", To: "2.0.0", Step: engine.StepStopped}},
			wire.Engine{Flavor: "docker", Version: "1.0.0"}},
		{"rolling back", engine.Status{Flavor: "docker", Active: "2.0.0", API: api,
			Journal: &engine.Journal{Op: "upgrade", From: "1.0.0", To: "2.0.0", Step: engine.StepRollingBack}},
			wire.Engine{Flavor: "docker", Version: "1.0.0", Active: true}},
		{"first install under way", engine.Status{Flavor: "docker", API: api,
			Journal: &engine.Journal{Op: "install", To: "1.0.0", Step: engine.StepStarted}},
			wire.Engine{Flavor: "docker", Active: true}},
		{"an engine Berth does not manage", engine.Status{Flavor: "docker", API: api, Healthy: true},
			wire.Engine{Flavor: "docker", Version: "24.0.7", Active: true, Healthy: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := reportedEngine(tc.st); got != tc.want {
				t.Errorf("reportedEngine = %+v, want %+v", got, tc.want)
			}
		})
	}
}
