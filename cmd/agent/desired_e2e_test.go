//go:build linux

package main

import (
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berthhq/berth/control/auth"
	"github.com/berthhq/berth/control/rollout"
	"github.com/berthhq/berth/control/server"
	"github.com/berthhq/berth/control/store"
	"github.com/berthhq/berth/control/wire"
	"github.com/berthhq/berth/internal/statedb"
	"github.com/berthhq/berth/internal/testenv"
	"github.com/berthhq/berth/internal/testenv/secretlog"
	"github.com/berthhq/berth/provision/desired"
	"github.com/berthhq/berth/telemetry/report"
)

// control is a real control endpoint in the test process: the store on
// SQLite, token auth, the rollout service and the HTTP server, as
// `berth-control serve` wires them.
type control struct {
	t    testing.TB
	st   *store.Store
	svc  *rollout.Service
	url  string
	logs *testenv.Buffer
}

// startControl starts it. Without releases (nil) the service checks no
// version against signed metadata: the stand-in for a compromised or
// misconfigured endpoint, whose word the agent must still judge.
func startControl(t testing.TB, releases rollout.Releases) *control {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs := &testenv.Buffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	st, err := store.Open(ctx, "sqlite://"+filepath.Join(t.TempDir(), "control.db"), store.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	a, err := auth.New(ctx, auth.Options{Methods: []auth.Method{auth.MethodToken}, Tokens: st, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	svc := rollout.New(rollout.Options{Store: st, Releases: releases, Logger: log, Holder: "e2e"})
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	hs := httptest.NewServer(server.New(server.Options{Store: st, Auth: a, Rollouts: svc, Logger: log}))
	t.Cleanup(func() {
		hs.CloseClientConnections()
		hs.Close()
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("rollout service: %v", err)
		}
		st.Close()
	})
	return &control{t: t, st: st, svc: svc, url: hs.URL, logs: logs}
}

// agentToken issues an agent token for id and writes it to a file.
func (c *control) agentToken(id string) string {
	c.t.Helper()
	_, secret, err := c.st.IssueToken(context.Background(), store.RoleAgent, id, time.Now())
	if err != nil {
		c.t.Fatal(err)
	}
	secretlog.For(c.t).Secret("control token", secret)
	f := filepath.Join(c.t.TempDir(), "agent.token")
	if err := os.WriteFile(f, []byte(secret+"\n"), 0o600); err != nil {
		c.t.Fatal(err)
	}
	return f
}

func (c *control) host(id string) wire.HostDetail {
	c.t.Helper()
	h, err := c.st.Host(context.Background(), id, time.Now(), wire.MaxLimit)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		c.t.Fatal(err)
	}
	return h
}

func (c *control) pin(id string, p wire.Pin) {
	c.t.Helper()
	if _, err := c.svc.Pin(context.Background(), id, "alice", p); err != nil {
		c.t.Fatalf("pin %s %+v: %v", id, p, err)
	}
}

// engineEvents counts the host's stored events of kind that went to
// version to.
func engineEvents(h wire.HostDetail, kind, to string) int {
	n := 0
	for _, e := range h.Events {
		if e.Kind == kind && e.Fields["to"] == to {
			n++
		}
	}
	return n
}

func hasRejected(h wire.HostDetail, kind, version, reason string) bool {
	return slices.ContainsFunc(h.Rejected, func(r wire.Rejected) bool {
		return r.Kind == kind && r.Version == version && r.Reason == reason
	})
}

// TestEngineFollowsControl: a real agent with its own dockerd, reporting
// to a real control endpoint, and the endpoint's desired state moving its
// engine (issue 11, item 1):
//   - without control's opinion the engine stays where it is (the
//     channel's newest, the broken C, is never tried);
//   - a pin moves it to B through the health-gated upgrade, with the
//     container kept running;
//   - a pin to the broken C is tried once, rolled back, reported as
//     rejected (rolled-back) and not retried;
//   - a pin to a version the release keys never signed (control checks
//     nothing here) is refused by the agent: reported (event and
//     not-signed), and nothing changes;
//   - unpinned, the engine stays on B;
//   - a rollout to A (one wave) moves it back and completes.
func TestEngineFollowsControl(t *testing.T) {
	b := newRig(t, verA, verB, verC)
	ctl := startControl(t, nil)
	const id = "e2e-host-1"
	b.cfg["agent"].(map[string]any)["id"] = id
	b.cfg["agent"].(map[string]any)["labels"] = map[string]string{"pool": "e2e"}
	// Heartbeats every 5 s: a rollout counts a host silent for three
	// intervals as failed, and an engine switch on a loaded machine can
	// hold a heartbeat's checks for seconds.
	b.cfg["control"] = map[string]any{"url": ctl.url, "auth": "token", "tokenFile": ctl.agentToken(id), "reportInterval": "5s"}
	b.writeConfig("")
	b.mustRun("engine", "install", verA)
	pid := b.startContainer("keep")
	logs := b.startDaemon()

	waitFor(t, 60*time.Second, "the host to report its platform", func() bool {
		h := ctl.host(id)
		return h.OS == "linux" && h.Arch != "" && h.Engine.Version == verA
	})
	// Rounds of the daemon's loop pass; without control's word nothing
	// moves, though C is the channel's newest.
	time.Sleep(8 * time.Second)
	if n := strings.Count(logs.String(), `upgrade-started`); n != 0 {
		t.Fatalf("the engine moved without control's word:\n%s", tail(logs.String(), 30))
	}

	start := time.Now()
	ctl.pin(id, wire.Pin{Engine: verB})
	waitFor(t, 3*time.Minute, "the engine on "+verB, func() bool {
		h := ctl.host(id)
		return h.Engine.Version == verB && h.Engine.Healthy && engineEvents(h, "engine.upgrade-succeeded", verB) == 1
	})
	t.Logf("pin %s → reported healthy on it: %v", verB, time.Since(start).Round(100*time.Millisecond))
	wantHealthyOn(t, b.status(), verB)
	if got := b.containerPID("keep"); got != pid {
		t.Errorf("container pid %d after the upgrade, want %d (live-restore)", got, pid)
	}

	ctl.pin(id, wire.Pin{Engine: verC})
	waitFor(t, 3*time.Minute, verC+" rolled back and reported", func() bool {
		return hasRejected(ctl.host(id), "engine", verC, wire.RejectedRolledBack)
	})
	time.Sleep(12 * time.Second) // rounds of the loop, and heartbeats
	h := ctl.host(id)
	if n := engineEvents(h, "engine.upgrade-started", verC); n != 1 {
		t.Errorf("%d upgrades to the failed %s, want 1", n, verC)
	}
	if !hasRejected(h, "engine", verC, wire.RejectedRolledBack) {
		t.Errorf("the host stopped reporting %s as rolled back: %+v", verC, h.Rejected)
	}
	wantHealthyOn(t, b.status(), verB)

	const unsigned = "20.10.24-9"
	ctl.pin(id, wire.Pin{Engine: unsigned})
	waitFor(t, time.Minute, "the unsigned version refused and reported", func() bool {
		h := ctl.host(id)
		return hasRejected(h, "engine", unsigned, wire.RejectedNotSigned) && engineEvents(h, "engine.rejected", unsigned) == 1
	})
	time.Sleep(6 * time.Second)
	h = ctl.host(id)
	if n := engineEvents(h, "engine.upgrade-started", unsigned); n != 0 {
		t.Errorf("the agent started %d upgrades to an unsigned version", n)
	}
	if hasRejected(h, "engine", verC, wire.RejectedRolledBack) {
		t.Errorf("%s is still reported rolled back after the desired version changed: %+v", verC, h.Rejected)
	}
	wantHealthyOn(t, b.status(), verB)
	if got := b.containerPID("keep"); got != pid {
		t.Errorf("container pid %d, want %d", got, pid)
	}

	// The agent version too: one not signed for this host is refused,
	// reported, never offered to self-update.
	ctl.pin(id, wire.Pin{Agent: "9.9.9"})
	waitFor(t, time.Minute, "the unsigned agent version refused and reported", func() bool {
		h := ctl.host(id)
		return hasRejected(h, "agent", "9.9.9", wire.RejectedNotSigned) && slices.ContainsFunc(h.Events, func(e wire.EventRecord) bool {
			return e.Kind == "agent.rejected" && e.Fields["version"] == "9.9.9"
		})
	})

	if _, err := ctl.svc.Unpin(context.Background(), id, "alice", ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "the refusals to clear once unpinned", func() bool {
		h := ctl.host(id)
		return !hasRejected(h, "engine", unsigned, wire.RejectedNotSigned) && !hasRejected(h, "agent", "9.9.9", wire.RejectedNotSigned)
	})
	time.Sleep(6 * time.Second)
	wantHealthyOn(t, b.status(), verB)

	// A rollout moves it too: back to A in one wave, completed once the
	// host reports A healthy for the bake time.
	r, err := ctl.svc.Create(context.Background(), "alice", wire.RolloutSpec{
		Selector: map[string]string{"pool": "e2e"}, Kind: wire.KindEngine, Flavor: "docker", Version: verA,
		Waves: []float64{100}, Bake: wire.Duration(3 * time.Second),
	}.WithDefaults())
	if err != nil {
		t.Fatal(err)
	}
	var last wire.Rollout
	if !poll(3*time.Minute, func() bool {
		if last, err = ctl.svc.Get(context.Background(), r.ID); err != nil {
			t.Fatal(err)
		}
		return last.State == wire.RolloutCompleted
	}) {
		h := ctl.host(id)
		t.Fatalf("the rollout to %s did not complete: state %s, hosts %v, history %+v; host engine %+v state %s rejected %+v\ncontrol:\n%s\nagent:\n%s",
			verA, last.State, last.ByState, last.History, h.Engine, h.State, h.Rejected, tail(ctl.logs.String(), 20), tail(logs.String(), 30))
	}
	wantHealthyOn(t, b.status(), verA)
	if got := b.containerPID("keep"); got != pid {
		t.Errorf("container pid %d after the rollout, want %d", got, pid)
	}
}

// TestDesiredClientAgainstServer: the agent's desired-state client and
// poller against the real endpoint (no engine): an answer at once, a long
// poll that ends 304 after its wait, one that ends as soon as a pin
// changes the state, another host's token refused, and the poller
// following pin and unpin.
func TestDesiredClientAgainstServer(t *testing.T) {
	ctl := startControl(t, nil)
	ctx := context.Background()
	const id, other = "e2e-host-2", "e2e-host-3"
	tokens := map[string]report.TokenSource{}
	for _, h := range []string{id, other} {
		tokens[h] = report.FileToken{Path: ctl.agentToken(h)}
		rc, err := report.NewClient(report.ClientOptions{URL: ctl.url, Tokens: tokens[h]})
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now().UTC()
		hb := &wire.Heartbeat{State: "Healthy", Engine: wire.Engine{Flavor: "docker", Version: "1.0.0", Active: true, Healthy: true},
			AgentVersion: "1.0.0", OS: "linux", Arch: "amd64", IntervalSeconds: 60}
		if _, err := rc.Send(ctx, wire.Batch{Agent: h, Records: []wire.Record{{Seq: 1, Kind: wire.KindHeartbeat, Time: now, Heartbeat: hb}}}); err != nil {
			t.Fatalf("report as %s: %v", h, err)
		}
	}
	c, err := desired.NewClient(desired.ClientOptions{URL: ctl.url, Tokens: tokens[id]})
	if err != nil {
		t.Fatal(err)
	}
	a, changed, err := c.Get(ctx, id, "", 0)
	if err != nil || !changed || a.ETag == "" || a.Desired.Engine != nil {
		t.Fatalf("first Get = %+v, %v, %v; want no opinion with an ETag", a, changed, err)
	}
	start := time.Now()
	if _, changed, err := c.Get(ctx, id, a.ETag, 2*time.Second); err != nil || changed {
		t.Fatalf("long poll with nothing changing = %v, %v; want unchanged", changed, err)
	}
	if d := time.Since(start); d < 1500*time.Millisecond || d > 10*time.Second {
		t.Errorf("long poll of 2s with nothing changing took %v", d)
	}
	pinnedAt := make(chan time.Time, 1)
	go func() {
		time.Sleep(500 * time.Millisecond)
		pinnedAt <- time.Now()
		if _, err := ctl.svc.Pin(ctx, id, "alice", wire.Pin{Engine: "1.1.0"}); err != nil {
			t.Errorf("pin: %v", err)
		}
	}()
	b, changed, err := c.Get(ctx, id, a.ETag, time.Minute)
	pinned := <-pinnedAt
	if err != nil || !changed || b.Desired.Engine == nil || b.Desired.Engine.Version != "1.1.0" || b.ETag == a.ETag {
		t.Fatalf("long poll across a pin = %+v, %v, %v", b, changed, err)
	}
	t.Logf("pin → answer of a waiting long poll: %v", time.Since(pinned).Round(time.Millisecond))
	if d := time.Since(pinned); d > 2*time.Second {
		t.Errorf("the long poll answered %v after the pin; want within 2 s", d)
	}
	_, _, err = c.Get(ctx, other, "", 0)
	var se *report.StatusError
	if !errors.As(err, &se) || se.Status != 403 {
		t.Errorf("%s's token reading %s's state: %v; want 403", id, other, err)
	}

	db, err := statedb.Open(filepath.Join(t.TempDir(), "agent.db"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := desired.New(ctx, desired.Options{Agent: id, Client: c, DB: db, Wait: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { p.Run(runCtx); close(done) }()
	defer func() { cancel(); <-done }()
	engineIs := func(v string) func() bool {
		return func() bool {
			a, ok := p.Current()
			if v == "" {
				return ok && a.Desired.Engine == nil
			}
			return ok && a.Desired.Engine != nil && a.Desired.Engine.Version == v
		}
	}
	waitFor(t, 10*time.Second, "the poller to hold the pin", engineIs("1.1.0"))
	if _, err := ctl.svc.Unpin(ctx, id, "alice", wire.KindEngine); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the poller to see the unpin", engineIs(""))
}

// TestSelfUpdateFollowsControl: the agent moves itself to the version
// control's desired state names (a pin here, as a rollout's wave does),
// through the launcher's health gate; a version the release keys never
// signed is refused and reported, and a version that crashes at start is
// blacklisted, reported as such, and the host stays on the good one.
func TestSelfUpdateFollowsControl(t *testing.T) {
	r := newSURig(t)
	for v, fake := range map[string]string{su1: "", su2: "", su3: "crash"} {
		r.build(v, fake)
	}
	r.publish(su1)
	r.publish(su2)
	r.publish(su3)
	r.startLauncher()
	r.waitReporting(su1, time.Time{}, 60*time.Second)
	pin := func(v string) {
		t.Helper()
		if _, err := r.svc.Pin(context.Background(), r.hostID, "alice", wire.Pin{Agent: v}); err != nil {
			t.Fatalf("pin agent %s: %v", v, err)
		}
	}

	start := time.Now()
	pin(su2)
	r.waitReporting(su2, start, 90*time.Second)
	t.Logf("pin agent %s → Healthy at control on it: %v", su2, time.Since(start).Round(100*time.Millisecond))
	r.waitEvent("agent.update.succeeded", map[string]string{"from": su1, "to": su2})

	pin("9.9.9")
	r.waitEvent("agent.rejected", map[string]string{"version": "9.9.9", "reason": wire.RejectedNotSigned})
	waitFor(t, 30*time.Second, "the refusal in a heartbeat", func() bool {
		h, err := r.store.Host(context.Background(), r.hostID, time.Now(), 0)
		return err == nil && slices.ContainsFunc(h.Rejected, func(x wire.Rejected) bool {
			return x.Kind == "agent" && x.Version == "9.9.9" && x.Reason == wire.RejectedNotSigned
		})
	})
	if _, ok := r.findEvent("agent.update.started", map[string]string{"to": "9.9.9"}); ok {
		t.Errorf("an update to the unsigned version started")
	}

	start = time.Now()
	pin(su3)
	r.waitEvent("agent.blacklisted", map[string]string{"version": su3, "reason": "crash-at-start"})
	r.waitReporting(su2, time.Now(), suHealthTimeout+30*time.Second)
	waitFor(t, 30*time.Second, su3+" reported blacklisted", func() bool {
		h, err := r.store.Host(context.Background(), r.hostID, time.Now(), 0)
		return err == nil && slices.ContainsFunc(h.Rejected, func(x wire.Rejected) bool {
			return x.Kind == "agent" && x.Version == su3 && x.Reason == wire.RejectedBlacklisted
		})
	})
	t.Logf("pin agent %s (crashes) → blacklisted, back on %s: %v", su3, su2, time.Since(start).Round(100*time.Millisecond))
}
