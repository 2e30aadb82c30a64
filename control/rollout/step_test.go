package rollout

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/berthhq/berth/control/store"
	"github.com/berthhq/berth/control/wire"
)

// stepWorld builds a snapshot of a rollout to engine docker 2.0.0 over
// waves 50, 100 (bake 1m) with four members, a and b in wave 0, c and d
// in wave 1, all reachable on 1.0.0 unless a case changes them.
func stepWorld(state string, wave int, states [4]string) *store.RolloutSnapshot {
	spec := wire.RolloutSpec{Selector: map[string]string{"pool": "web"}, Kind: wire.KindEngine, Flavor: "docker",
		Version: "2.0.0", Waves: []float64{50, 100}, Bake: wire.Duration(time.Minute)}
	r := store.RolloutRow{ID: "r", Spec: spec, State: state, Wave: wave, Waves: make([]store.WaveTimes, 2), Rev: 3}
	for k := 0; k <= wave; k++ {
		r.Waves[k].Started = t0
	}
	snap := &store.RolloutSnapshot{Rollout: r, LastSeq: 2}
	for i, h := range []string{"a", "b", "c", "d"} {
		f := facts("1.0.0", "Healthy", t0.Add(time.Hour))
		f.Host = h
		m := store.Member{Host: h, Hash: h, Wave: i / 2, State: states[i]}
		if states[i] != wire.HostPending {
			m.Told, m.PrevFlavor, m.PrevVersion = t0, "docker", "1.0.0"
		}
		if states[i] == wire.HostHealthy {
			f.EngineVersion, m.HealthySince = "2.0.0", t0
		}
		snap.Members = append(snap.Members, store.MemberFacts{Member: m, Facts: f})
	}
	return snap
}

func TestStep(t *testing.T) {
	now := t0.Add(time.Hour)
	P, T, H, F := wire.HostPending, wire.HostTold, wire.HostHealthy, wire.HostFailed
	for _, c := range []struct {
		name    string
		snap    *store.RolloutSnapshot
		edit    func(*store.RolloutSnapshot)
		actions []string
		state   string
		wave    int
		after   [4]string
	}{
		{"wave baked: advance and tell the next", stepWorld(wire.RolloutRunning, 0, [4]string{H, H, P, P}), nil,
			[]string{wire.ActionAdvance}, wire.RolloutRunning, 1, [4]string{H, H, T, T}},
		{"last wave baked: complete", stepWorld(wire.RolloutRunning, 1, [4]string{H, H, H, H}), nil,
			[]string{wire.ActionComplete}, wire.RolloutCompleted, 1, [4]string{H, H, H, H}},
		{"a told host holds the wave", stepWorld(wire.RolloutRunning, 0, [4]string{H, T, P, P}), nil,
			nil, wire.RolloutRunning, 0, [4]string{H, T, P, P}},
		{"a failure halts before anything else", stepWorld(wire.RolloutRunning, 0, [4]string{H, F, P, P}), nil,
			[]string{wire.ActionHalt}, wire.RolloutHalted, 0, [4]string{H, F, P, P}},
		{"halt with rollback sends the touched back", stepWorld(wire.RolloutRunning, 0, [4]string{H, F, P, P}),
			func(s *store.RolloutSnapshot) { s.Rollout.Spec.RollbackOnHalt = true },
			[]string{wire.ActionHalt, wire.ActionRollback}, wire.RolloutRolledBack, 0, [4]string{wire.HostRolledBack, wire.HostRolledBack, P, P}},
		{"paused: no decision, nobody told", stepWorld(wire.RolloutPaused, 0, [4]string{H, H, P, P}), nil,
			nil, wire.RolloutPaused, 0, [4]string{H, H, P, P}},
		{"paused: a failure waits for resume", stepWorld(wire.RolloutPaused, 0, [4]string{H, F, P, P}), nil,
			nil, wire.RolloutPaused, 0, [4]string{H, F, P, P}},
		{"an unreachable pending host does not hold the wave", stepWorld(wire.RolloutRunning, 0, [4]string{H, P, P, P}),
			func(s *store.RolloutSnapshot) { s.Members[1].Facts.LastReport = t0 },
			[]string{wire.ActionAdvance}, wire.RolloutRunning, 1, [4]string{H, P, T, T}},
		{"a pinned host is neither told nor waited for", stepWorld(wire.RolloutRunning, 0, [4]string{H, P, P, P}),
			func(s *store.RolloutSnapshot) { s.Members[1].Facts.Pin.Engine = "1.5.0" },
			[]string{wire.ActionAdvance}, wire.RolloutRunning, 1, [4]string{H, P, T, T}},
		{"within threshold the wave advances past its failure", stepWorld(wire.RolloutRunning, 0, [4]string{H, F, P, P}),
			func(s *store.RolloutSnapshot) { s.Rollout.Spec.MaxFailures = ip(1) },
			[]string{wire.ActionAdvance}, wire.RolloutRunning, 1, [4]string{H, F, T, T}},
	} {
		if c.edit != nil {
			c.edit(c.snap)
		}
		// The members as they will be: the snapshot's (kept before the
		// step takes them over), with the change's written over them.
		after := map[string]string{}
		for _, m := range c.snap.Members {
			after[m.Host] = m.State
		}
		state, wave := c.snap.Rollout.State, c.snap.Rollout.Wave
		var acts []string
		if ch := step(c.snap, now); ch != nil {
			state, wave = ch.State, ch.Wave
			for _, d := range ch.Decisions {
				acts = append(acts, d.Action)
			}
			for _, m := range ch.Members {
				after[m.Host] = m.State
			}
		}
		got := [4]string{after["a"], after["b"], after["c"], after["d"]}
		if diff := cmp.Diff(c.actions, acts); diff != "" || state != c.state || wave != c.wave || got != c.after {
			t.Errorf("%s: state %s wave %d members %v, decisions (-want +got):\n%s\nwant state %s wave %d members %v",
				c.name, state, wave, got, diff, c.state, c.wave, c.after)
		}
	}
}

// The step that ends a rollout records the final versions even when the
// last sample is younger than MinSampleGap: an ended rollout is never
// stepped again, and its chart would otherwise stop short of the end.
func TestEndingStepSamplesTheFinalVersions(t *testing.T) {
	now := t0.Add(time.Hour)
	snap := stepWorld(wire.RolloutRunning, 1, [4]string{wire.HostHealthy, wire.HostHealthy, wire.HostHealthy, wire.HostHealthy})
	snap.LastSample = &wire.VersionSample{Time: now.Add(-time.Second), Counts: map[string]int{"1.0.0": 2, "2.0.0": 2}}
	ch := step(snap, now)
	if ch == nil || ch.State != wire.RolloutCompleted {
		t.Fatalf("step = %+v; want the rollout completed", ch)
	}
	if ch.Sample == nil || ch.Sample.Counts["2.0.0"] != 4 {
		t.Errorf("sample = %+v; want the final versions (4 on 2.0.0) although the last sample is 1 s old", ch.Sample)
	}
	// While the rollout goes on, a young sample is not repeated.
	snap = stepWorld(wire.RolloutRunning, 0, [4]string{wire.HostHealthy, wire.HostTold, wire.HostPending, wire.HostPending})
	snap.LastSample = &wire.VersionSample{Time: now.Add(-time.Second), Counts: map[string]int{"1.0.0": 4}}
	if ch := step(snap, now); ch != nil && ch.Sample != nil {
		t.Errorf("sample %+v taken %v after the last; want none closer than %v while running", ch.Sample, time.Second, wire.MinSampleGap)
	}
}
