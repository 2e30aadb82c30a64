package rollout

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/berthhq/berth/control/store"
)

// Run runs the controller (a step of every active rollout each Tick) and
// the change watcher (long polls woken by other replicas' changes) until
// ctx ends; it returns nil then.
func (s *Service) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.watch(ctx)
	}()
	defer wg.Wait()
	tick := time.NewTicker(s.tick)
	defer tick.Stop()
	for {
		s.evaluateAll(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// evaluateAll runs one step of every active rollout.
func (s *Service) evaluateAll(ctx context.Context) {
	ids, err := s.st.ActiveRollouts(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("active rollouts unreadable; trying again next tick", "err", err)
		}
		return
	}
	for _, id := range ids {
		if ctx.Err() != nil {
			return
		}
		if _, err := s.Evaluate(ctx, id); err != nil && ctx.Err() == nil {
			s.log.Warn("rollout step failed; trying again next tick", "rollout", id, "err", err)
		}
	}
}

// Evaluate runs one controller step of rollout id and reports whether it
// wrote anything. A step another replica is taking, or that another
// replica took meanwhile, is no error: that replica decides it.
func (s *Service) Evaluate(ctx context.Context, id string) (bool, error) {
	var c *store.RolloutChange
	now := s.now()
	_, err := s.st.EvalRollout(ctx, id, now, false, func(snap *store.RolloutSnapshot) (*store.RolloutChange, error) {
		c = step(snap, now)
		return c, nil
	})
	switch {
	case errors.Is(err, store.ErrBusy), errors.Is(err, store.ErrStale):
		return false, nil
	case err != nil:
		return false, err
	case c == nil:
		return false, nil
	}
	for _, d := range c.Decisions {
		s.log.Info("rollout decision", "rollout", id, "action", d.Action, "wave", d.Wave, "from", d.From, "to", d.To, "reason", d.Reason)
	}
	s.deliver(ctx, c.Notify)
	return true, nil
}
