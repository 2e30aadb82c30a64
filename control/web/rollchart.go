package web

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/berthhq/berth/control/wire"
)

// The geometry of a progress bar: a rollout's hosts by state, one
// segment per state, in SVG user units.
const (
	progressW       = 200 // in the list
	progressNarrowW = 120 // in the waves table, one of many columns
	progressWideW   = 600 // at the top of a rollout's page
	progressH       = 14
)

// progress is a stacked bar of hosts by state, its geometry worked out here
// so that the template only places numbers.
type progress struct {
	Width, Height int
	Total         int
	Segments      []segment
	// Label says it in words, for the tooltip and screen readers.
	Label string
}

type segment struct {
	State        string
	Count        int
	X, Width     int
	Color, Class string
}

// newProgress lays out the counts by on a bar of width for total hosts.
// It fills from the left like any progress bar: healthy first, pending
// last, the grey of what is still to do. Edges are placed by the running
// sum, so the segments tile the bar exactly whatever the rounding.
func newProgress(by map[string]int, total, width int) progress {
	counts := countStates(by)
	slices.SortStableFunc(counts, func(a, b stateCount) int {
		return cmp.Compare(progressRank(a.State), progressRank(b.State))
	})
	sum := 0
	for _, c := range counts {
		sum += max(c.Count, 0)
	}
	// Counts over the total (a host joined between two reads) still fit.
	total = max(total, sum)
	p := progress{Width: width, Height: progressH, Total: total}
	cum := 0
	for _, c := range counts {
		if c.Count <= 0 {
			continue
		}
		x0 := cum * width / total
		cum += c.Count
		p.Segments = append(p.Segments, segment{State: c.State, Count: c.Count, X: x0, Width: cum*width/total - x0,
			Color: hostStateColor(c.State), Class: hostStateClass(c.State)})
	}
	words := []string{fmt.Sprintf("%d of %d healthy", by[wire.HostHealthy], total)}
	for _, s := range []string{wire.HostFailed, wire.HostRolledBack} {
		if by[s] > 0 {
			words = append(words, fmt.Sprintf("%d %s", by[s], s))
		}
	}
	p.Label = strings.Join(words, ", ")
	return p
}

// progressRank orders the states of a progress bar; a state this page
// does not know yet goes before pending.
func progressRank(state string) int {
	order := []string{wire.HostHealthy, wire.HostUpdated, wire.HostTold, wire.HostFailed, wire.HostRolledBack}
	if i := slices.Index(order, state); i >= 0 {
		return i
	}
	if state == wire.HostPending {
		return len(order) + 1
	}
	return len(order)
}

// The geometry of the versions chart: the plot, and the margins for the
// count axis on the left and the time axis below.
const (
	vcPlotW  = 600
	vcPlotH  = 160
	vcLeft   = 40
	vcTop    = 16
	vcBottom = 22
	vcRight  = 12
	// vcMaxSeries keeps the legend readable; the versions past it (by
	// their peak count) add up in one "other" band.
	vcMaxSeries = 8
)

// versionChart is a rollout's hosts by reported version over time: one
// band per version, stacked, a step at each sample (counts hold until the
// next one), with a line where each wave started.
type versionChart struct {
	Width, Height  int
	PlotX, PlotY   int
	PlotW, PlotH   int
	Bottom         int // PlotY + PlotH, the time axis
	YMax           int
	Series         []series
	Markers        []marker
	Start, End     string
	StartX, EndX   int
	TimeY, YLabelX int
	Label          string
}

// series is one version's band.
type series struct {
	Version string // as reported; "" for hosts that reported none
	Label   string // shortened, "(none)", "other"
	Target  bool
	Color   string
	Points  string
	// Last is the count at the last sample.
	Last int
}

type marker struct {
	X     int
	Label string
	Title string
}

// vcPalette colours the versions other than the target (green) and none
// (grey), in order.
var vcPalette = []string{"#1565c0", "#ef6c00", "#6a1b9a", "#00838f", "#8d6e63", "#c2185b", "#546e7a"}

// newVersionChart draws ro.Versions up to now (a rollout still moving) or
// its last update; nil when there is no sample yet.
func newVersionChart(ro wire.Rollout, now time.Time) *versionChart {
	samples := ro.Versions
	if len(samples) == 0 {
		return nil
	}
	t0 := samples[0].Time
	end := ro.Updated
	if ro.State == wire.RolloutRunning || ro.State == wire.RolloutPaused {
		end = now
	}
	// The last sample holds until the end; when it is the end (a rollout
	// that finished on it), it still gets a twentieth of the width, or it
	// would not show at all.
	last := samples[len(samples)-1].Time
	end = later(end, last.Add(max(wire.MinSampleGap, last.Sub(t0)/20)))
	span := max(end.Sub(t0), time.Second)
	clock := "15:04:05"
	if t0.UTC().YearDay() != end.UTC().YearDay() || span > 24*time.Hour {
		clock = "Jan 2 15:04" // the day matters, the second not
	}
	c := &versionChart{
		Width: vcLeft + vcPlotW + vcRight, Height: vcTop + vcPlotH + vcBottom,
		PlotX: vcLeft, PlotY: vcTop, PlotW: vcPlotW, PlotH: vcPlotH, Bottom: vcTop + vcPlotH,
		Start: t0.UTC().Format(clock), End: end.UTC().Format(clock + " UTC"),
		StartX: vcLeft, EndX: vcLeft + vcPlotW, TimeY: vcTop + vcPlotH + 16, YLabelX: vcLeft - 6,
	}
	x := func(t time.Time) float64 {
		return float64(vcLeft) + float64(vcPlotW)*float64(t.Sub(t0))/float64(span)
	}
	for _, s := range samples {
		total := 0
		for _, n := range s.Counts {
			total += max(n, 0)
		}
		c.YMax = max(c.YMax, total)
	}
	c.YMax = max(c.YMax, 1)
	y := func(n int) float64 { return float64(vcTop+vcPlotH) - float64(vcPlotH)*float64(n)/float64(c.YMax) }
	samples, xs := thin(samples, x)
	xs = append(xs, x(end))
	c.Series = versionSeries(ro.Version, samples, xs, y)
	for i, ws := range ro.WaveStatus {
		if ws.Started == nil {
			continue
		}
		mx := int(x(later(*ws.Started, t0)) + 0.5)
		c.Markers = append(c.Markers, marker{X: mx, Label: "W" + strconv.Itoa(i+1),
			Title: fmt.Sprintf("wave %d (%s) started %s", i+1, percent(ws.Percent), absTime(*ws.Started))})
	}
	c.Label = fmt.Sprintf("hosts by %s version from %s to %s", ro.Kind, c.Start, c.End)
	return c
}

