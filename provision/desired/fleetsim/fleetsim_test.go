package fleetsim_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"path/filepath"
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
	r, err := ro.Create(ctx, "test", spec)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the rollout to complete", func() bool {
		r, err = ro.Get(ctx, r.ID)
		return err == nil && r.State == wire.RolloutCompleted
	})
	for _, h := range f.Hosts() {
		if s := h.Status(); s.Engine != "2.0.0" || len(h.History()) < 2 {
			t.Errorf("%s: engine %s after the rollout, %d answers received", h.ID(), s.Engine, len(h.History()))
		}
	}

	broken := f.Hosts()[0]
	broken.On(wire.KindEngine, "3.0.0", fleetsim.Rejects)
	spec.Version, spec.Waves = "3.0.0", []float64{100}
	r, err = ro.Create(ctx, "test", spec)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the rollout to halt", func() bool {
		r, err = ro.Get(ctx, r.ID)
		return err == nil && r.State == wire.RolloutHalted
	})
	s := broken.Status()
	if s.Engine != "2.0.0" || len(s.Rejected) != 1 || s.Rejected[0].Version != "3.0.0" || s.Rejected[0].Reason != wire.RejectedRolledBack {
		t.Errorf("the host that rejects 3.0.0: engine %s, rejected %+v; want 2.0.0 and 3.0.0 rolled back", s.Engine, s.Rejected)
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
