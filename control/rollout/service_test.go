package rollout_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/berthhq/berth/control/rollout"
	"github.com/berthhq/berth/control/wire"
)

// fakeReleases signs what its set holds, by kind/flavor/version/os/arch.
type fakeReleases map[string]bool

func (f fakeReleases) Signed(_ context.Context, kind, flavor, version, os, arch string) error {
	if !f[kind+"/"+flavor+"/"+version+"/"+os+"/"+arch] {
		return fmt.Errorf("%s %s %s for %s/%s is not in the release metadata", kind, flavor, version, os, arch)
	}
	return nil
}

func TestCreateRefuses(t *testing.T) {
	backends(t, func(t *testing.T, dsn func(testing.TB) string) {
		ctx := context.Background()
		rel := fakeReleases{"engine/docker/2.0.0/linux/amd64": true, "agent//1.1.0/linux/amd64": true}
		f := newFleet(t, dsn(t), rel)
		f.add("web", 5, web, "1.0.0")
		f.add("win", 1, map[string]string{"pool": "mixed"}, "1.0.0")
		f.hosts["win-000"].os = "windows"
		f.report("win-000")
		first := f.create(engineSpec("2.0.0"))
		agent := wire.RolloutSpec{Selector: web, Kind: wire.KindAgent, Version: "1.1.0"}
		for _, c := range []struct {
			name string
			spec wire.RolloutSpec
			want error
		}{
			{"selector matching nothing", wire.RolloutSpec{Selector: map[string]string{"pool": "none"}, Kind: wire.KindEngine, Flavor: "docker", Version: "2.0.0"}, rollout.ErrInvalid},
			{"version not signed", engineSpec("9.9.9"), rollout.ErrInvalid},
			{"not signed for a host's platform", wire.RolloutSpec{Selector: map[string]string{"pool": "mixed"}, Kind: wire.KindEngine, Flavor: "docker", Version: "2.0.0"}, rollout.ErrInvalid},
			{"bad waves", wire.RolloutSpec{Selector: web, Kind: wire.KindAgent, Version: "1.1.0", Waves: []float64{50, 20, 100}}, rollout.ErrInvalid},
			{"bake over 24h", wire.RolloutSpec{Selector: web, Kind: wire.KindAgent, Version: "1.1.0", Bake: wire.Duration(25 * time.Hour)}, rollout.ErrInvalid},
			{"overlapping the active engine rollout", engineSpec("2.0.0"), rollout.ErrConflict},
		} {
			_, err := f.svc.Create(ctx, "alice", c.spec)
			if !errors.Is(err, c.want) {
				t.Errorf("%s: %v, want %v", c.name, err, c.want)
			}
			if errors.Is(c.want, rollout.ErrInvalid) && !errors.Is(err, wire.ErrInvalidSpec) {
				t.Errorf("%s: %v is not wire.ErrInvalidSpec", c.name, err)
			}
		}
		// Another kind on the same hosts is no overlap.
		f.clock.Add(time.Second)
		if _, err := f.svc.Create(ctx, "alice", agent); err != nil {
			t.Errorf("agent rollout beside the engine one: %v", err)
		}
		list, err := f.svc.List(ctx)
		if err != nil || len(list.Rollouts) != 2 || list.Rollouts[1].ID != first.ID {
			t.Errorf("list: %v; want 2 rollouts, the engine one last (oldest)", err)
		}
		if _, err := f.svc.Get(ctx, "r-000000000000"); !errors.Is(err, rollout.ErrNotFound) {
			t.Errorf("get of an unknown rollout: %v, want ErrNotFound", err)
		}
	})
}

