package provision

import (
	"context"
	"slices"
)

// step tells the observers of a step's new state, unless it is what they
// were told last for that step, or the step failed last time and is tried
// again: the daemon runs the plan every few seconds, and an observer (the
// extension's status file) wants changes.
func (p *Plan) step(ctx context.Context, r StepResult) {
	last, seen := p.last[r.Name]
	if seen && last.State == r.State && last.Message == r.Message && last.Error == r.Error {
		return
	}
	if r.State == Running && seen && last.State == Failed {
		// A failing step tried again: its outcome tells whether
		// anything changed.
		return
	}
	p.last[r.Name] = r
	for _, o := range p.o.Observers {
		o.Step(ctx, r)
	}
}

// finished tells the observers of a run's result when it differs from the
// last one they were told of (durations aside).
func (p *Plan) finished(ctx context.Context, r Result) {
	if p.prev != nil && sameResult(*p.prev, r) {
		return
	}
	p.prev = &r
	for _, o := range p.o.Observers {
		o.Finished(ctx, r)
	}
}

// sameResult compares results without their durations.
func sameResult(a, b Result) bool {
	if a.Ready != b.Ready || a.Failed != b.Failed || a.RebootPending != b.RebootPending {
		return false
	}
	return slices.EqualFunc(a.Steps, b.Steps, func(x, y StepResult) bool {
		return x.Name == y.Name && x.State == y.State && x.Message == y.Message && x.Error == y.Error
	})
}
