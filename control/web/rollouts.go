package web

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/berthhq/berth/control/wire"
)

// rolloutURL is the link to one rollout's page, keeping the refresh choice.
func rolloutURL(id string, refreshOff bool) string {
	u := "/rollouts/" + url.PathEscape(id)
	if refreshOff {
		u += "?" + qRefresh + "=off"
	}
	return u
}

// rolloutsURL is the link to the list, keeping the refresh choice.
func rolloutsURL(refreshOff bool) string {
	if refreshOff {
		return "/rollouts?" + qRefresh + "=off"
	}
	return "/rollouts"
}

// RolloutsListed is how many rollouts the list shows, the newest: the
// page reloads every few seconds, and old rollouts stay in the store.
const RolloutsListed = 200

type rolloutsView struct {
	base
	Rows []rolloutRow
	// Total is how many rollouts there are, when more than the rows.
	Total int
}

// rolloutRow is one rollout of the list.
type rolloutRow struct {
	ID, URL                string
	Kind, Flavor, Version  string
	Selector               []labelChip
	State                  string
	Wave                   string
	Progress               progress
	CreatedBy              string
	CreatedRel, CreatedAbs string
}

// rolloutList serves GET /rollouts.
func (h *handler) rolloutList(w http.ResponseWriter, r *http.Request) error {
	list, err := h.rollouts.List(r.Context())
	if err != nil {
		return fmt.Errorf("list rollouts: %w", err)
	}
	now := h.now()
	off := refreshOff(r.URL.Query())
	v := rolloutsView{base: h.withRefresh(h.base(r, "Rollouts"), r.URL)}
	rollouts := list.Rollouts
	if len(rollouts) > RolloutsListed {
		v.Total, rollouts = len(rollouts), rollouts[:RolloutsListed]
	}
	for _, ro := range rollouts {
		v.Rows = append(v.Rows, rolloutRow{
			ID:         ro.ID,
			URL:        rolloutURL(ro.ID, off),
			Kind:       ro.Kind,
			Flavor:     ro.Flavor,
			Version:    ro.Version,
			Selector:   selectorChips(ro.Selector, off),
			State:      ro.State,
			Wave:       waveText(ro),
			Progress:   newProgress(ro.ByState, ro.Hosts, progressW),
			CreatedBy:  ro.CreatedBy,
			CreatedRel: relTime(now, ro.Created),
			CreatedAbs: absTime(ro.Created),
		})
	}
	h.render(w, r, http.StatusOK, "rollouts", v)
	return nil
}

type rolloutView struct {
	base
	Rollout   wire.Rollout
	ListURL   string
	Selector  []labelChip
	Waves     string
	Bake      string
	Threshold string
	Wave      string
	Progress  progress
	// States counts the hosts by state, every state in HostStates order.
	States                 []stateCount
	WaveRows               []waveRow
	Decisions              []decisionRow
	CreatedRel, CreatedAbs string
	UpdatedRel, UpdatedAbs string
	// Chart is the versions over time; nil before the first sample.
	Chart *versionChart
	// WaveStates are the state columns of the waves table.
	WaveStates []string
}

type stateCount struct {
	State string
	Count int
}

// waveRow is one wave of the waves table.
type waveRow struct {
	N       int
	Percent string
	Hosts   int
	// Counts are the wave's hosts per state, in HostStates order.
	Counts                 []stateCount
	Status                 string
	Current                bool
	Progress               progress
	StartedRel, StartedAbs string
	DoneRel, DoneAbs       string
}

// decisionRow is one decision of the history.
type decisionRow struct {
	Seq               int
	Rel, Abs          string
	Who, Action, Wave string
	// Change is the rollout's state change, "" when it stayed.
	Change     string
	Reason     string
	Controller bool
}

// rolloutPage serves GET /rollouts/{id}.
func (h *handler) rolloutPage(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	ro, err := h.rollouts.Get(r.Context(), id)
	if errors.Is(err, wire.ErrNotFound) {
		return &pageError{Status: http.StatusNotFound, Title: "No such rollout", err: err,
			Detail: fmt.Sprintf("There is no rollout with id %q.", id)}
	}
	if err != nil {
		return fmt.Errorf("read rollout %q: %w", id, err)
	}
	now := h.now()
	off := refreshOff(r.URL.Query())
	v := rolloutView{
		base:       h.withRefresh(h.base(r, "Rollout "+ro.ID), r.URL),
		Rollout:    ro,
		ListURL:    rolloutsURL(off),
		Selector:   selectorChips(ro.Selector, off),
		Waves:      percents(ro.Waves),
		Bake:       time.Duration(ro.Bake).String(),
		Threshold:  threshold(ro.RolloutSpec),
		Wave:       waveText(ro),
		Progress:   newProgress(ro.ByState, ro.Hosts, progressWideW),
		States:     countStates(ro.ByState),
		CreatedRel: relTime(now, ro.Created),
		CreatedAbs: absTime(ro.Created),
		UpdatedRel: relTime(now, ro.Updated),
		UpdatedAbs: absTime(ro.Updated),
		Chart:      newVersionChart(ro, now),
		WaveStates: wire.HostStates,
	}
	for i, ws := range ro.WaveStatus {
		v.WaveRows = append(v.WaveRows, newWaveRow(ro, i, ws, now))
	}
	for _, d := range ro.History {
		v.Decisions = append(v.Decisions, newDecisionRow(d, now))
	}
	h.render(w, r, http.StatusOK, "rollout", v)
	return nil
}

