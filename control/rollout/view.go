package rollout

import (
	"time"

	"github.com/berthhq/berth/control/store"
	"github.com/berthhq/berth/control/wire"
)

// view is a stored rollout as the API shows it.
func view(d store.RolloutDetail) wire.Rollout {
	r := d.Row
	out := wire.Rollout{
		ID: r.ID, RolloutSpec: r.Spec, State: r.State, CreatedBy: r.CreatedBy, Created: r.Created, Updated: r.Updated,
		Wave: r.Wave, ByState: zeroStates(), WaveStatus: make([]wire.WaveStatus, len(r.Spec.Waves)),
		History: d.Decisions, Versions: d.Samples,
	}
	if out.History == nil {
		out.History = []wire.Decision{}
	}
	for k, p := range r.Spec.Waves {
		ws := wire.WaveStatus{Percent: p, ByState: zeroStates()}
		if k < len(r.Waves) {
			ws.Started, ws.Done = timePtr(r.Waves[k].Started), timePtr(r.Waves[k].Done)
		}
		for state, n := range d.Counts[k] {
			ws.ByState[state] += n
			ws.Hosts += n
			out.ByState[state] += n
			out.Hosts += n
		}
		out.WaveStatus[k] = ws
	}
	return out
}

func zeroStates() map[string]int {
	m := make(map[string]int, len(wire.HostStates))
	for _, s := range wire.HostStates {
		m[s] = 0
	}
	return m
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
