package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/berthhq/berth/control/store"
	"github.com/berthhq/berth/control/wire"
)

// The rollout cases: pins, platform and rejected versions of hosts,
// rollouts created and changed under their revision check, the inputs
// of desired states and the feed of their changes.

// platformHB is a heartbeat with labels, a platform and a rejected version.
func platformHB(seq uint64, labels map[string]string) wire.Record {
	r := HB(seq, "Healthy")
	r.Heartbeat.Labels = labels
	r.Heartbeat.OS, r.Heartbeat.Arch = "linux", "amd64"
	r.Heartbeat.Rejected = []wire.Rejected{{Kind: wire.KindEngine, Version: "3.0.0", Reason: wire.RejectedRolledBack, Message: "unhealthy", Time: T0}}
	return r
}

func testHostPlatformAndPins(t *testing.T, s *store.Store) {
	ctx := context.Background()
	mustIngest(t, s, batch("h1", platformHB(1, map[string]string{"pool": "web"})), T0)
	d, err := s.Host(ctx, "h1", T0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if d.OS != "linux" || d.Arch != "amd64" || len(d.Rejected) != 1 || d.Rejected[0].Version != "3.0.0" || !d.Rejected[0].Time.Equal(T0) || d.Pin != nil {
		t.Errorf("host os %q arch %q rejected %+v pin %+v; want linux amd64, 3.0.0 rejected, no pin", d.OS, d.Arch, d.Rejected, d.Pin)
	}
	steps := []struct {
		name string
		do   func() (wire.Pin, error)
		want wire.Pin
	}{
		{"pin engine", func() (wire.Pin, error) { return s.SetPin(ctx, "h1", "alice", wire.Pin{Engine: "2.0.0"}, T0) }, wire.Pin{Engine: "2.0.0"}},
		{"pin agent keeps engine", func() (wire.Pin, error) { return s.SetPin(ctx, "h1", "alice", wire.Pin{Agent: "1.1.0"}, T0) }, wire.Pin{Engine: "2.0.0", Agent: "1.1.0"}},
		{"unpin engine", func() (wire.Pin, error) { return s.ClearPin(ctx, "h1", "bob", wire.KindEngine, T0) }, wire.Pin{Agent: "1.1.0"}},
	}
	for _, st := range steps {
		got, err := st.do()
		if err != nil || got != st.want {
			t.Errorf("%s: %+v, %v; want %+v", st.name, got, err, st.want)
		}
	}
	if d, _ = s.Host(ctx, "h1", T0, 0); d.Pin == nil || *d.Pin != (wire.Pin{Agent: "1.1.0"}) {
		t.Errorf("host pin %+v, want agent 1.1.0", d.Pin)
	}
	page, err := s.Hosts(ctx, wire.HostFilter{}, T0)
	if err != nil || len(page.Hosts) != 1 || page.Hosts[0].Pin == nil {
		t.Errorf("host list: %+v, %v; want h1 with its pin", page.Hosts, err)
	}
	if got, err := s.ClearPin(ctx, "h1", "bob", "", T0); err != nil || got != (wire.Pin{}) {
		t.Errorf("unpin all: %+v, %v", got, err)
	}
	if d, _ = s.Host(ctx, "h1", T0, 0); d.Pin != nil {
		t.Errorf("pin %+v after unpinning both", d.Pin)
	}
	if _, err := s.SetPin(ctx, "nobody", "alice", wire.Pin{Engine: "1"}, T0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("pin of an unknown host: %v, want ErrNotFound", err)
	}
	if _, err := s.ClearPin(ctx, "h1", "alice", "kernel", T0); !errors.Is(err, wire.ErrInvalid) {
		t.Errorf("unpin of kind kernel: %v, want ErrInvalid", err)
	}
}

// newRollout is a rollout row of kind engine over pool=web.
func newRollout(id string, created time.Time) store.RolloutRow {
	spec := wire.RolloutSpec{Selector: map[string]string{"pool": "web"}, Kind: wire.KindEngine, Flavor: "docker",
		Version: "2.0.0"}.WithDefaults()
	return store.RolloutRow{ID: id, Spec: spec, CreatedBy: "alice", Created: created, Updated: created}
}

// firstChange makes every matched host a member, told, in wave 0.
func firstChange(v store.CreateView) store.RolloutChange {
	c := store.RolloutChange{State: wire.RolloutRunning, Waves: make([]store.WaveTimes, 4)}
	c.Waves[0].Started = T0
	for _, h := range v.Hosts {
		c.Members = append(c.Members, store.Member{Host: h.Host, Hash: "h" + h.Host, State: wire.HostTold, PrevFlavor: h.Flavor, PrevVersion: h.EngineVersion, Told: T0})
		c.Notify = append(c.Notify, h.Host)
	}
	c.Decisions = []wire.Decision{{Time: T0, Who: "alice", Action: wire.ActionCreate, Wave: -1, To: wire.RolloutRunning, Reason: "r"}}
	return c
}

func testRolloutCreate(t *testing.T, s *store.Store) {
	ctx := context.Background()
	web := map[string]string{"pool": "web"}
	for _, h := range []string{"w1", "w2", "w3"} {
		mustIngest(t, s, batch(h, platformHB(1, web)), T0)
	}
	mustIngest(t, s, batch("d1", platformHB(1, map[string]string{"pool": "db"})), T0)
	hosts, err := s.MatchHosts(ctx, web)
	if err != nil || len(hosts) != 3 || hosts[0].Host != "w1" || hosts[0].OS != "linux" || hosts[0].EngineVersion != "27.1.0" {
		t.Fatalf("MatchHosts: %+v, %v", hosts, err)
	}
	var seen store.CreateView
	err = s.CreateRollout(ctx, newRollout("r1", T0), func(v store.CreateView) (store.RolloutChange, error) {
		seen = v
		return firstChange(v), nil
	})
	if err != nil || len(seen.Hosts) != 3 || len(seen.Overlap) != 0 {
		t.Fatalf("CreateRollout: %v; saw %d hosts, overlap %v", err, len(seen.Hosts), seen.Overlap)
	}
	// A second over an overlapping selection sees the first holding its hosts.
	refused := errors.New("refused")
	err = s.CreateRollout(ctx, newRollout("r2", T0.Add(time.Second)), func(v store.CreateView) (store.RolloutChange, error) {
		seen = v
		return store.RolloutChange{}, refused
	})
	if !errors.Is(err, refused) || seen.Overlap["r1"] != 3 {
		t.Errorf("overlapping create: %v, overlap %v; want the callback's error and r1 holding 3", err, seen.Overlap)
	}
	d, err := s.Rollout(ctx, "r1")
	if err != nil {
		t.Fatal(err)
	}
	if d.Row.State != wire.RolloutRunning || d.Row.Rev != 1 || d.Counts[0][wire.HostTold] != 3 || len(d.Decisions) != 1 || d.Decisions[0].Seq != 1 || !d.Row.Waves[0].Started.Equal(T0) {
		t.Errorf("rollout r1: %+v", d)
	}
	if _, err := s.Rollout(ctx, "r2"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("refused rollout r2: %v, want ErrNotFound", err)
	}
	ins, err := s.DesiredInputs(ctx, []string{"w1", "d1", "nobody"})
	if err != nil {
		t.Fatal(err)
	}
	want := []store.Membership{{Rollout: "r1", Kind: wire.KindEngine, Flavor: "docker", Version: "2.0.0", Created: T0,
		State: wire.HostTold, PrevFlavor: "docker", PrevVersion: "27.1.0"}}
	if ins["nobody"] != nil || ins["d1"] == nil || len(ins["d1"].Memberships) != 0 || ins["w1"] == nil {
		t.Fatalf("DesiredInputs: %+v", ins)
	}
	if diff := cmp.Diff(want, ins["w1"].Memberships); diff != "" {
		t.Errorf("w1 memberships (-want +got):\n%s", diff)
	}
}

func testRolloutEval(t *testing.T, s *store.Store) {
	ctx := context.Background()
	for _, h := range []string{"w1", "w2"} {
		mustIngest(t, s, batch(h, platformHB(1, map[string]string{"pool": "web"})), T0)
	}
	if err := s.CreateRollout(ctx, newRollout("r1", T0), func(v store.CreateView) (store.RolloutChange, error) {
		c := firstChange(v)
		c.Members = c.Members[:1] // w2 joins later
		return c, nil
	}); err != nil {
		t.Fatal(err)
	}
	mustIngest(t, s, batch("w3", platformHB(1, map[string]string{"pool": "web"})), T0)
	var snap *store.RolloutSnapshot
	row, err := s.EvalRollout(ctx, "r1", T0.Add(time.Second), false, func(sn *store.RolloutSnapshot) (*store.RolloutChange, error) {
		snap = sn
		return &store.RolloutChange{State: wire.RolloutPaused, Wave: 1, Waves: sn.Rollout.Waves,
			Members:   []store.Member{{Host: "w1", Hash: "hw1", Wave: 0, State: wire.HostHealthy, HealthySince: T0}},
			Decisions: []wire.Decision{{Time: T0, Who: "bob", Action: wire.ActionPause, Wave: 0, From: wire.RolloutRunning, To: wire.RolloutPaused, Reason: "why"}},
			Sample:    &wire.VersionSample{Time: T0, Counts: map[string]int{"27.1.0": 1}}}, nil
	})
	if err != nil || row.State != wire.RolloutPaused || row.Rev != 2 {
		t.Fatalf("EvalRollout: %v, row %+v", err, row)
	}
	if len(snap.Members) != 1 || snap.Members[0].Host != "w1" || !snap.Members[0].Facts.Exists || snap.Members[0].Facts.Rejected[0].Version != "3.0.0" || snap.LastSeq != 1 {
		t.Errorf("snapshot members %+v, last seq %d", snap.Members, snap.LastSeq)
	}
	if len(snap.Joiners) != 2 || snap.Joiners[0].Host != "w2" || snap.Joiners[1].Host != "w3" {
		t.Errorf("joiners %+v, want w2 and w3", snap.Joiners)
	}
	// A step taken while another is deciding: exactly one of them
	// writes (SQLite: the outer one finds the revision moved; PostgreSQL:
	// the inner one finds the lock held).
	pause := func(sn *store.RolloutSnapshot) (*store.RolloutChange, error) {
		return &store.RolloutChange{State: sn.Rollout.State, Wave: sn.Rollout.Wave, Waves: sn.Rollout.Waves,
			Decisions: []wire.Decision{{Time: T0, Who: "x", Action: wire.ActionPause, Reason: "nested"}}}, nil
	}
	var inner error
	_, outer := s.EvalRollout(ctx, "r1", T0, false, func(sn *store.RolloutSnapshot) (*store.RolloutChange, error) {
		_, inner = s.EvalRollout(ctx, "r1", T0, false, pause)
		return pause(sn)
	})
	if (outer == nil) == (inner == nil) || !errors.Is(errors.Join(outer, inner), store.ErrStale) && !errors.Is(errors.Join(outer, inner), store.ErrBusy) {
		t.Errorf("nested steps: outer %v, inner %v; want one written, the other ErrStale or ErrBusy", outer, inner)
	}
	d, err := s.Rollout(ctx, "r1")
	if err != nil {
		t.Fatal(err)
	}
	if d.Row.Wave != 1 || d.Counts[0][wire.HostHealthy] != 1 || len(d.Decisions) != 3 || d.Decisions[1].Seq != 2 || d.Decisions[1].Who != "bob" || d.Decisions[2].Seq != 3 || len(d.Samples) != 1 {
		t.Errorf("after the step: %+v", d)
	}
	if _, err := s.EvalRollout(ctx, "nope", T0, true, nil); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("EvalRollout of an unknown rollout: %v, want ErrNotFound", err)
	}
	if ids, err := s.ActiveRollouts(ctx); err != nil || len(ids) != 1 {
		t.Errorf("ActiveRollouts: %v, %v", ids, err)
	}
}