func newWaveRow(ro wire.Rollout, i int, ws wire.WaveStatus, now time.Time) waveRow {
	row := waveRow{
		N:        i + 1,
		Percent:  percent(ws.Percent),
		Hosts:    ws.Hosts,
		Counts:   knownStates(ws.ByState),
		Current:  i == ro.Wave && ro.State != wire.RolloutCompleted,
		Progress: newProgress(ws.ByState, ws.Hosts, progressNarrowW),
	}
	switch {
	case ws.Done != nil:
		row.Status = "done"
	case ws.Started == nil:
		row.Status = "waiting"
	case row.Current && ro.State != wire.RolloutRunning:
		row.Status = ro.State // paused, halted, aborted, rolled back here
	default:
		row.Status = "in progress"
	}
	if ws.Started != nil {
		row.StartedRel, row.StartedAbs = relTime(now, *ws.Started), absTime(*ws.Started)
	}
	if ws.Done != nil {
		row.DoneRel, row.DoneAbs = relTime(now, *ws.Done), absTime(*ws.Done)
	}
	return row
}

func newDecisionRow(d wire.Decision, now time.Time) decisionRow {
	row := decisionRow{
		Seq: d.Seq, Rel: relTime(now, d.Time), Abs: absTime(d.Time),
		Who: d.Who, Action: d.Action, Reason: d.Reason,
		Controller: d.Who == "controller",
	}
	switch {
	case d.From != "" && d.To != "" && d.From != d.To:
		row.Change = d.From + " → " + d.To
	case d.From == "":
		row.Change = d.To // the first decision: the state the rollout starts in
	}
	if d.Wave >= 0 {
		row.Wave = strconv.Itoa(d.Wave + 1)
	}
	return row
}

// selectorChips are a selector's labels, each linking to the fleet filtered
// by it: the hosts the rollout picks from.
func selectorChips(sel map[string]string, refreshOff bool) []labelChip {
	var chips []labelChip
	for _, k := range slices.Sorted(maps.Keys(sel)) {
		chips = append(chips, labelChip{Key: k, Value: sel[k],
			URL: fleetQuery{Labels: [][2]string{{k, sel[k]}}, RefreshOff: refreshOff}.url()})
	}
	return chips
}

// countStates lists the counts by host state in HostStates order, then any
// state this page does not know yet, so that no host goes uncounted.
func countStates(by map[string]int) []stateCount {
	out := knownStates(by)
	for _, s := range slices.Sorted(maps.Keys(by)) {
		if !slices.Contains(wire.HostStates, s) {
			out = append(out, stateCount{s, by[s]})
		}
	}
	return out
}

// knownStates lists the counts of the states of HostStates only: the
// columns of the waves table, the same for every wave.
func knownStates(by map[string]int) []stateCount {
	out := make([]stateCount, 0, len(wire.HostStates))
	for _, s := range wire.HostStates {
		out = append(out, stateCount{s, by[s]})
	}
	return out
}

// waveText is where a rollout is: "2 of 4 (10%)".
func waveText(ro wire.Rollout) string {
	n := len(ro.Waves)
	if n == 0 {
		return "—"
	}
	i := min(max(ro.Wave, 0), n-1)
	if ro.State == wire.RolloutCompleted {
		return fmt.Sprintf("all %d done", n)
	}
	return fmt.Sprintf("%d of %d (%s)", i+1, n, percent(ro.Waves[i]))
}

// percent writes a wave's percentage without float noise: 12.5%, 100%.
func percent(p float64) string { return strconv.FormatFloat(p, 'f', -1, 64) + "%" }

func percents(ps []float64) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = percent(p)
	}
	return strings.Join(s, ", ")
}

// threshold says in words when the rollout halts (wire.RolloutSpec).
func threshold(s wire.RolloutSpec) string {
	switch n, p := s.MaxFailures, s.MaxFailurePercent; {
	case n == nil && p == nil:
		return "at the first failed host"
	case p == nil:
		return fmt.Sprintf("when more than %d hosts failed", *n)
	case n == nil:
		return fmt.Sprintf("when more than %s of the hosts told failed", percent(*p))
	default:
		return fmt.Sprintf("when more than %d hosts, or more than %s of the hosts told, failed", *n, percent(*p))
	}
}

// rolloutStateClass is the CSS class of a rollout's state.
func rolloutStateClass(state string) string {
	switch state {
	case wire.RolloutRunning:
		return "ro-running"
	case wire.RolloutPaused:
		return "ro-paused"
	case wire.RolloutHalted:
		return "ro-halted"
	case wire.RolloutCompleted:
		return "ro-completed"
	case wire.RolloutAborted, wire.RolloutRolledBack:
		return "ro-ended"
	}
	return "st-unknown"
}

// hostStateClass is the CSS class of a host's state in a rollout.
func hostStateClass(state string) string {
	if slices.Contains(wire.HostStates, state) {
		return "hs-" + state
	}
	return "st-unknown"
}

// hostStateColor is the SVG fill of a host state in a rollout, the colours
// of the hs-* CSS classes (SVG fills here are attributes: the CSP allows no
// inline style).
func hostStateColor(state string) string {
	switch state {
	case wire.HostPending:
		return "#b0bec5"
	case wire.HostTold:
		return "#1565c0"
	case wire.HostUpdated:
		return "#00838f"
	case wire.HostHealthy:
		return "#2e7d32"
	case wire.HostFailed:
		return "#c62828"
	case wire.HostRolledBack:
		return "#6a1b9a"
	}
	return "#9e9e9e"
}
