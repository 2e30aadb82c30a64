//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
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
	"github.com/berthhq/berth/internal/testenv"
	"github.com/berthhq/berth/internal/testenv/dockerd"
	"github.com/berthhq/berth/internal/testenv/secretlog"
	"github.com/berthhq/berth/packaging/tufrepo"
)

// fleetSelector is the label the three hosts of the rollout test carry.
var fleetSelector = map[string]string{"ring": "self-update"}

// suFleet is three real hosts (a launcher of su1, its agent and a real
// dockerd each, own state folders) reporting to one control server on
// SQLite that runs the rollout controller and checks versions against the
// same signed repository the hosts verify.
type suFleet struct {
	t       *testing.T
	rel     *suRig // the release side: binaries, the signed repository
	hosts   []*suRig
	svc     *rollout.Service
	store   *store.Store
	control string
}

func newSUFleet(t *testing.T) *suFleet {
	t.Helper()
	if testing.Short() {
		t.Skip("builds berth-agent, starts three dockerd")
	}
	f := &suFleet{t: t, rel: &suRig{t: t, work: t.TempDir(), bins: map[string]string{}}}
	f.rel.repo = filepath.Join(f.rel.work, "repo")
	f.rel.pub = filepath.Join(f.rel.work, "published")
	if err := tufrepo.Init(f.rel.repo); err != nil {
		t.Fatal(err)
	}
	for v, fake := range map[string]string{su1: "", su2: "", su3: "crash", su4: "hang"} {
		f.rel.build(v, fake)
	}
	// All published before control opens the metadata: an operator
	// publishes a release, then rolls it out.
	for _, v := range []string{su1, su2, su3, su4} {
		f.rel.publish(v)
	}
	f.startControl()
	for i := range 3 {
		f.hosts = append(f.hosts, f.newHost(fmt.Sprintf("su-fleet-%d", i+1)))
	}
	return f
}

// startControl runs the control server with the rollout service (a tick
// of 250 ms), as `serve --releases DIR --releases-root FILE` wires it.
func (f *suFleet) startControl() {
	t := f.t
	ctx, cancel := context.WithCancel(context.Background())
	st, err := store.Open(ctx, "sqlite://"+filepath.Join(f.rel.work, "control.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	a, err := auth.New(ctx, auth.Options{Methods: []auth.Method{auth.MethodToken}, Tokens: st})
	if err != nil {
		t.Fatal(err)
	}
	logs := &testenv.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("control's log:\n%s", testenv.Tail([]byte(logs.String()), 16<<10))
		}
	})
	rel, err := rollout.OpenReleases(ctx, f.rel.pub, filepath.Join(f.rel.repo, "metadata", "root.json"), t.TempDir(), log)
	if err != nil {
		t.Fatal(err)
	}
	f.svc = rollout.New(rollout.Options{Store: st, Releases: rel, Logger: log, Tick: 250 * time.Millisecond, Holder: "test"})
	done := make(chan error, 1)
	go func() { done <- f.svc.Run(ctx) }()
	hs := httptest.NewServer(server.New(server.Options{Store: st, Auth: a, Rollouts: f.svc, Logger: log}))
	t.Cleanup(func() {
		hs.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("rollout service: %v", err)
		}
		st.Close()
	})
	f.store, f.control = st, hs.URL
}

// newHost is one host: a watched dockerd, an agent token, agent.yaml with
// the fleet's label. Its work folder is its own, so that stopping its
// launcher kills nothing of the other hosts'.
func (f *suFleet) newHost(id string) *suRig {
	t := f.t
	host := dockerd.StartWatched(t)
	r := &suRig{t: t, work: t.TempDir(), bins: f.rel.bins, repo: f.rel.repo, pub: f.rel.pub,
		stateDir: host.Dir, hostID: id, store: f.store}
	r.writeConfig(f.control, host.Endpoint, fleetSelector)
	t.Cleanup(r.stopLauncher)
	return r
}

