package web

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/berthhq/berth/control/wire"
)

type hostView struct {
	base
	Host             wire.HostDetail
	Stale            bool
	LastRel, LastAbs string
	HeartbeatRel     string
	HeartbeatAbs     string
	FirstSeenRel     string
	FirstSeenAbs     string
	Interval         string
	Labels           []labelChip
	Checks           []checkRow
	Events           []eventRow
	History          []historyPoint
	HistoryW         int
	Cache            []keyValue
	FleetURL         string
}

type checkRow struct {
	Name, Status, Message string
	Rel, Abs              string
}

type eventRow struct {
	Kind, Message string
	Fields        []keyValue
	Rel, Abs      string
}

type keyValue struct{ Key, Value string }

// historyPoint is one heartbeat in the history strip, oldest on the left.
type historyPoint struct {
	X     int
	State string
	Color string
	Title string
}

// Geometry of the history strip.
const (
	histW   = 10
	histGap = 2
)

// host serves GET /hosts/{id}.
func (h *handler) host(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	now := h.now()
	d, err := h.store.Host(r.Context(), id, now, HistoryLen)
	if errors.Is(err, wire.ErrNotFound) {
		return &pageError{Status: http.StatusNotFound, Title: "No such host", err: err,
			Detail: fmt.Sprintf("No host with id %q has reported to this control endpoint.", id)}
	}
	if err != nil {
		return fmt.Errorf("read host %q: %w", id, err)
	}
	refreshOff := refreshOff(r.URL.Query())
	v := hostView{
		base:         h.withRefresh(h.base(r, d.ID), r.URL),
		Host:         d,
		Stale:        d.State == wire.StateStale,
		LastRel:      relTime(now, d.LastReport),
		LastAbs:      absTime(d.LastReport),
		HeartbeatRel: relTime(now, d.LastHeartbeat),
		HeartbeatAbs: absTime(d.LastHeartbeat),
		FirstSeenRel: relTime(now, d.FirstSeen),
		FirstSeenAbs: absTime(d.FirstSeen),
		Interval:     durationOrDefault(d.Interval),
		FleetURL:     fleetQuery{RefreshOff: refreshOff}.url(),
	}
	for _, k := range slices.Sorted(maps.Keys(d.Labels)) {
		v.Labels = append(v.Labels, labelChip{Key: k, Value: d.Labels[k],
			URL: fleetQuery{Labels: [][2]string{{k, d.Labels[k]}}, RefreshOff: refreshOff}.url()})
	}
	for _, c := range d.Checks {
		v.Checks = append(v.Checks, checkRow{Name: c.Name, Status: c.Status, Message: c.Message,
			Rel: relTime(now, c.Time), Abs: absTime(c.Time)})
	}
	for _, e := range d.Events {
		row := eventRow{Kind: e.Kind, Message: e.Message, Rel: relTime(now, e.Time), Abs: absTime(e.Time)}
		for _, k := range slices.Sorted(maps.Keys(e.Fields)) {
			row.Fields = append(row.Fields, keyValue{k, e.Fields[k]})
		}
		v.Events = append(v.Events, row)
	}
	// The store gives the newest first; the strip reads left to right in
	// time, like every other chart.
	for i, p := range slices.Backward(d.History) {
		x := (len(d.History) - 1 - i) * (histW + histGap)
		v.History = append(v.History, historyPoint{X: x, State: p.State, Color: stateColor(p.State),
			Title: fmt.Sprintf("#%d %s at %s", p.Seq, p.State, absTime(p.Time))})
	}
	v.HistoryW = max(1, len(d.History)*(histW+histGap))
	for _, k := range slices.Sorted(maps.Keys(d.Cache)) {
		v.Cache = append(v.Cache, keyValue{k, strconv.FormatFloat(d.Cache[k], 'f', -1, 64)})
	}
	h.render(w, r, http.StatusOK, "host", v)
	return nil
}

// durationOrDefault shows a report interval; none reads "—".
func durationOrDefault(d time.Duration) string {
	if d <= 0 {
		return "—"
	}
	return d.String()
}
