package server_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/berthhq/berth/control/server"
	"github.com/berthhq/berth/control/store"
	"github.com/berthhq/berth/control/wire"
)

// fakeRollouts keeps pins only: the desired state of a host is its pins.
// It stands in for rollout.Service until that is on this branch.
type fakeRollouts struct {
	mu      sync.Mutex
	pins    map[string]wire.Pin
	changed chan struct{} // closed and replaced on every change
}

func newFakeRollouts() *fakeRollouts {
	return &fakeRollouts{pins: map[string]wire.Pin{}, changed: make(chan struct{})}
}

func (f *fakeRollouts) Create(ctx context.Context, who string, spec wire.RolloutSpec) (wire.Rollout, error) {
	if spec.Selector["pool"] == "none" {
		return wire.Rollout{}, fmt.Errorf("%w: selector matches no host", wire.ErrInvalidSpec)
	}
	return wire.Rollout{ID: "r1", RolloutSpec: spec, State: wire.RolloutRunning, CreatedBy: who}, nil
}

func (f *fakeRollouts) List(ctx context.Context) (wire.RolloutList, error) {
	return wire.RolloutList{}, nil
}

func (f *fakeRollouts) Get(ctx context.Context, id string) (wire.Rollout, error) {
	if id != "r1" {
		return wire.Rollout{}, wire.ErrNotFound
	}
	return wire.Rollout{ID: "r1", State: wire.RolloutRunning}, nil
}

func (f *fakeRollouts) act(id, state string) (wire.Rollout, error) {
	r, err := f.Get(context.Background(), id)
	r.State = state
	return r, err
}

func (f *fakeRollouts) Pause(ctx context.Context, id, who, reason string) (wire.Rollout, error) {
	return f.act(id, wire.RolloutPaused)
}

func (f *fakeRollouts) Resume(ctx context.Context, id, who, reason string) (wire.Rollout, error) {
	return f.act(id, wire.RolloutRunning)
}

func (f *fakeRollouts) Abort(ctx context.Context, id, who, reason string) (wire.Rollout, error) {
	return f.act(id, wire.RolloutAborted)
}

func (f *fakeRollouts) Pin(ctx context.Context, host, who string, p wire.Pin) (wire.Pin, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	old := f.pins[host]
	if p.Engine != "" {
		old.Engine = p.Engine
	}
	if p.Agent != "" {
		old.Agent = p.Agent
	}
	f.pins[host] = old
	close(f.changed)
	f.changed = make(chan struct{})
	return old, nil
}

func (f *fakeRollouts) Unpin(ctx context.Context, host, who, kind string) (wire.Pin, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.pins[host]
	if kind != wire.KindAgent {
		p.Engine = ""
	}
	if kind != wire.KindEngine {
		p.Agent = ""
	}
	f.pins[host] = p
	close(f.changed)
	f.changed = make(chan struct{})
	return p, nil
}

func (f *fakeRollouts) Desired(ctx context.Context, host string) (wire.Desired, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, etag, _ := f.desired(host)
	return d, etag, nil
}

func (f *fakeRollouts) desired(host string) (wire.Desired, string, <-chan struct{}) {
	d := wire.Desired{Rollouts: []string{}}
	if p := f.pins[host]; p.Engine != "" {
		d.Engine = &wire.DesiredEngine{Flavor: "docker", Version: p.Engine}
	}
	if p := f.pins[host]; p.Agent != "" {
		d.Agent = &wire.DesiredAgent{Version: p.Agent}
	}
	b, _ := json.Marshal(d)
	sum := sha256.Sum256(b)
	return d, hex.EncodeToString(sum[:8]), f.changed
}

func (f *fakeRollouts) WaitDesired(ctx context.Context, host, etag string, wait time.Duration) (wire.Desired, string, error) {
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		f.mu.Lock()
		d, now, changed := f.desired(host)
		f.mu.Unlock()
		if now != etag {
			return d, now, nil
		}
		select {
		case <-ctx.Done():
			return d, now, ctx.Err()
		case <-t.C:
			return d, now, nil
		case <-changed:
		}
	}
}

// newRollouts is the fixtures' rollout controller.
func newRollouts(*store.Store) server.Rollouts { return newFakeRollouts() }
