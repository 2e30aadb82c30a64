package agent

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"runtime"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/berthhq/berth/control/wire"
	"github.com/berthhq/berth/engine"
	"github.com/berthhq/berth/imagecache"
	"github.com/berthhq/berth/internal/buildinfo"
	"github.com/berthhq/berth/telemetry"
)

// firstHeartbeat is the wait before the first heartbeat of a run: long
// enough for the Monitor's first round, so that a restart does not report
// the host as Initializing.
const firstHeartbeat = 15 * time.Second

// watchEvery is how often the Monitor's latest health is compared with the
// last one, for health and cache-tier events.
const watchEvery = 2 * time.Second

// heartbeat is the host's full state for the reporter: health checked
// now, the engine, the cache's figures, and who this agent is.
func (a *Agent) heartbeat(ctx context.Context) (wire.Heartbeat, error) {
	hb := wire.Heartbeat{
		State:        string(telemetry.Initializing),
		AgentVersion: buildinfo.Version,
		Labels:       maps.Clone(a.cfg.Agent.Labels),
		OSBuild:      a.osBuild,
		OS:           runtime.GOOS,
		Arch:         runtime.GOARCH,
	}
	if mon := a.monitor.Load(); mon != nil {
		health := mon.Refresh(ctx)
		hb.State = string(health.State)
		for _, c := range health.Checks {
			hb.Checks = append(hb.Checks, wire.Check{Name: c.Name, Status: string(c.Status), Message: c.Message, Time: c.Time})
		}
	}
	hb.Engine.Flavor = a.cfg.Engine.Flavor
	var failed map[string]engine.Failure
	if st, err := a.engine.Status(ctx); err == nil {
		hb.Engine = reportedEngine(st)
		failed = st.Failed
	}
	hb.Rejected = a.rejected(ctx, failed)
	if a.cache != nil {
		hb.Cache = a.cacheFigures()
	}
	return hb, nil
}

// reportedEngine is the engine a heartbeat reports. While a switch
// between versions is under way (the journal holds it), the host has not
// moved yet: it reports the version it is leaving. Reporting the new one
// while its health gate runs, with the engine stopped or starting, would
// tell control that the new version runs Unhealthy, which a rollout
// counts as a failure of that version; the host reports the new version
// once the gate passed, and never when the switch is rolled back.
func reportedEngine(st engine.Status) wire.Engine {
	e := wire.Engine{Flavor: st.Flavor, Version: st.Active, Active: st.Running || st.API != nil, Healthy: st.Healthy}
	if j := st.Journal; j != nil {
		e.Version = j.From
		return e
	}
	if e.Version == "" && st.API != nil {
		e.Version = st.API.Version // an engine Berth does not manage
	}
	return e
}

// cacheFigures flattens the cache's Prometheus figures (hits, misses and
// bytes per tier, upstream fetches, digest failures) and the disk tier's
// size into name → value, for example "hits.disk" or "disk.bytes".
func (a *Agent) cacheFigures() map[string]float64 {
	out := map[string]float64{}
	d := a.cache.Disk.Stats()
	out["disk.blobs"] = float64(d.Blobs)
	out["disk.bytes"] = float64(d.Bytes)
	out["disk.maxBytes"] = float64(d.MaxSize)
	out["disk.evictions"] = float64(d.Evictions)
	out["disk.corrupt"] = float64(d.Corrupt)
	families, err := a.metrics.Gather()
	if err != nil && len(families) == 0 {
		return out
	}
	for _, f := range families {
		name, ok := strings.CutPrefix(f.GetName(), "berth_cache_")
		if !ok {
			continue
		}
		name = strings.TrimSuffix(name, "_total")
		for _, m := range f.GetMetric() {
			k := name
			for _, l := range m.GetLabel() {
				k += "." + telemetry.Name(l.GetValue())
			}
			out[k] = metricValue(m)
		}
	}
	return out
}

func metricValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return 0
}

