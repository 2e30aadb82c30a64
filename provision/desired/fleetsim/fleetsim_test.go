package fleetsim_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthhq/berth/control/auth"
	"github.com/berthhq/berth/control/rollout"
	"github.com/berthhq/berth/control/server"
	"github.com/berthhq/berth/control/store"
	"github.com/berthhq/berth/control/wire"
	"github.com/berthhq/berth/provision/desired/fleetsim"
)

type token string

func (s token) Token(context.Context, bool) (string, error) { return string(s), nil }

// endpoint is a real control endpoint (server, store on SQLite, rollout
// controller) in this process.
func endpoint(t *testing.T) (string, *store.Store, *rollout.Service) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := store.Open(ctx, "sqlite://"+filepath.Join(t.TempDir(), "control.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	a, err := auth.New(ctx, auth.Options{Methods: []auth.Method{auth.MethodToken}, Tokens: st})
	if err != nil {
		t.Fatal(err)
	}
	ro := rollout.New(rollout.Options{Store: st, Tick: 100 * time.Millisecond, Holder: "test"})
	done := make(chan error, 1)
	go func() { done <- ro.Run(ctx) }()
	hs := httptest.NewServer(server.New(server.Options{Store: st, Auth: a, Rollouts: ro}))
	t.Cleanup(func() {
		hs.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("rollout controller: %v", err)
		}
		st.Close()
	})
	return hs.URL, st, ro
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !ok(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
	}
}

// runRollout creates a rollout of spec and waits until it is in state.
func runRollout(t *testing.T, ro *rollout.Service, spec wire.RolloutSpec, state string) wire.Rollout {
	t.Helper()
	ctx := context.Background()
	r, err := ro.Create(ctx, "test", spec)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the rollout to be "+state, func() bool {
		r, err = ro.Get(ctx, r.ID)
		return err == nil && r.State == state
	})
	return r
}