// thin keeps at most one sample per unit of the plot's width, the last of
// those that fall in it, drawn from where the first of them starts, and
// returns them with their x. The page stays small however long the rollout
// runs: a sample every 5 s for a day is 17,280, and the page reloads every
// few seconds.
func thin(samples []wire.VersionSample, x func(time.Time) float64) ([]wire.VersionSample, []float64) {
	out := make([]wire.VersionSample, 0, min(len(samples), vcPlotW+1))
	xs := make([]float64, 0, cap(out)+1)
	for _, s := range samples {
		sx := x(s.Time)
		if n := len(out); n > 0 && math.Floor(xs[n-1]) == math.Floor(sx) {
			out[n-1] = s
			continue
		}
		out = append(out, s)
		xs = append(xs, sx)
	}
	return out, xs
}

// versionSeries groups the samples' counts into the chart's bands, bottom
// up: the target first (the band that grows), then the other versions,
// newest first, then the rest as "other", then hosts with none. xs are
// the samples' x and, last, where the last one ends.
func versionSeries(target string, samples []wire.VersionSample, xs []float64, y func(int) float64) []series {
	peak := map[string]int{}
	for _, s := range samples {
		for v, n := range s.Counts {
			peak[v] = max(peak[v], n)
		}
	}
	others := slices.DeleteFunc(slices.Collect(maps.Keys(peak)), func(v string) bool { return v == target || v == "" })
	slices.SortFunc(others, func(a, b string) int { return cmp.Or(cmp.Compare(peak[b], peak[a]), -compareVersions(a, b)) })
	room := vcMaxSeries - 2 // the target and none always have their band
	var rest []string
	if len(others) > room {
		others, rest = others[:room-1], others[room-1:]
	}
	slices.SortFunc(others, func(a, b string) int { return -compareVersions(a, b) })

	type group struct {
		s        series
		versions []string
	}
	groups := []group{{series{Version: target, Label: shorten(target, 20) + " (target)", Target: true, Color: "#2e7d32"}, []string{target}}}
	for i, v := range others {
		groups = append(groups, group{series{Version: v, Label: shorten(v, 20), Color: vcPalette[i%len(vcPalette)]}, []string{v}})
	}
	if len(rest) > 0 {
		groups = append(groups, group{series{Version: "other", Label: fmt.Sprintf("other (%d versions)", len(rest)), Color: "#90a4ae"}, rest})
	}
	groups = append(groups, group{series{Label: "(none)", Color: "#cfd8dc"}, []string{""}})

	lower := make([]int, len(samples))
	var out []series
	for _, g := range groups {
		counts := make([]int, len(samples))
		for i, s := range samples {
			for _, v := range g.versions {
				counts[i] += max(s.Counts[v], 0)
			}
		}
		if !slices.ContainsFunc(counts, func(n int) bool { return n > 0 }) && !g.s.Target {
			continue // a version no sample has: no band, no legend entry
		}
		g.s.Points = bandPoints(xs, lower, counts, y)
		g.s.Last = counts[len(counts)-1]
		for i := range lower {
			lower[i] += counts[i]
		}
		out = append(out, g.s)
	}
	return out
}

// bandPoints is the polygon of one band: along its top from left to right,
// then back along its bottom, flat from each sample to the next (xs has
// one more entry than the samples: where the last one ends).
func bandPoints(xs []float64, lower, counts []int, y func(int) float64) string {
	var b strings.Builder
	pt := func(x, y float64) {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strconv.FormatFloat(x, 'f', 1, 64))
		b.WriteByte(',')
		b.WriteString(strconv.FormatFloat(y, 'f', 1, 64))
	}
	for i := range counts {
		top := y(lower[i] + counts[i])
		pt(xs[i], top)
		pt(xs[i+1], top)
	}
	for i := len(counts) - 1; i >= 0; i-- {
		bottom := y(lower[i])
		pt(xs[i+1], bottom)
		pt(xs[i], bottom)
	}
	return b.String()
}

func later(a, b time.Time) time.Time {
	if a.Before(b) {
		return b
	}
	return a
}
