package rollout_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/berthhq/berth/control/rollout"
	"github.com/berthhq/berth/control/wire"
)

var web = map[string]string{"pool": "web"}

func engineSpec(version string) wire.RolloutSpec {
	return wire.RolloutSpec{Selector: web, Kind: wire.KindEngine, Flavor: "docker", Version: version,
		Waves: []float64{10, 50, 100}, Bake: wire.Duration(20 * time.Second)}
}

// onVersion lists the hosts of ids whose desired engine is v.
func (f *fleet) onVersion(ids []string, v string) []string {
	var out []string
	for _, id := range ids {
		if f.desiredEngine(id) == v {
			out = append(out, id)
		}
	}
	return out
}

// startedHosts is how many hosts the started waves of r hold.
func startedHosts(r wire.Rollout) int {
	n := 0
	for _, w := range r.WaveStatus {
		if w.Started != nil {
			n += w.Hosts
		}
	}
	return n
}

func TestRolloutCompletes(t *testing.T) {
	backends(t, func(t *testing.T, dsn func(testing.TB) string) {
		f := newFleet(t, dsn(t), nil)
		webs := f.add("web", 40, web, "1.0.0")
		dbs := f.add("db", 10, map[string]string{"pool": "db"}, "1.0.0")
		r := f.create(engineSpec("2.0.0"))
		if r.State != wire.RolloutRunning || r.Hosts != 40 || r.WaveStatus[0].Hosts != 4 || r.ByState[wire.HostTold] != 4 {
			t.Fatalf("after create: state %s, %d hosts, wave 1 of %d, by state %v; want running, 40, 4, 4 told", r.State, r.Hosts, r.WaveStatus[0].Hosts, r.ByState)
		}
		if got := f.onVersion(webs, "2.0.0"); len(got) != 4 {
			t.Fatalf("after create %d hosts are told 2.0.0 (%v), want the first wave's 4", len(got), got)
		}
		if got := f.onVersion(dbs, ""); len(got) != len(dbs) {
			t.Fatalf("hosts outside the selector have a desired engine: %d of %d have none", len(got), len(dbs))
		}
		for i := 0; i < 40 && r.State == wire.RolloutRunning; i++ {
			r = f.round(r.ID, 10*time.Second)
			if told := len(f.onVersion(webs, "2.0.0")); told > startedHosts(r) {
				t.Fatalf("round %d: %d hosts told 2.0.0, but the started waves hold %d", i, told, startedHosts(r))
			}
		}
		if r.State != wire.RolloutCompleted || r.ByState[wire.HostHealthy] != 40 {
			t.Fatalf("rollout %s with %v, want completed with 40 healthy; history %v", r.State, r.ByState, r.History)
		}
		want := []string{wire.ActionCreate, wire.ActionStart, wire.ActionAdvance, wire.ActionAdvance, wire.ActionComplete}
		if diff := cmp.Diff(want, actions(r)); diff != "" {
			t.Errorf("history (-want +got):\n%s", diff)
		}
		for i, d := range r.History {
			if d.Seq != i+1 {
				t.Errorf("decision %d has seq %d", i, d.Seq)
			}
		}
		if len(r.Versions) < 2 || r.Versions[len(r.Versions)-1].Counts["2.0.0"] != 40 {
			t.Errorf("version samples %v: want several, the last with 40 on 2.0.0", r.Versions)
		}
		for _, id := range webs {
			if h := f.hosts[id]; h.engine != "2.0.0" {
				t.Errorf("%s runs %s after completion", id, h.engine)
			}
		}
	})
}

