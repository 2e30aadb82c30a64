package web

import (
	"cmp"
	"maps"
	"slices"
	"unicode/utf8"

	"github.com/berthhq/berth/control/wire"
)

// The geometry of a bar chart, in SVG user units (pixels at 100%).
const (
	chartLabelW = 120 // the label column
	chartBarW   = 200 // the longest bar
	chartCountW = 50  // the count after the bar
	chartRowH   = 22
	chartBarH   = 16
	// chartMaxBars keeps the chart small; the versions past it add up in
	// one "other" bar.
	chartMaxBars = 8
)

// chart is one small horizontal bar chart, rendered as inline SVG by the
// server: no script, no library, and it prints.
type chart struct {
	ID, Title     string
	Width, Height int
	Bars          []bar
}

// bar is one bar of a chart, with its geometry worked out here so the
// template only places numbers.
type bar struct {
	// Label is shown (shortened); Full is the whole value, in the tooltip.
	Label, Full string
	Count       int
	Y, TextY    int
	Width       int
	CountX      int
	Color       string
	// URL filters the fleet by the bar's value; "" for no link.
	URL string
}

// fleetCharts are the counts by state and by engine version.
func fleetCharts(c wire.Counts, fq fleetQuery) []chart {
	var byState []bar
	for _, s := range states {
		byState = append(byState, bar{Label: s, Full: s, Count: c.ByState[s], Color: stateColor(s),
			URL: fq.with(func(q *fleetQuery) { q.State = s })})
	}
	// A state this page does not know yet is still counted.
	for _, s := range slices.Sorted(maps.Keys(c.ByState)) {
		if !slices.Contains(states, s) {
			byState = append(byState, bar{Label: s, Full: s, Count: c.ByState[s], Color: stateColor(s)})
		}
	}

	versions := slices.SortedFunc(maps.Keys(c.ByEngineVersion), func(a, b string) int {
		return cmp.Or(cmp.Compare(c.ByEngineVersion[b], c.ByEngineVersion[a]), -compareVersions(a, b))
	})
	var byEngine []bar
	other := 0
	for i, v := range versions {
		if i >= chartMaxBars-1 && len(versions) > chartMaxBars {
			other += c.ByEngineVersion[v]
			continue
		}
		b := bar{Label: v, Full: v, Count: c.ByEngineVersion[v], Color: "#455a64"}
		if v == "" {
			b.Label, b.Full = "(none)", "no engine reported"
		} else {
			b.URL = fq.with(func(q *fleetQuery) { q.Engine = v })
		}
		byEngine = append(byEngine, b)
	}
	if other > 0 {
		byEngine = append(byEngine, bar{Label: "other", Full: "other versions", Count: other, Color: "#90a4ae"})
	}
	return []chart{
		layout("chart-state", "Hosts by state", byState),
		layout("chart-engine", "Hosts by engine version", byEngine),
	}
}

// layout places the bars: widths proportional to the largest count.
func layout(id, title string, bars []bar) chart {
	most := 0
	for _, b := range bars {
		most = max(most, b.Count)
	}
	for i := range bars {
		b := &bars[i]
		b.Y = i * chartRowH
		b.TextY = b.Y + chartBarH - 4
		if most > 0 {
			b.Width = b.Count * chartBarW / most
		}
		if b.Count > 0 {
			b.Width = max(b.Width, 2) // a host is never invisible
		}
		b.CountX = chartLabelW + b.Width + 6
		b.Label = shorten(b.Label, 16)
	}
	return chart{
		ID: id, Title: title,
		Width:  chartLabelW + chartBarW + chartCountW,
		Height: max(1, len(bars)) * chartRowH,
		Bars:   bars,
	}
}

// shorten cuts s to n runes with an ellipsis.
func shorten(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}
