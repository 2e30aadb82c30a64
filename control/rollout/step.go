package rollout

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/berthhq/berth/control/store"
	"github.com/berthhq/berth/control/wire"
)

// Controller is the Who of the decisions the controller makes.
const Controller = "controller"

// plan is one step of a rollout being worked out: the members as they
// will be (with their hosts' facts), which of them changed, and the
// change to write. Its methods are pure: the same snapshot and clock
// give the same change.
type plan struct {
	r       store.RolloutRow
	t       target
	now     time.Time
	members []store.MemberFacts
	changed []bool
	c       store.RolloutChange
}

// newPlan starts a plan from snap, its joiners placed among the members.
// The plan takes snap's members over (a copy of a hundred thousand would
// cost more than the rest of the step): snap is not read after.
func newPlan(snap *store.RolloutSnapshot, now time.Time) *plan {
	p := &plan{r: snap.Rollout, t: targetOf(snap.Rollout.Spec), now: now}
	p.members, p.changed = placeMembers(p.r.ID, snap.Members, snap.Joiners, p.r.Spec.Waves)
	snap.Members = nil
	p.c = store.RolloutChange{State: p.r.State, Wave: p.r.Wave, Waves: slices.Clone(p.r.Waves)}
	if len(p.c.Waves) < len(p.r.Spec.Waves) {
		p.c.Waves = append(p.c.Waves, make([]store.WaveTimes, len(p.r.Spec.Waves)-len(p.c.Waves))...)
	}
	return p
}

// decide records a decision and moves the rollout to state to.
func (p *plan) decide(who, action string, wave int, to, reason string) {
	p.c.Decisions = append(p.c.Decisions, wire.Decision{Time: p.now, Who: who, Action: action, Wave: wave,
		From: p.c.State, To: to, Reason: reason})
	p.c.State = to
}

// set changes member i to state, noting whether its desired state moves.
func (p *plan) set(i int, state string) {
	m := &p.members[i]
	if m.State == state {
		return
	}
	if touched(m.State) != touched(state) || state == wire.HostRolledBack {
		p.c.Notify = append(p.c.Notify, m.Host)
	}
	m.State = state
	p.changed[i] = true
}

// tell tells the reachable, unpinned pending members of the waves up to
// the current one to move to the target, noting what they ran before.
// It returns how many it told.
func (p *plan) tell() int {
	n := 0
	for i := range p.members {
		m := &p.members[i]
		if m.State != wire.HostPending || m.Wave > p.c.Wave || p.t.pinned(m.Facts) || !reachable(m.Facts, p.now) {
			continue
		}
		m.PrevFlavor, m.PrevVersion = reported(m.Facts, p.t.kind)
		m.Told, m.HealthySince = p.now, time.Time{}
		p.set(i, wire.HostTold)
		n++
	}
	return n
}

// rollback sends every touched member back to what it ran before.
func (p *plan) rollback() int {
	n := 0
	for i := range p.members {
		if touched(p.members[i].State) {
			p.set(i, wire.HostRolledBack)
			n++
		}
	}
	return n
}

// classifyAll moves the told, updated and healthy members on by what
// their hosts report.
func (p *plan) classifyAll() {
	bake := time.Duration(p.r.Spec.Bake)
	for i := range p.members {
		m := &p.members[i]
		state, since := classify(m.Member, m.Facts, p.t, bake, p.now)
		if !since.Equal(m.HealthySince) {
			m.HealthySince = since
			p.changed[i] = true
		}
		p.set(i, state)
	}
}

// tally counts the members by state.
func (p *plan) tally() map[string]int {
	n := map[string]int{}
	for _, m := range p.members {
		n[m.State]++
	}
	return n
}

// toldCount is how many members were told so far (rolled back ones
// included: they were told before).
func toldCount(n map[string]int) int {
	return n[wire.HostTold] + n[wire.HostUpdated] + n[wire.HostHealthy] + n[wire.HostFailed] + n[wire.HostRolledBack]
}