func TestPinsWin(t *testing.T) {
	backends(t, func(t *testing.T, dsn func(testing.TB) string) {
		ctx := context.Background()
		f := newFleet(t, dsn(t), fakeReleases{"engine/docker/2.0.0/linux/amd64": true, "engine/docker/1.5.0/linux/amd64": true, "agent//1.2.0/linux/amd64": true})
		webs := f.add("web", 10, web, "1.0.0")
		pinned := webs[0]
		if _, err := f.svc.Pin(ctx, pinned, "alice", wire.Pin{Engine: "1.5.0"}); err != nil {
			t.Fatal(err)
		}
		spec := engineSpec("2.0.0")
		spec.Waves = []float64{100}
		r := f.create(spec)
		d, tag, err := f.svc.Desired(ctx, pinned)
		want := wire.Desired{Engine: &wire.DesiredEngine{Flavor: "docker", Version: "1.5.0"}, Rollouts: []string{}}
		if err != nil || !cmp.Equal(want, d) || tag == "" {
			t.Fatalf("pinned host's desired state %+v (etag %q), %v; want %+v", d, tag, err, want)
		}
		for i := 0; i < 6 && r.State == wire.RolloutRunning; i++ {
			r = f.round(r.ID, 10*time.Second)
		}
		if r.State != wire.RolloutCompleted || r.ByState[wire.HostHealthy] != 9 || r.ByState[wire.HostPending] != 1 {
			t.Fatalf("rollout %s with %v; want completed, the pinned host left pending", r.State, r.ByState)
		}
		if f.hosts[pinned].engine != "1.5.0" {
			t.Errorf("pinned host runs %s", f.hosts[pinned].engine)
		}
		got, err := f.svc.Pin(ctx, pinned, "alice", wire.Pin{Agent: "1.2.0"})
		if err != nil || got != (wire.Pin{Engine: "1.5.0", Agent: "1.2.0"}) {
			t.Errorf("pin agent: %+v, %v", got, err)
		}
		if got, err = f.svc.Unpin(ctx, pinned, "bob", wire.KindEngine); err != nil || got != (wire.Pin{Agent: "1.2.0"}) {
			t.Errorf("unpin engine: %+v, %v", got, err)
		}
		// Unpinned, the host is a member the rollout never told: no opinion.
		if d, _, _ = f.svc.Desired(ctx, pinned); d.Engine != nil || d.Agent == nil || d.Agent.Version != "1.2.0" {
			t.Errorf("after unpin: %+v", d)
		}
		for _, c := range []struct {
			host string
			pin  wire.Pin
			want error
		}{
			{"nobody", wire.Pin{Engine: "2.0.0"}, rollout.ErrNotFound},
			{pinned, wire.Pin{Engine: "-1"}, rollout.ErrInvalid},
			{pinned, wire.Pin{}, rollout.ErrInvalid},
			{pinned, wire.Pin{Engine: "7.7.7"}, rollout.ErrInvalid},
		} {
			if _, err := f.svc.Pin(ctx, c.host, "alice", c.pin); !errors.Is(err, c.want) {
				t.Errorf("pin %s %+v: %v, want %v", c.host, c.pin, err, c.want)
			}
		}
		if _, err := f.svc.Unpin(ctx, pinned, "alice", "kernel"); !errors.Is(err, rollout.ErrInvalid) {
			t.Errorf("unpin kind kernel: %v, want ErrInvalid", err)
		}
	})
}

// TestWaitDesiredAcrossReplicas waits on one replica for a change made on
// another: the change feed wakes it well within a second.
func TestWaitDesiredAcrossReplicas(t *testing.T) {
	backends(t, func(t *testing.T, dsn func(testing.TB) string) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		db := dsn(t)
		a := newFleet(t, db, nil)
		a.add("web", 3, web, "1.0.0")
		b := rollout.New(rollout.Options{Store: openStore(t, db), Holder: "b"})
		done := make(chan error, 1)
		go func() { done <- b.Run(ctx) }()
		_, tag, err := b.Desired(ctx, "web-001")
		if err != nil {
			t.Fatal(err)
		}
		// Unchanged, it answers at the end of the wait.
		start := time.Now()
		if _, got, err := b.WaitDesired(ctx, "web-001", tag, 300*time.Millisecond); err != nil || got != tag || time.Since(start) < 300*time.Millisecond {
			t.Errorf("unchanged wait: etag %q, %v after %v", got, err, time.Since(start))
		}
		// A stale etag answers at once.
		if _, got, err := b.WaitDesired(ctx, "web-001", "old", time.Minute); err != nil || got != tag {
			t.Errorf("stale etag: %q, %v", got, err)
		}
		type res struct {
			d   wire.Desired
			tag string
			err error
			at  time.Duration
		}
		got := make(chan res, 1)
		go func() {
			d, tg, err := b.WaitDesired(ctx, "web-001", tag, 30*time.Second)
			got <- res{d, tg, err, time.Since(start)}
		}()
		time.Sleep(100 * time.Millisecond)
		start = time.Now()
		if _, err := a.svc.Pin(ctx, "web-001", "alice", wire.Pin{Agent: "1.1.0"}); err != nil {
			t.Fatal(err)
		}
		r := <-got
		if r.err != nil || r.tag == tag || r.d.Agent == nil || r.d.Agent.Version != "1.1.0" || r.at > 2*time.Second {
			t.Errorf("wait across replicas: %+v after %v; want agent 1.1.0 within 2s", r.d, r.at)
		}
		t.Logf("woken %v after the pin on the other replica", r.at)
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}
