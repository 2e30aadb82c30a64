package rollout_test

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/berthhq/berth/control/rollout"
	"github.com/berthhq/berth/control/wire"
)

// counter is a slog handler that counts the records with message msg.
type counter struct {
	msg string
	n   atomic.Int64
}

func (c *counter) logger() *slog.Logger { return slog.New(c) }

func (c *counter) Enabled(context.Context, slog.Level) bool { return true }

func (c *counter) Handle(_ context.Context, r slog.Record) error {
	if r.Message == c.msg {
		c.n.Add(1)
	}
	return nil
}

func (c *counter) WithAttrs([]slog.Attr) slog.Handler { return c }

func (c *counter) WithGroup(string) slog.Handler { return c }

// replica is a serve replica's rollout service, running until stopped.
type replica struct {
	svc  *rollout.Service
	stop context.CancelFunc
	done chan error
}

func startReplica(svc *rollout.Service) *replica {
	ctx, cancel := context.WithCancel(context.Background())
	r := &replica{svc: svc, stop: cancel, done: make(chan error, 1)}
	go func() { r.done <- svc.Run(ctx) }()
	return r
}

func (r *replica) halt(t testing.TB) {
	r.stop()
	if err := <-r.done; err != nil {
		t.Errorf("Run: %v", err)
	}
}

// TestReplicasDecideOnce runs one rollout under two replicas on one
// database, each stepping it every few milliseconds, one of them stopped
// (its context cancelled, mid-transaction or not) and started again at
// random moments: the rollout completes with one decision per step, and
// no wave advanced twice.
func TestReplicasDecideOnce(t *testing.T) {
	backends(t, func(t *testing.T, dsn func(testing.TB) string) {
		db := dsn(t)
		f := newFleet(t, db, nil)
		elsewhere := &counter{msg: "rollout step taken by another replica"}
		webs := f.add("web", 60, web, "1.0.0")
		services := []*rollout.Service{
			rollout.New(rollout.Options{Store: f.st, Now: f.clock.Now, Tick: 3 * time.Millisecond, Holder: "a", Logger: elsewhere.logger()}),
			rollout.New(rollout.Options{Store: openStore(t, db), Now: f.clock.Now, Tick: 3 * time.Millisecond, Holder: "b", Logger: elsewhere.logger()}),
		}
		replicas := []*replica{startReplica(services[0]), startReplica(services[1])}
		defer func() {
			for _, r := range replicas {
				r.halt(t)
			}
		}()
		r := f.create(engineSpec("2.0.0"))
		rng := rand.New(rand.NewPCG(1, 2))
		restarts := 0
		deadline := time.Now().Add(90 * time.Second)
		for r.State == wire.RolloutRunning && time.Now().Before(deadline) {
			f.clock.Add(2 * time.Second)
			f.apply()
			f.report()
			if rng.IntN(3) == 0 {
				i := rng.IntN(2)
				time.Sleep(time.Duration(rng.IntN(3000)) * time.Microsecond)
				replicas[i].halt(t)
				replicas[i] = startReplica(services[i])
				restarts++
			}
			if told := len(f.onVersion(webs, "2.0.0")); told > startedHosts(f.get(r.ID)) {
				t.Fatalf("%d hosts told, more than the started waves hold", told)
			}
			r = f.get(r.ID)
		}
		want := []string{wire.ActionCreate, wire.ActionStart, wire.ActionAdvance, wire.ActionAdvance, wire.ActionComplete}
		if diff := cmp.Diff(want, actions(r)); diff != "" {
			t.Fatalf("rollout %s; history (-want +got):\n%s", r.State, diff)
		}
		for i, d := range r.History {
			if d.Seq != i+1 || (d.Action == wire.ActionAdvance && d.Wave != i-1) {
				t.Errorf("decision %d: seq %d wave %d", i, d.Seq, d.Wave)
			}
		}
		if r.ByState[wire.HostHealthy] != 60 {
			t.Errorf("completed with %v", r.ByState)
		}
		if elsewhere.n.Load() == 0 {
			t.Errorf("no step was ever refused to a replica for the other's: the replicas never raced")
		}
		t.Logf("completed with %d replica restarts; %d steps left to the other replica", restarts, elsewhere.n.Load())
	})
}
