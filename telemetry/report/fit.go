package report

import (
	"maps"
	"math"
	"slices"
	"time"

	"github.com/berthhq/berth/telemetry"

	"github.com/berthhq/berth/internal/clip"

	"github.com/berthhq/berth/control/wire"
)

// The outbox refuses a record the endpoint would refuse, so what the agent
// writes is fitted to the wire rules first: a heartbeat lost to one long
// check message would leave the host looking stale, and an event lost to a
// long engine error would hide exactly the failure it reports.

// fitHeartbeat clips strings to their limits, turns check names and cache
// keys into allowed names, and drops what is over a count limit (labels
// with bad keys too: a label cannot be renamed without lying).
func fitHeartbeat(h *wire.Heartbeat) {
	if len(h.Checks) > wire.MaxChecks {
		h.Checks = h.Checks[:wire.MaxChecks]
	}
	for i := range h.Checks {
		c := &h.Checks[i]
		c.Name = telemetry.Name(c.Name)
		c.Message = clip.String(c.Message, wire.MaxMessageLen)
		if !c.Time.IsZero() && c.Time.Before(wire.MinTime) {
			c.Time = time.Time{} // a check may carry no time, but not a 1970 one
		}
	}
	h.Engine.Flavor = clip.String(h.Engine.Flavor, wire.MaxIDLen)
	h.Engine.Version = clip.String(h.Engine.Version, wire.MaxShortLen)
	h.AgentVersion = clip.String(h.AgentVersion, wire.MaxShortLen)
	h.OSBuild = clip.String(h.OSBuild, wire.MaxShortLen)
	if len(h.Cache) > 0 {
		cache := make(map[string]float64, min(len(h.Cache), wire.MaxCacheFigures))
		for _, k := range slices.Sorted(maps.Keys(h.Cache)) {
			if len(cache) == wire.MaxCacheFigures {
				break
			}
			v := h.Cache[k]
			if math.IsNaN(v) || math.IsInf(v, 0) {
				continue
			}
			cache[telemetry.Key(k)] = v
		}
		h.Cache = cache
	}
	if len(h.Labels) > 0 {
		labels := make(map[string]string, min(len(h.Labels), wire.MaxLabels))
		for _, k := range slices.Sorted(maps.Keys(h.Labels)) {
			if len(labels) == wire.MaxLabels {
				break
			}
			if telemetry.Key(k) != k {
				continue
			}
			labels[k] = clip.String(h.Labels[k], wire.MaxShortLen)
		}
		h.Labels = labels
	}
	h.IntervalSeconds = min(max(h.IntervalSeconds, 0), wire.MaxIntervalSeconds)
}

// fitEvent clips the message and field values and drops what is over the
// field count; field keys are made allowed names.
func fitEvent(e *wire.Event) {
	e.Message = clip.String(e.Message, wire.MaxMessageLen)
	if len(e.Fields) == 0 {
		e.Fields = nil
		return
	}
	fields := make(map[string]string, min(len(e.Fields), wire.MaxEventFields))
	for _, k := range slices.Sorted(maps.Keys(e.Fields)) {
		if len(fields) == wire.MaxEventFields {
			break
		}
		fields[telemetry.Key(k)] = clip.String(e.Fields[k], wire.MaxFieldValueLen)
	}
	e.Fields = fields
}