func TestRolloutHaltsAndRollsBack(t *testing.T) {
	backends(t, func(t *testing.T, dsn func(testing.TB) string) {
		for _, rollback := range []bool{true, false} {
			t.Run(fmt.Sprintf("rollbackOnHalt=%v", rollback), func(t *testing.T) {
				f := newFleet(t, dsn(t), nil)
				webs := f.add("web", 40, web, "2.0.0")
				for _, h := range f.hosts {
					h.broken["3.0.0"] = true
				}
				spec := engineSpec("3.0.0")
				spec.MaxFailures, spec.RollbackOnHalt = intp(2), rollback
				r := f.create(spec)
				first := f.onVersion(webs, "3.0.0")
				for i := 0; i < 10 && r.State == wire.RolloutRunning; i++ {
					r = f.round(r.ID, 10*time.Second)
					if told := f.onVersion(webs, "3.0.0"); len(told) > 0 && !slices.Equal(told, first) {
						t.Fatalf("round %d: hosts outside the first wave told 3.0.0: %v", i, told)
					}
				}
				wantState, wantActs := wire.RolloutHalted, []string{wire.ActionCreate, wire.ActionStart, wire.ActionHalt}
				if rollback {
					wantState, wantActs = wire.RolloutRolledBack, append(wantActs, wire.ActionRollback)
				}
				if r.State != wantState || r.WaveStatus[1].Started != nil {
					t.Fatalf("rollout %s (wave 2 started %v), want %s with wave 2 never started", r.State, r.WaveStatus[1].Started, wantState)
				}
				if diff := cmp.Diff(wantActs, actions(r)); diff != "" {
					t.Errorf("history (-want +got):\n%s", diff)
				}
				f.round(r.ID, 10*time.Second)
				for _, id := range first {
					want := "3.0.0"
					if rollback {
						want = "2.0.0"
					}
					if got := f.desiredEngine(id); got != want || f.hosts[id].engine != "2.0.0" {
						t.Errorf("%s desired %q running %s, want desired %q running 2.0.0", id, got, f.hosts[id].engine, want)
					}
				}
				if _, err := f.svc.Resume(context.Background(), r.ID, "bob", ""); !errors.Is(err, rollout.ErrConflict) {
					t.Errorf("resume of a %s rollout: %v, want ErrConflict", r.State, err)
				}
			})
		}
	})
}

func TestPauseResumeAbort(t *testing.T) {
	backends(t, func(t *testing.T, dsn func(testing.TB) string) {
		ctx := context.Background()
		f := newFleet(t, dsn(t), nil)
		webs := f.add("web", 20, web, "1.0.0")
		r := f.create(engineSpec("2.0.0"))
		r, err := f.svc.Pause(ctx, r.ID, "bob", "looking at graphs")
		if err != nil || r.State != wire.RolloutPaused {
			t.Fatalf("pause: %v, state %s", err, r.State)
		}
		if _, err := f.svc.Pause(ctx, r.ID, "bob", ""); !errors.Is(err, rollout.ErrConflict) {
			t.Errorf("pause of a paused rollout: %v, want ErrConflict", err)
		}
		for i := 0; i < 6; i++ {
			r = f.round(r.ID, 10*time.Second)
		}
		if r.Wave != 0 || r.ByState[wire.HostHealthy] != 2 || len(f.onVersion(webs, "2.0.0")) != 2 {
			t.Fatalf("paused: wave %d, %v; want wave 0 with its 2 hosts healthy and nobody else told", r.Wave, r.ByState)
		}
		if r, err = f.svc.Resume(ctx, r.ID, "bob", ""); err != nil || r.State != wire.RolloutRunning {
			t.Fatalf("resume: %v, state %s", err, r.State)
		}
		r = f.round(r.ID, time.Second)
		if r.Wave != 1 || len(f.onVersion(webs, "2.0.0")) != 10 {
			t.Fatalf("resumed: wave %d, %d told; want wave 1 and 10 told", r.Wave, len(f.onVersion(webs, "2.0.0")))
		}
		if r, err = f.svc.Abort(ctx, r.ID, "carol", "wrong version"); err != nil || r.State != wire.RolloutAborted {
			t.Fatalf("abort: %v, state %s", err, r.State)
		}
		if n := r.ByState[wire.HostRolledBack]; n != 10 {
			t.Errorf("abort rolled back %d hosts, want the 10 touched", n)
		}
		r = f.round(r.ID, 10*time.Second)
		if got := f.onVersion(webs, "1.0.0"); len(got) != 10 {
			t.Errorf("after abort %d hosts desire 1.0.0, want the 10 touched", len(got))
		}
		if got := f.onVersion(webs, ""); len(got) != 10 {
			t.Errorf("after abort %d hosts have no desired engine, want the 10 never told", len(got))
		}
		want := []string{wire.ActionCreate, wire.ActionStart, wire.ActionPause, wire.ActionResume, wire.ActionAdvance, wire.ActionAbort}
		if diff := cmp.Diff(want, actions(r)); diff != "" {
			t.Errorf("history (-want +got):\n%s", diff)
		}
		if d := r.History[2]; d.Who != "bob" || d.Reason != "looking at graphs" || d.From != wire.RolloutRunning || d.To != wire.RolloutPaused {
			t.Errorf("pause decision %+v", d)
		}
		if _, err := f.svc.Abort(ctx, r.ID, "carol", ""); !errors.Is(err, rollout.ErrConflict) {
			t.Errorf("abort of an aborted rollout: %v, want ErrConflict", err)
		}
		if _, err := f.svc.Pause(ctx, "r-nope", "bob", ""); !errors.Is(err, rollout.ErrNotFound) {
			t.Errorf("pause of an unknown rollout: %v, want ErrNotFound", err)
		}
	})
}