// A simulated fleet reports, is counted by a rollout, takes its target at
// once, and a host told to reject the target reports it rolled back,
// which halts the rollout and keeps the host on its version.
func TestFleetTakesARollout(t *testing.T) {
	ctx := context.Background()
	url, st, ro := endpoint(t)
	var specs []fleetsim.Spec
	for i := range 10 {
		id := fmt.Sprintf("sim-%02d", i)
		_, secret, err := st.IssueToken(ctx, store.RoleAgent, id, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		specs = append(specs, fleetsim.Spec{ID: id, Labels: map[string]string{"pool": "sim"}, Flavor: "docker", Engine: "1.0.0", Agent: "0.1.0", Tokens: token(secret)})
	}
	f, err := fleetsim.Start(ctx, fleetsim.Options{URL: url, Dir: t.TempDir(), Interval: 300 * time.Millisecond, Jitter: 50 * time.Millisecond}, specs)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Stop()
	waitFor(t, 20*time.Second, "every host to report", func() bool {
		page, err := st.Hosts(ctx, wire.HostFilter{}, time.Now())
		return err == nil && page.Total == len(specs)
	})

	spec := wire.RolloutSpec{Selector: map[string]string{"pool": "sim"}, Kind: wire.KindEngine, Flavor: "docker", Version: "2.0.0",
		Waves: []float64{50, 100}, Bake: wire.Duration(time.Second)}
	runRollout(t, ro, spec, wire.RolloutCompleted)
	for _, h := range f.Hosts() {
		if s := h.Status(); s.Engine != "2.0.0" || len(h.History()) < 2 {
			t.Errorf("%s: engine %s after the rollout, %d answers received", h.ID(), s.Engine, len(h.History()))
		}
	}

}

// startFleet issues tokens for n hosts on 1.0.0 and starts them.
func startFleet(t *testing.T, url string, st *store.Store, n int) *fleetsim.Fleet {
	t.Helper()
	var specs []fleetsim.Spec
	for i := range n {
		id := fmt.Sprintf("sim-%02d", i)
		_, secret, err := st.IssueToken(context.Background(), store.RoleAgent, id, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		specs = append(specs, fleetsim.Spec{ID: id, Labels: map[string]string{"pool": "sim"}, Flavor: "docker", Engine: "1.0.0", Agent: "0.1.0", Tokens: token(secret)})
	}
	// Heartbeats carry their interval in whole seconds: 1 s is the
	// shortest after which control counts a silent host as failed (3 of
	// them).
	f, err := fleetsim.Start(context.Background(), fleetsim.Options{URL: url, Dir: t.TempDir(), Interval: time.Second, Jitter: 50 * time.Millisecond}, specs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Stop)
	waitFor(t, 20*time.Second, "every host to report", func() bool {
		page, err := st.Hosts(context.Background(), wire.HostFilter{}, time.Now())
		return err == nil && page.Total == n
	})
	return f
}

// A host told to fail on the target fails as a real one does, and the
// rollout (no threshold: the first failure halts) halts on it: a
// rejection reported, Unhealthy on the target, or silence after it.
func TestFleetFailures(t *testing.T) {
	// seen is what the failing host runs and says afterwards.
	type seen struct {
		state, engine, agent string
		silent               bool
	}
	for _, tc := range []struct {
		name string
		how  fleetsim.Failure
		kind string
		want seen
	}{
		{"rejects an engine", fleetsim.Rejects, wire.KindEngine, seen{"Healthy", "1.0.0", "0.1.0", false}},
		{"rejects an agent", fleetsim.Rejects, wire.KindAgent, seen{"Healthy", "1.0.0", "0.1.0", false}},
		{"sickens", fleetsim.Sickens, wire.KindEngine, seen{"Unhealthy", "2.0.0", "0.1.0", false}},
		{"dies", fleetsim.Dies, wire.KindEngine, seen{"Healthy", "2.0.0", "0.1.0", true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url, st, ro := endpoint(t)
			f := startFleet(t, url, st, 4)
			bad := f.Hosts()[1]
			bad.On(tc.kind, "2.0.0", tc.how)
			spec := wire.RolloutSpec{Selector: map[string]string{"pool": "sim"}, Kind: tc.kind, Version: "2.0.0", Waves: []float64{100}, Bake: wire.Duration(5 * time.Second)}
			if tc.kind == wire.KindEngine {
				spec.Flavor = "docker"
			}
			r := runRollout(t, ro, spec, wire.RolloutHalted)
			s := bad.Status()
			if got := (seen{s.State, s.Engine, s.Agent, s.Silent}); got != tc.want {
				t.Errorf("failing host: %+v, want %+v", got, tc.want)
			}
			if tc.how == fleetsim.Rejects && (len(s.Rejected) != 1 || s.Rejected[0].Kind != tc.kind || s.Rejected[0].Version != "2.0.0") {
				t.Errorf("failing host reports rejected %+v, want %s 2.0.0", s.Rejected, tc.kind)
			}
			if !s.Told || len(bad.History()) < 2 {
				t.Errorf("failing host received %d answers, want the first and the rollout's", len(bad.History()))
			}
			if last := r.History[len(r.History)-1]; last.Action != wire.ActionHalt || !strings.Contains(last.Reason, "1 of 4 told hosts failed") {
				t.Errorf("last decision %+v, want a halt", last)
			}
		})
	}
}

// Start refuses a fleet it cannot run.
func TestStartRefuses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		o     fleetsim.Options
		specs []fleetsim.Spec
	}{
		{"no folder", fleetsim.Options{URL: "http://127.0.0.1:1"}, nil},
		{"bad url", fleetsim.Options{URL: "ftp://x", Dir: t.TempDir()}, []fleetsim.Spec{{ID: "a"}}},
		{"bad id", fleetsim.Options{URL: "http://127.0.0.1:1", Dir: t.TempDir()}, []fleetsim.Spec{{ID: "../a"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if f, err := fleetsim.Start(context.Background(), tc.o, tc.specs); err == nil {
				f.Stop()
				t.Fatal("started")
			}
		})
	}
}
