package rollout

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/berthhq/berth/control/store"
	"github.com/berthhq/berth/control/wire"
	"github.com/berthhq/berth/internal/clip"
)

// Create starts a rollout of spec (defaults filled, then validated) for
// the hosts its selector matches now, by who: the create decision, the
// hosts placed in waves, and the first wave told at once. A spec the
// wire rules refuse, a selector that matches no host or a version not
// signed for a selected host's platform is ErrInvalid; an active rollout
// of the same kind holding one of the hosts is ErrConflict.
func (s *Service) Create(ctx context.Context, who string, spec wire.RolloutSpec) (wire.Rollout, error) {
	spec = spec.WithDefaults()
	if err := spec.Validate(); err != nil {
		return wire.Rollout{}, invalidError{err}
	}
	hosts, err := s.st.MatchHosts(ctx, spec.Selector)
	if err != nil {
		return wire.Rollout{}, fmt.Errorf("create rollout: %w", err)
	}
	if len(hosts) == 0 {
		return wire.Rollout{}, invalidf("%w: selector: %s matches no host; hosts report their labels in heartbeats (see GET /v1/hosts?label=…)",
			wire.ErrInvalidSpec, selectorString(spec.Selector))
	}
	checked := platforms(hosts)
	if err := s.checkSigned(ctx, spec.Kind, spec.Flavor, spec.Version, checked); err != nil {
		return wire.Rollout{}, err
	}
	now := s.now()
	r := store.RolloutRow{ID: newID(), Spec: spec, CreatedBy: who, Created: now, Updated: now}
	var notify []string
	err = s.st.CreateRollout(ctx, r, func(v store.CreateView) (store.RolloutChange, error) {
		if err := conflicts(spec.Kind, v.Overlap); err != nil {
			return store.RolloutChange{}, err
		}
		if len(v.Hosts) == 0 {
			return store.RolloutChange{}, invalidf("%w: selector: %s matches no host any more", wire.ErrInvalidSpec, selectorString(spec.Selector))
		}
		for p := range platforms(v.Hosts) {
			if !checked[p] && s.releases != nil {
				return store.RolloutChange{}, fmt.Errorf("create rollout: a host on %s/%s joined the selection while it was checked; try again: %w", p[0], p[1], ErrConflict)
			}
		}
		c := start(r, who, v.Hosts, now)
		notify = c.Notify
		return c, nil
	})
	if err != nil {
		return wire.Rollout{}, err
	}
	s.log.Info("rollout created", "rollout", r.ID, "by", who, "kind", spec.Kind, "version", spec.Version, "selector", selectorString(spec.Selector))
	s.deliver(ctx, notify)
	return s.Get(ctx, r.ID)
}

// conflicts refuses a rollout that overlaps active ones of its kind.
func conflicts(kind string, overlap map[string]int) error {
	if len(overlap) == 0 {
		return nil
	}
	var parts []string
	for _, id := range slices.Sorted(maps.Keys(overlap)) {
		parts = append(parts, fmt.Sprintf("%s (%d hosts)", id, overlap[id]))
	}
	return fmt.Errorf("create rollout: the selection overlaps the active %s rollout %s; one rollout of a kind holds a host at a time: wait for it, or abort it (berth-control rollouts abort ID): %w",
		kind, strings.Join(parts, ", "), ErrConflict)
}

// List returns every rollout, newest first.
func (s *Service) List(ctx context.Context) (wire.RolloutList, error) {
	ds, err := s.st.Rollouts(ctx)
	if err != nil {
		return wire.RolloutList{}, err
	}
	out := wire.RolloutList{Rollouts: make([]wire.Rollout, len(ds))}
	for i, d := range ds {
		out.Rollouts[i] = view(d)
	}
	return out, nil
}

// Get returns rollout id, or ErrNotFound.
func (s *Service) Get(ctx context.Context, id string) (wire.Rollout, error) {
	d, err := s.st.Rollout(ctx, id)
	if err != nil {
		return wire.Rollout{}, err
	}
	return view(d), nil
}

// Pause stops a running rollout from telling hosts and advancing.
func (s *Service) Pause(ctx context.Context, id, who, reason string) (wire.Rollout, error) {
	return s.operate(ctx, id, who, wire.ActionPause, reason)
}