// overThreshold reports whether failed hosts of told pass the spec's
// threshold, and says how: more than MaxFailures, more than
// MaxFailurePercent of told, or, with neither set, any failure.
func overThreshold(s wire.RolloutSpec, failed, told int) (bool, string) {
	if failed == 0 {
		return false, ""
	}
	if s.MaxFailures == nil && s.MaxFailurePercent == nil {
		return true, fmt.Sprintf("%d of %d told hosts failed; with no threshold set the first failure halts", failed, told)
	}
	if s.MaxFailures != nil && failed > *s.MaxFailures {
		return true, fmt.Sprintf("%d of %d told hosts failed, more than maxFailures %d", failed, told, *s.MaxFailures)
	}
	if s.MaxFailurePercent != nil && told > 0 {
		if pct := float64(failed) * 100 / float64(told); pct > *s.MaxFailurePercent {
			return true, fmt.Sprintf("%d of %d told hosts failed (%.1f%%), more than maxFailurePercent %v", failed, told, pct, *s.MaxFailurePercent)
		}
	}
	return false, ""
}

// waveDone reports whether the current wave is done: each of its members
// healthy, failed, pinned, or pending and unreachable. It returns the
// count of those unreachable, for the decision's reason.
func (p *plan) waveDone() (bool, int) {
	unreachable := 0
	for _, m := range p.members {
		if m.Wave != p.c.Wave {
			continue
		}
		switch {
		case m.State == wire.HostHealthy || m.State == wire.HostFailed || m.State == wire.HostRolledBack || p.t.pinned(m.Facts):
		case m.State == wire.HostPending && !reachable(m.Facts, p.now):
			unreachable++
		default:
			return false, 0
		}
	}
	return true, unreachable
}

// sample adds a version sample when the members' versions of the kind
// differ from the last sample and that is at least MinSampleGap old, or
// the step ends the rollout: an ended rollout is never stepped again, so
// its last sample must be the final versions.
func (p *plan) sample(last *wire.VersionSample) {
	counts := map[string]int{}
	for _, m := range p.members {
		_, v := reported(m.Facts, p.t.kind)
		counts[v]++
	}
	ending := !store.IsActive(p.c.State)
	if last != nil && (maps.Equal(last.Counts, counts) || p.now.Sub(last.Time) < wire.MinSampleGap && !ending) {
		return
	}
	p.c.Sample = &wire.VersionSample{Time: p.now, Counts: counts}
}

// change returns the change to write, nil when there is nothing.
func (p *plan) change() *store.RolloutChange {
	for i, ch := range p.changed {
		if ch {
			p.c.Members = append(p.c.Members, p.members[i].Member)
		}
	}
	if len(p.c.Members) == 0 && len(p.c.Decisions) == 0 && p.c.Sample == nil {
		return nil
	}
	return &p.c
}

// step is the controller's evaluation of a rollout: members that joined
// are placed, hosts are classified, and a running rollout halts (and
// rolls back if asked), tells, advances a wave or completes; at most
// one such decision a step.
func step(snap *store.RolloutSnapshot, now time.Time) *store.RolloutChange {
	if !store.IsActive(snap.Rollout.State) {
		return nil
	}
	p := newPlan(snap, now)
	p.classifyAll()
	if p.c.State == wire.RolloutRunning {
		p.run()
	}
	p.sample(snap.LastSample)
	return p.change()
}