// eventQueue is where engine events go: the daemon's Reporter, or a
// one-shot command's report.Queue (the daemon sends those later).
type eventQueue interface {
	Event(ctx context.Context, kind, message string, fields map[string]string) error
}

// engineEvents returns the engine's OnEvent: each change queued for
// control. The engine calls it without a context; appending to agent.db
// takes milliseconds, bounded here.
func engineEvents(q eventQueue, log *slog.Logger) func(engine.Event) {
	return func(ev engine.Event) {
		fields := map[string]string{"flavor": ev.Flavor}
		if ev.From != "" {
			fields["from"] = ev.From
		}
		if ev.To != "" {
			fields["to"] = ev.To
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := q.Event(ctx, "engine."+ev.Kind, ev.Message, fields); err != nil {
			log.Error("queue an engine event for control", "event", ev.Kind, "err", err)
		}
	}
}

// lastSeen is the health the last events were about, kept in agent.db so
// that a restart reports a change that happened while the agent was down,
// and not one that did not.
type lastSeen struct {
	State string            `json:"state"`
	Tiers map[string]string `json:"tiers"` // check name → status
}

const (
	reportBucket = "report"
	lastSeenKey  = "last-health"
)

// watchHealth turns the Monitor's rounds into events: "health.changed"
// when the overall state changes, "cache.tier.down" and "cache.tier.up"
// when a storage tier's check goes from ok to not ok and back.
func (a *Agent) watchHealth(ctx context.Context, mon *telemetry.Monitor) {
	var seen lastSeen
	if _, err := a.db.Get(ctx, reportBucket, lastSeenKey, &seen); err != nil {
		a.log.Warn("read the last reported health", "err", err)
	}
	var lastRound time.Time
	t := time.NewTicker(watchEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cur := mon.Current()
		if cur.State == telemetry.Initializing || !cur.Time.After(lastRound) {
			continue // no round yet, or no new one
		}
		lastRound = cur.Time
		next := lastSeen{State: string(cur.State), Tiers: map[string]string{}}
		var events []func() error
		if seen.State != "" && seen.State != next.State {
			from, to := seen.State, next.State
			a.log.Log(ctx, levelOf(to == string(telemetry.Healthy)), "host health changed", "from", from, "to", to)
			events = append(events, func() error {
				return a.reporter.Event(ctx, "health.changed", fmt.Sprintf("host health went from %s to %s", from, to),
					map[string]string{"from": from, "to": to})
			})
		}
		for _, c := range cur.Checks {
			tier, ok := strings.CutPrefix(c.Name, imagecache.TierCheckPrefix)
			if !ok {
				continue
			}
			next.Tiers[c.Name] = string(c.Status)
			was, known := seen.Tiers[c.Name]
			up, wasUp := c.Status == telemetry.OK, was == string(telemetry.OK)
			if !known || up == wasUp {
				continue
			}
			kind := "cache.tier.down"
			if up {
				kind = "cache.tier.up"
			}
			msg := c.Message
			a.log.Log(ctx, levelOf(up), strings.ReplaceAll(kind, ".", " "), "tier", tier, "message", msg)
			events = append(events, func() error {
				return a.reporter.Event(ctx, kind, msg, map[string]string{"tier": tier})
			})
		}
		for _, ev := range events {
			// A failed append is logged and not tried again: the outbox
			// counts what it refused, and the heartbeats carry the state.
			if err := ev(); err != nil && ctx.Err() == nil {
				a.log.Error("queue a health event for control", "err", err)
			}
		}
		if seen.State != next.State || !maps.Equal(seen.Tiers, next.Tiers) {
			if err := a.db.Put(ctx, reportBucket, lastSeenKey, next); err != nil && ctx.Err() == nil {
				a.log.Warn("remember the reported health", "err", err)
			}
			seen = next
		}
	}
}

// levelOf is the level of a state change's log line: info for a change
// to good, warn for one away from it.
func levelOf(good bool) slog.Level {
	if good {
		return slog.LevelInfo
	}
	return slog.LevelWarn
}