// writeConfig issues the host an agent token and writes its agent.yaml:
// reports to controlURL every 2 s, the watched engine at endpoint, the
// signed repository, update.healthTimeout suHealthTimeout.
func (r *suRig) writeConfig(controlURL, endpoint string, labels map[string]string) {
	r.t.Helper()
	_, tok, err := r.store.IssueToken(context.Background(), store.RoleAgent, r.hostID, time.Now())
	if err != nil {
		r.t.Fatal(err)
	}
	secretlog.For(r.t).Secret("control token", tok)
	tokFile := filepath.Join(r.work, "token")
	if err := os.WriteFile(tokFile, []byte(tok), 0o600); err != nil {
		r.t.Fatal(err)
	}
	agent := map[string]any{"id": r.hostID, "stateDir": r.stateDir}
	if labels != nil {
		agent["labels"] = labels
	}
	cfg := map[string]any{
		"agent":   agent,
		"control": map[string]any{"url": controlURL, "auth": "token", "tokenFile": tokFile, "reportInterval": "2s"},
		"engine": map[string]any{"managed": false, "endpoint": endpoint, "releases": map[string]any{
			"url": r.pub, "auth": "none", "rootFile": filepath.Join(r.repo, "metadata", "root.json"),
		}},
		"update": map[string]any{"healthTimeout": suHealthTimeout.String()},
		"cache":  map[string]any{"enabled": false},
		"health": map[string]any{"listen": testenv.FreePort(r.t)},
	}
	data, _ := json.MarshalIndent(cfg, "", "  ")
	r.config = filepath.Join(r.work, "agent.yaml")
	if err := os.WriteFile(r.config, data, 0o644); err != nil {
		r.t.Fatal(err)
	}
}

// create starts an agent rollout to v over the three hosts.
func (f *suFleet) create(v string, waves []float64, maxFailures *int) wire.Rollout {
	f.t.Helper()
	spec := wire.RolloutSpec{Selector: fleetSelector, Kind: wire.KindAgent, Version: v, Waves: waves,
		Bake: wire.Duration(2 * time.Second), MaxFailures: maxFailures, RollbackOnHalt: maxFailures != nil}.WithDefaults()
	ro, err := f.svc.Create(context.Background(), "operator", spec)
	if err != nil {
		f.t.Fatalf("create the rollout to %s: %v", v, err)
	}
	return ro
}

