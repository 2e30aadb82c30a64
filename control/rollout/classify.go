package rollout

import (
	"time"

	"github.com/berthhq/berth/control/store"
	"github.com/berthhq/berth/control/wire"
)

// target is what a rollout moves its hosts to.
type target struct {
	kind, flavor, version string
}

func targetOf(s wire.RolloutSpec) target { return target{s.Kind, s.Flavor, s.Version} }

// reported is what a host reports of kind: its engine's flavor and
// version, or ("", agent version).
func reported(f store.Facts, kind string) (flavor, version string) {
	if kind == wire.KindEngine {
		return f.Flavor, f.EngineVersion
	}
	return "", f.AgentVersion
}

// onTarget reports whether the host reports the target.
func (t target) onTarget(f store.Facts) bool {
	flavor, version := reported(f, t.kind)
	return f.Exists && version == t.version && flavor == t.flavor
}

// pinned reports whether the host has a pin of the target's kind: the
// rollout neither tells it nor waits for it.
func (t target) pinned(f store.Facts) bool {
	if t.kind == wire.KindEngine {
		return f.Pin.Engine != ""
	}
	return f.Pin.Agent != ""
}

// clockSkew is how much earlier than the host was told a rejection of
// the target may be dated and still count: the host's clock and the
// server's differ. An older one is from an earlier rollout to the same
// version, which the host retries when told again.
const clockSkew = time.Minute

// rejectedTarget reports whether the host rejected the target since it
// was told.
func (t target) rejectedTarget(f store.Facts, told time.Time) bool {
	for _, r := range f.Rejected {
		if r.Kind == t.kind && r.Version == t.version && !r.Time.Before(told.Add(-clockSkew)) {
			return true
		}
	}
	return false
}

// silentAfter is how many report intervals a told host may stay silent
// before it counts as failed (the same as store.StaleAfter).
const silentAfter = store.StaleAfter

// reachable reports whether a host can be told: it reported within
// StaleAfter of its intervals.
func reachable(f store.Facts, now time.Time) bool {
	return f.Exists && !now.After(f.LastReport.Add(silentAfter*f.Interval))
}

// classify returns the state of a told, updated or healthy member at now
// (the others keep theirs) and when it turned Healthy on the target:
//
//   - failed when it rejected the target since told, reports the target
//     and Unhealthy, or (not yet healthy) has been silent for 3 of its
//     intervals since it was told or last reported, whichever is later;
//   - healthy once it has reported the target and Healthy, continuously,
//     for bake; a healthy host stays healthy unless it fails as above;
//   - updated while it reports the target, not (yet long enough) Healthy;
//   - told otherwise.
func classify(m store.Member, f store.Facts, t target, bake time.Duration, now time.Time) (string, time.Time) {
	switch m.State {
	case wire.HostTold, wire.HostUpdated, wire.HostHealthy:
	default:
		return m.State, m.HealthySince
	}
	if t.rejectedTarget(f, m.Told) {
		return wire.HostFailed, time.Time{}
	}
	on := t.onTarget(f)
	if on && f.State == "Unhealthy" {
		return wire.HostFailed, time.Time{}
	}
	if m.State == wire.HostHealthy {
		return m.State, m.HealthySince
	}
	interval := f.Interval
	if !f.Exists || interval <= 0 {
		interval = store.DefaultInterval
	}
	last := m.Told
	if f.Exists && f.LastReport.After(last) {
		last = f.LastReport
	}
	if now.After(last.Add(silentAfter * interval)) {
		return wire.HostFailed, time.Time{}
	}
	if !on {
		return wire.HostTold, time.Time{}
	}
	if f.State != "Healthy" {
		return wire.HostUpdated, time.Time{}
	}
	since := m.HealthySince
	if since.IsZero() {
		since = now
	}
	if now.Sub(since) >= bake {
		return wire.HostHealthy, since
	}
	return wire.HostUpdated, since
}

// touched reports whether a host in state was told the target (and not
// yet rolled back): a rollback sends it back.
func touched(state string) bool {
	switch state {
	case wire.HostTold, wire.HostUpdated, wire.HostHealthy, wire.HostFailed:
		return true
	}
	return false
}