// run is the part of a step only a running rollout takes.
func (p *plan) run() {
	n := p.tally()
	if over, why := overThreshold(p.r.Spec, n[wire.HostFailed], toldCount(n)); over {
		p.decide(Controller, wire.ActionHalt, p.c.Wave, wire.RolloutHalted, why)
		if p.r.Spec.RollbackOnHalt {
			k := p.rollback()
			p.decide(Controller, wire.ActionRollback, p.c.Wave, wire.RolloutRolledBack,
				fmt.Sprintf("rollbackOnHalt: %d touched hosts told to go back to what they ran before", k))
		}
		return
	}
	p.tell()
	done, unreachable := p.waveDone()
	if !done {
		return
	}
	k := p.c.Wave
	p.c.Waves[k].Done = p.now
	n = p.tally()
	summary := fmt.Sprintf("wave %d of %d baked (%s): %d healthy, %d failed, %d unreachable",
		k+1, len(p.c.Waves), time.Duration(p.r.Spec.Bake), n[wire.HostHealthy], n[wire.HostFailed], unreachable)
	if k == len(p.c.Waves)-1 {
		p.decide(Controller, wire.ActionComplete, k, wire.RolloutCompleted, summary)
		return
	}
	p.c.Wave = k + 1
	p.c.Waves[k+1].Started = p.now
	told := p.tell()
	p.decide(Controller, wire.ActionAdvance, k+1, wire.RolloutRunning,
		fmt.Sprintf("%s; wave %d (%v%%) starts: %d hosts told", summary, k+2, p.r.Spec.Waves[k+1], told))
}

// start is a new rollout's first step: members placed in waves, the
// create decision, and the first wave started.
func start(r store.RolloutRow, who string, hosts []store.Facts, now time.Time) store.RolloutChange {
	p := newPlan(&store.RolloutSnapshot{Rollout: r, Joiners: hosts}, now)
	p.decide(who, wire.ActionCreate, -1, wire.RolloutRunning, fmt.Sprintf("%s %s%s for %d hosts matching %s",
		r.Spec.Kind, flavorPrefix(r.Spec.Flavor), r.Spec.Version, len(hosts), selectorString(r.Spec.Selector)))
	p.c.Waves[0].Started = now
	told := p.tell()
	p.decide(Controller, wire.ActionStart, 0, wire.RolloutRunning,
		fmt.Sprintf("wave 1 (%v%%) starts: %d hosts told", r.Spec.Waves[0], told))
	p.sample(nil)
	return *p.change()
}

func flavorPrefix(f string) string {
	if f == "" {
		return ""
	}
	return f + " "
}

// selectorString writes a selector as k=v,k=v in key order.
func selectorString(sel map[string]string) string {
	var b strings.Builder
	for i, k := range slices.Sorted(maps.Keys(sel)) {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k + "=" + sel[k])
	}
	return b.String()
}

// operation is an operator's action on a rollout as a step: pause
// (running → paused), resume (paused → running), abort (running, paused
// or halted → aborted, every touched host rolled back). Any other
// transition is ErrConflict.
func operation(snap *store.RolloutSnapshot, now time.Time, who, action, reason string) (*store.RolloutChange, error) {
	from := snap.Rollout.State
	allowed := map[string][]string{
		wire.ActionPause:  {wire.RolloutRunning},
		wire.ActionResume: {wire.RolloutPaused},
		wire.ActionAbort:  {wire.RolloutRunning, wire.RolloutPaused, wire.RolloutHalted},
	}[action]
	if !slices.Contains(allowed, from) {
		return nil, fmt.Errorf("%s rollout %s: it is %s; only a rollout that is %s can be %s: %w",
			action, snap.Rollout.ID, from, strings.Join(allowed, " or "), pastTense[action], ErrConflict)
	}
	p := newPlan(snap, now)
	if reason == "" {
		reason = "by " + who
	}
	switch action {
	case wire.ActionPause:
		p.decide(who, action, p.c.Wave, wire.RolloutPaused, reason)
	case wire.ActionResume:
		p.decide(who, action, p.c.Wave, wire.RolloutRunning, reason)
	case wire.ActionAbort:
		n := p.rollback()
		p.decide(who, action, p.c.Wave, wire.RolloutAborted, fmt.Sprintf("%s; %d touched hosts told to go back to what they ran before", reason, n))
	}
	return p.change(), nil
}

var pastTense = map[string]string{wire.ActionPause: "paused", wire.ActionResume: "resumed", wire.ActionAbort: "aborted"}