// waitRollout waits until the rollout is in one of the final states and
// returns it.
func (f *suFleet) waitRollout(id string, within time.Duration) wire.Rollout {
	f.t.Helper()
	deadline := time.Now().Add(within)
	for {
		ro, err := f.svc.Get(context.Background(), id)
		if err != nil {
			f.t.Fatal(err)
		}
		if ro.State != wire.RolloutRunning && ro.State != wire.RolloutPaused {
			return ro
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("rollout %s still %s after %s: hosts %v, history %s", id, ro.State, within, ro.ByState, history(ro))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func history(ro wire.Rollout) string {
	var b strings.Builder
	for _, d := range ro.History {
		fmt.Fprintf(&b, "\n  %d %s wave %d %s→%s by %s: %s", d.Seq, d.Action, d.Wave, d.From, d.To, d.Who, d.Reason)
	}
	return b.String()
}

func actionsOf(ro wire.Rollout) []string {
	var out []string
	for _, d := range ro.History {
		out = append(out, d.Action)
	}
	return out
}

// TestSelfUpdateThroughRollout is issue 11's self-update on the three
// real hosts, driven by control: an agent rollout su1 → su2 in three
// waves completes with every host on su2 and Healthy, no host switching
// before its wave; rollouts to su3 (crashes at start) and su4 (never
// Healthy) reach every host, and each host blacklists the version, is
// back on su2 within update.healthTimeout and reports why — in events
// and in its heartbeat's rejected list. Control counts each host failed
// (su3: the rejection; su4: silent for 3 report intervals, since it never
// reports), halts the rollout and rolls it back.
func TestSelfUpdateThroughRollout(t *testing.T) {
	f := newSUFleet(t)
	for _, h := range f.hosts {
		h.startLauncher()
	}
	for _, h := range f.hosts {
		h.waitReporting(su1, time.Time{}, 90*time.Second)
	}

	start := time.Now()
	ro := f.create(su2, []float64{33, 66, 100}, nil)
	f.watchWaves(ro.ID)
	ro = f.waitRollout(ro.ID, 3*time.Minute)
	want := []string{wire.ActionCreate, wire.ActionStart, wire.ActionAdvance, wire.ActionAdvance, wire.ActionComplete}
	if ro.State != wire.RolloutCompleted || !slices.Equal(actionsOf(ro), want) || ro.ByState[wire.HostHealthy] != 3 {
		t.Fatalf("rollout to %s: %s with hosts %v; history %s", su2, ro.State, ro.ByState, history(ro))
	}
	t.Logf("rollout %s → %s over 3 hosts in 3 waves completed in %s", su1, su2, time.Since(start).Round(time.Millisecond))
	for _, h := range f.hosts {
		h.waitEvent("agent.update.succeeded", map[string]string{"from": su1, "to": su2})
		if v := h.versions(); v.Launcher != su1 || v.Agent == nil || v.Agent.Version != su2 || v.Agent.Probation {
			t.Fatalf("%s: want launcher %s running agent %s (good), got %+v %+v", h.hostID, su1, su2, v, v.Agent)
		}
	}

	f.brokenRollout(su3, "crash-at-start", "exit code 3")
	f.brokenRollout(su4, "not-healthy", "not Healthy and reporting within update.healthTimeout")
}

// watchWaves follows a running rollout until it ends and fails the test
// if a host ever reports the target while its wave has not started: the
// hosts reporting the target are never more than the started waves hold.
func (f *suFleet) watchWaves(id string) {
	f.t.Helper()
	for {
		ro, err := f.svc.Get(context.Background(), id)
		if err != nil {
			f.t.Fatal(err)
		}
		started, on := startedHosts(ro), 0
		for _, h := range f.hosts {
			if got, err := f.store.Host(context.Background(), h.hostID, time.Now(), 0); err == nil && got.AgentVersion == ro.Version {
				on++
			}
		}
		// A host reporting the target after this read of the rollout
		// may belong to a wave started since: read the rollout again.
		if on > started {
			if again, _ := f.svc.Get(context.Background(), id); startedHosts(again) < on {
				f.t.Fatalf("%d hosts report %s but the started waves hold %d: %v", on, ro.Version, started, ro.WaveStatus)
			}
		}
		if ro.State != wire.RolloutRunning {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func startedHosts(ro wire.Rollout) int {
	n := 0
	for _, w := range ro.WaveStatus {
		if w.Started != nil {
			n += w.Hosts
		}
	}
	return n
}

// brokenRollout rolls v out to all three hosts at once (one wave; halt
// only when all three failed, then roll back) and checks that each host
// blacklists it with reason, says why in an event and in its heartbeat,
// and is back on su2, Healthy at control, within update.healthTimeout of
// the rollout's start; the rollout halts on the three failures and rolls
// the hosts back to su2.
func (f *suFleet) brokenRollout(v, reason, why string) {
	t := f.t
	t.Helper()
	start := time.Now()
	two := 2
	ro := f.create(v, []float64{100}, &two)
	for _, h := range f.hosts {
		bl := h.waitEvent("agent.blacklisted", map[string]string{"version": v, "reason": reason, "next": su2})
		if !strings.Contains(bl.Message, why) {
			t.Errorf("%s: agent.blacklisted event %q does not say %q", h.hostID, bl.Message, why)
		}
		fb := h.waitEvent("agent.fallback", map[string]string{"from": v, "to": su2, "reason": reason})
		// A heartbeat sent after the fallback: not one of su2's from
		// before the switch.
		back := h.waitReporting(su2, fb.Time, suHealthTimeout+30*time.Second)
		if took := back.Sub(start); took > suHealthTimeout+15*time.Second {
			t.Errorf("%s: back on %s %s after the rollout to %s started; want within the health timeout %s (+15s)", h.hostID, su2, took, v, suHealthTimeout)
		}
		t.Logf("%s: %s (%s) blacklisted, back on %s and Healthy at control %s after the rollout started", h.hostID, v, reason, su2, back.Sub(start).Round(time.Millisecond))
		got, err := f.store.Host(context.Background(), h.hostID, time.Now(), 0)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(got.Rejected, func(r wire.Rejected) bool {
			return r.Kind == wire.KindAgent && r.Version == v && r.Reason == wire.RejectedBlacklisted && strings.Contains(r.Message, reason)
		}) {
			t.Errorf("%s: control's host has no rejected entry for agent %s blacklisted (%s): %+v", h.hostID, v, reason, got.Rejected)
		}
	}
	ro = f.waitRollout(ro.ID, time.Minute)
	want := []string{wire.ActionCreate, wire.ActionStart, wire.ActionHalt, wire.ActionRollback}
	if ro.State != wire.RolloutRolledBack || !slices.Equal(actionsOf(ro), want) || ro.ByState[wire.HostRolledBack] != 3 {
		t.Fatalf("rollout to broken %s: %s with hosts %v; history %s", v, ro.State, ro.ByState, history(ro))
	}
	for _, h := range f.hosts {
		d, _, err := f.svc.Desired(context.Background(), h.hostID)
		if err != nil || d.Agent == nil || d.Agent.Version != su2 {
			t.Errorf("%s: desired after the rollback: %+v %v; want agent %s", h.hostID, d.Agent, err, su2)
		}
		if ver := h.versions(); ver.Agent == nil || ver.Agent.Version != su2 || ver.Agent.Probation {
			t.Errorf("%s: after %s failed: want %s running (good), got %+v", h.hostID, v, su2, ver.Agent)
		}
	}
}