// Resume lets a paused rollout go on.
func (s *Service) Resume(ctx context.Context, id, who, reason string) (wire.Rollout, error) {
	return s.operate(ctx, id, who, wire.ActionResume, reason)
}

// Abort ends a running, paused or halted rollout and sends every host it
// touched back to what it ran before.
func (s *Service) Abort(ctx context.Context, id, who, reason string) (wire.Rollout, error) {
	return s.operate(ctx, id, who, wire.ActionAbort, reason)
}

// operate runs an operator's action as one step of the rollout, waiting
// for a controller step in progress, retrying when one slipped in.
func (s *Service) operate(ctx context.Context, id, who, action, reason string) (wire.Rollout, error) {
	if len(reason) > wire.MaxReasonLen {
		return wire.Rollout{}, invalidf("%w: reason: %d bytes, over the limit of %d", wire.ErrInvalidSpec, len(reason), wire.MaxReasonLen)
	}
	for attempt := 0; ; attempt++ {
		var notify []string
		now := s.now()
		_, err := s.st.EvalRollout(ctx, id, now, true, func(snap *store.RolloutSnapshot) (*store.RolloutChange, error) {
			c, err := operation(snap, now, who, action, reason)
			if c != nil {
				notify = c.Notify
			}
			return c, err
		})
		if errors.Is(err, store.ErrStale) && attempt < 5 {
			continue
		}
		if err != nil {
			return wire.Rollout{}, err
		}
		s.log.Info("rollout "+action, "rollout", id, "by", who, "reason", reason)
		s.deliver(ctx, notify)
		return s.Get(ctx, id)
	}
}

// Pin sets host's pins of p's non-empty members (keeping the other) and
// returns its pins after. A bad version is ErrInvalid; an unknown host
// ErrNotFound.
func (s *Service) Pin(ctx context.Context, host, who string, p wire.Pin) (wire.Pin, error) {
	if p.Engine == "" && p.Agent == "" {
		return wire.Pin{}, invalidf("%w: pin: name an engine or an agent version", wire.ErrInvalidSpec)
	}
	facts, err := s.st.HostFacts(ctx, []string{host})
	if err != nil {
		return wire.Pin{}, err
	}
	f, ok := facts[host]
	if !ok {
		return wire.Pin{}, fmt.Errorf("host %q: %w", clip.String(host, 80), ErrNotFound)
	}
	plat := platforms([]store.Facts{f})
	for _, k := range []struct{ kind, flavor, version string }{{wire.KindEngine, f.Flavor, p.Engine}, {wire.KindAgent, "", p.Agent}} {
		if k.version == "" {
			continue
		}
		if err := wire.CheckVersion(k.version); err != nil {
			return wire.Pin{}, invalidf("%w: pin %s: %v", wire.ErrInvalidSpec, k.kind, err)
		}
		if k.kind == wire.KindEngine && k.flavor == "" {
			continue // nothing to check against until the host reports its flavor
		}
		if err := s.checkSigned(ctx, k.kind, k.flavor, k.version, plat); err != nil {
			return wire.Pin{}, err
		}
	}
	got, err := s.st.SetPin(ctx, host, who, p, s.now())
	if err != nil {
		return wire.Pin{}, err
	}
	s.log.Info("host pinned", "host", host, "by", who, "engine", p.Engine, "agent", p.Agent)
	s.deliver(ctx, []string{host})
	return got, nil
}

// Unpin removes host's pin of kind (engine, agent, or "" for both).
func (s *Service) Unpin(ctx context.Context, host, who, kind string) (wire.Pin, error) {
	switch kind {
	case "", wire.KindEngine, wire.KindAgent:
	default:
		return wire.Pin{}, invalidf("%w: pin kind %q: want engine, agent or none for both", wire.ErrInvalidSpec, clip.String(kind, 80))
	}
	got, err := s.st.ClearPin(ctx, host, who, kind, s.now())
	if err != nil {
		return wire.Pin{}, err
	}
	s.log.Info("host unpinned", "host", host, "by", who, "kind", kind)
	s.deliver(ctx, []string{host})
	return got, nil
}
