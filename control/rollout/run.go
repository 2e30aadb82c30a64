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
	next := map[string]time.Time{}
	for {
		s.evaluateAll(ctx, next)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// stepShare bounds the share of its time the controller spends on one
// rollout: a step that took d is not taken again before stepShare × d
// has passed. A rollout of a hundred thousand hosts, whose step reads
// them all, is then stepped every few seconds instead of every Tick,
// which its hosts, reporting every minute or so, do not notice.
const stepShare = 4

// evaluateAll runs one step of every active rollout whose turn it is
// (next holds the earliest time of each, by id).
func (s *Service) evaluateAll(ctx context.Context, next map[string]time.Time) {
	ids, err := s.st.ActiveRollouts(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("active rollouts unreadable; trying again next tick", "err", err)
		}
		return
	}
	active := map[string]bool{}
	for _, id := range ids {
		active[id] = true
		if ctx.Err() != nil {
			return
		}
		if time.Now().Before(next[id]) {
			continue
		}
		t0 := time.Now()
		if _, err := s.Evaluate(ctx, id); err != nil && ctx.Err() == nil {
			s.log.Warn("rollout step failed; trying again next tick", "rollout", id, "err", err)
		}
		if took := time.Since(t0); took*stepShare > s.tick {
			next[id] = t0.Add(took * stepShare)
		}
	}
	for id := range next {
		if !active[id] {
			delete(next, id)
		}
	}
}

// stepElsewhere is logged (at debug) when another replica takes a step.
const stepElsewhere = "rollout step taken by another replica"

// Evaluate runs one controller step of rollout id and reports whether it
// wrote anything. A step another replica is taking, or that another
// replica took meanwhile, is no error: that replica decides it.
func (s *Service) Evaluate(ctx context.Context, id string) (bool, error) {
	var c *store.RolloutChange
	now := s.now()
	_, err := s.st.EvalRollout(ctx, id, now, false, func(snap *store.RolloutSnapshot) (*store.RolloutChange, error) {
		snap.Joiners = s.signedFor(ctx, snap.Rollout, snap.Joiners)
		c = step(snap, now)
		return c, nil
	})
	switch {
	case errors.Is(err, store.ErrBusy), errors.Is(err, store.ErrStale):
		s.log.Debug(stepElsewhere, "rollout", id, "err", err)
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

// signedFor returns the joiners whose platform the rollout's version is
// signed for (those that report none too): SPEC's check at create, for
// the hosts that match the selector later. A joiner on another platform
// is left out, with a warning, and stays out while it is not signed.
func (s *Service) signedFor(ctx context.Context, r store.RolloutRow, joiners []store.Facts) []store.Facts {
	if s.releases == nil || len(joiners) == 0 {
		return joiners
	}
	bad := map[[2]string]error{}
	for p := range platforms(joiners) {
		if err := s.releases.Signed(ctx, r.Spec.Kind, r.Spec.Flavor, r.Spec.Version, p[0], p[1]); err != nil {
			bad[p] = err
		}
	}
	out := joiners[:0]
	for _, f := range joiners {
		if err := bad[[2]string{f.OS, f.Arch}]; err != nil {
			if _, told := s.unsigned.LoadOrStore(r.ID+"\x00"+f.Host, true); told {
				continue
			}
			s.log.Warn("host matches the rollout's selector but the version is not signed for its platform; it does not join", "rollout", r.ID, "host", f.Host, "os", f.OS, "arch", f.Arch, "err", err)
			continue
		}
		out = append(out, f)
	}
	return out
}
