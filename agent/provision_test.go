package agent

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gofrs/flock"

	"github.com/berthhq/berth/agent/config"
	"github.com/berthhq/berth/provision"
)

// observer records what the plan tells it.
type observer struct {
	mu       sync.Mutex
	finished []provision.Result
}

func (o *observer) Step(context.Context, provision.StepResult) {}
func (o *observer) Finished(_ context.Context, r provision.Result) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.finished = append(o.finished, r)
}
func (o *observer) results() []provision.Result {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]provision.Result(nil), o.finished...)
}

// TestDaemonRunsThePlan: the daemon runs the provision plan and tells the
// observers of Options.Observers; while another process (`provision`)
// holds the plan's lock it leaves the plan alone, and runs it once the
// lock is free. With engine.managed false the host is ready although no
// engine answers: engine checks do not gate it.
func TestDaemonRunsThePlan(t *testing.T) {
	cfg := config.Default()
	cfg.Agent.StateDir = t.TempDir()
	cfg.Agent.ID = "vm-plan"
	cfg.Engine.Managed = false
	cfg.Engine.Endpoint = "unix://" + t.TempDir() + "/no-engine.sock"
	cfg.Cache.Enabled = false
	cfg.Health.Listen = "127.0.0.1:0"

	lock := flock.New(filepath.Join(cfg.StateDir(), provision.LockFile))
	if ok, err := lock.TryLock(); !ok || err != nil {
		t.Fatal(ok, err)
	}
	obs := &observer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, err := New(ctx, cfg, Options{Observers: []provision.Observer{obs}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	time.Sleep(superviseEvery + time.Second)
	if r := obs.results(); len(r) != 0 {
		t.Fatalf("the daemon ran the plan while another process held its lock: %+v", r)
	}
	lock.Unlock()
	deadline := time.Now().Add(3 * superviseEvery)
	for len(obs.results()) == 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	r := obs.results()
	if len(r) != 1 || !r[0].Ready || len(r[0].Steps) != 6 {
		t.Fatalf("observed results %+v; want one, ready, with six steps", r)
	}
	if s, _ := r[0].Step(provision.StepService); s.Message != "this process is the agent service" {
		t.Errorf("service step in the daemon: %+v", s)
	}
	time.Sleep(superviseEvery + time.Second)
	if n := len(obs.results()); n != 1 {
		t.Errorf("observers told %d times of an unchanged result, want once", n)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