// testRolloutEvalConcurrent runs steps of one rollout from many
// goroutines, each deciding on what it read: every step is one decision,
// numbered without a gap, and the losers write nothing.
func testRolloutEvalConcurrent(t *testing.T, s *store.Store) {
	ctx := context.Background()
	mustIngest(t, s, batch("w1", platformHB(1, map[string]string{"pool": "web"})), T0)
	if err := s.CreateRollout(ctx, newRollout("r1", T0), func(v store.CreateView) (store.RolloutChange, error) { return firstChange(v), nil }); err != nil {
		t.Fatal(err)
	}
	const workers, rounds = 6, 10
	var wg sync.WaitGroup
	var mu sync.Mutex
	won := 0
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < rounds; i++ {
				_, err := s.EvalRollout(ctx, "r1", T0, i%2 == 0, func(sn *store.RolloutSnapshot) (*store.RolloutChange, error) {
					return &store.RolloutChange{State: sn.Rollout.State, Wave: sn.Rollout.Wave + 1, Waves: sn.Rollout.Waves,
						Decisions: []wire.Decision{{Time: T0, Who: "w", Action: wire.ActionAdvance, Wave: sn.Rollout.Wave + 1, Reason: fmt.Sprint(sn.Rollout.Wave + 1)}}}, nil
				})
				switch {
				case err == nil:
					mu.Lock()
					won++
					mu.Unlock()
				case !errors.Is(err, store.ErrStale) && !errors.Is(err, store.ErrBusy):
					t.Errorf("EvalRollout: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	d, err := s.Rollout(ctx, "r1")
	if err != nil {
		t.Fatal(err)
	}
	if d.Row.Wave != won || len(d.Decisions) != won+1 {
		t.Fatalf("%d steps won, rollout at wave %d with %d decisions", won, d.Row.Wave, len(d.Decisions))
	}
	for i, dec := range d.Decisions[1:] {
		if dec.Seq != i+2 || dec.Wave != i+1 {
			t.Errorf("decision %d: seq %d wave %d; each wave advanced once, in order", i+2, dec.Seq, dec.Wave)
		}
	}
}

func testDesiredChanges(t *testing.T, s *store.Store) {
	ctx := context.Background()
	for _, h := range []string{"a", "b"} {
		mustIngest(t, s, batch(h, HB(1, "Healthy")), T0)
	}
	gen0, err := s.DesiredGen(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if hosts, gen, complete, err := s.DesiredChanges(ctx, gen0); err != nil || len(hosts) != 0 || gen != gen0 || !complete {
		t.Errorf("no change: %v %d %v %v", hosts, gen, complete, err)
	}
	s.SetPin(ctx, "a", "x", wire.Pin{Agent: "1"}, T0)
	s.SetPin(ctx, "b", "x", wire.Pin{Agent: "1"}, T0.Add(time.Hour))
	hosts, gen, complete, err := s.DesiredChanges(ctx, gen0)
	if err != nil || gen != gen0+2 || !complete || len(hosts) != 2 {
		t.Errorf("two pins: hosts %v gen %d complete %v err %v; want a and b, gen %d", hosts, gen, complete, err, gen0+2)
	}
	if hosts, _, _, _ := s.DesiredChanges(ctx, gen0+1); len(hosts) != 1 || hosts[0] != "b" {
		t.Errorf("after the first: %v, want b", hosts)
	}
	if n, err := s.PruneDesiredChanges(ctx, T0.Add(time.Minute)); err != nil || n != 1 {
		t.Errorf("prune: %d, %v; want the first change pruned", n, err)
	}
	if _, gen, complete, _ := s.DesiredChanges(ctx, gen0); complete || gen != gen0+2 {
		t.Errorf("after pruning an unread change: complete %v gen %d; want incomplete", complete, gen)
	}
}
