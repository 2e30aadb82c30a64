package web

import (
	"cmp"
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

// The query parameters of the fleet page. They are the page's whole state,
// so a filtered, sorted view is a link an operator can share.
const (
	qState   = "state"
	qEngine  = "engine"
	qAgent   = "agent"
	qLabel   = "label" // repeated, key=value
	qSort    = "sort"
	qLimit   = "limit"
	qCursor  = "cursor"
	qRefresh = "refresh"
)

// sortKeys are the keys wire.HostFilter.Sort accepts, each optionally
// prefixed with "-".
var sortKeys = []string{"id", "state", "engineVersion", "agentVersion", "lastReport"}

// fleetQuery is the fleet page's query, parsed and checked.
type fleetQuery struct {
	State, Engine, Agent string
	// Labels are key=value pairs in the order given.
	Labels     [][2]string
	Sort       string
	Limit      int
	Cursor     string
	RefreshOff bool
}

// parseFleetQuery checks q. Its errors are 400 pages that name the bad
// value and what is allowed, so a hand-edited URL explains itself.
func parseFleetQuery(q url.Values) (fleetQuery, error) {
	fq := fleetQuery{
		State:      q.Get(qState),
		Engine:     q.Get(qEngine),
		Agent:      q.Get(qAgent),
		Sort:       q.Get(qSort),
		Cursor:     q.Get(qCursor),
		RefreshOff: refreshOff(q),
	}
	if fq.State != "" && !slices.Contains(states, fq.State) {
		return fq, badFilter(fmt.Sprintf("The state %q is not a host state.", fq.State), states)
	}
	if fq.Sort != "" && !slices.Contains(sortKeys, strings.TrimPrefix(fq.Sort, "-")) {
		allowed := slices.Clone(sortKeys)
		for _, k := range sortKeys {
			allowed = append(allowed, "-"+k)
		}
		return fq, badFilter(fmt.Sprintf("The sort %q is not a column the fleet sorts by.", fq.Sort), allowed)
	}
	for _, l := range q[qLabel] {
		if l == "" {
			continue // the empty box of the filter form
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return fq, badFilter(fmt.Sprintf("The label filter %q is not key=value.", l), []string{"key=value, for example ring=canary"})
		}
		fq.Labels = append(fq.Labels, [2]string{k, v})
	}
	if s := q.Get(qLimit); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > wire.MaxLimit {
			return fq, badFilter(fmt.Sprintf("The limit %q is not a number of hosts from 1 to %d.", s, wire.MaxLimit), []string{fmt.Sprintf("1 to %d", wire.MaxLimit)})
		}
		fq.Limit = n
	}
	return fq, nil
}

// badFilter is the 400 page of a bad query.
func badFilter(detail string, allowed []string) *pageError {
	return &pageError{Status: http.StatusBadRequest, Title: "Bad filter", Detail: detail, Allowed: allowed}
}

// filter is fq as the store takes it.
func (fq fleetQuery) filter() wire.HostFilter {
	f := wire.HostFilter{
		State:         fq.State,
		EngineVersion: fq.Engine,
		AgentVersion:  fq.Agent,
		Sort:          fq.Sort,
		Limit:         fq.Limit,
		Cursor:        fq.Cursor,
	}
	if len(fq.Labels) > 0 {
		f.Labels = make(map[string]string, len(fq.Labels))
		for _, kv := range fq.Labels {
			f.Labels[kv[0]] = kv[1]
		}
	}
	return f
}

// url is the fleet page's link for fq.
func (fq fleetQuery) url() string {
	q := url.Values{}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	set(qState, fq.State)
	set(qEngine, fq.Engine)
	set(qAgent, fq.Agent)
	for _, kv := range fq.Labels {
		q.Add(qLabel, kv[0]+"="+kv[1])
	}
	set(qSort, fq.Sort)
	if fq.Limit != 0 {
		q.Set(qLimit, strconv.Itoa(fq.Limit))
	}
	set(qCursor, fq.Cursor)
	if fq.RefreshOff {
		q.Set(qRefresh, "off")
	}
	return pathWithQuery("/", q)
}

// with returns the link of fq changed by f, back on the first page: a new
// filter or order makes the old cursor meaningless.
func (fq fleetQuery) with(f func(*fleetQuery)) string {
	c := fq
	c.Labels = slices.Clone(fq.Labels)
	c.Cursor = ""
	f(&c)
	return c.url()
}

// hostURL is the link to one host's page, keeping the refresh choice.
func hostURL(id string, refreshOff bool) string {
	u := "/hosts/" + url.PathEscape(id)
	if refreshOff {
		u += "?" + qRefresh + "=off"
	}
	return u
}

type fleetView struct {
	base
	Query fleetQuery
	// Filtered says whether any filter is on, for the "clear" link.
	Filtered bool
	ClearURL string
	// The options of the filter form's selects.
	States, Engines, Agents []option
	// LabelChips are the active label filters, each with the link that
	// drops it.
	LabelChips []labelChip
	Columns    []column
	Rows       []hostRow
	Total      int
	FleetTotal int
	// NextURL pages on; FirstURL goes back to the start.
	NextURL, FirstURL string
	Charts            []chart
}

type option struct {
	Value, Label string
	Selected     bool
}

type labelChip struct {
	Key, Value, URL string
}

type column struct {
	Label string
	// URL sorts by the column ("" for a column that does not sort); Order
	// is "asc" or "desc" when the table is sorted by it.
	URL   string
	Order string
}

type hostRow struct {
	ID, URL                  string
	State, ReportedState     string
	EngineFlavor, EngineVers string
	AgentVersion             string
	LastRel, LastAbs         string
	Labels                   []labelChip
}

// fleet serves GET /.
func (h *handler) fleet(w http.ResponseWriter, r *http.Request) error {
	fq, err := parseFleetQuery(r.URL.Query())
	if err != nil {
		return err
	}
	ctx := r.Context()
	now := h.now()
	page, err := h.store.Hosts(ctx, fq.filter(), now)
	if errors.Is(err, wire.ErrBadFilter) {
		// The checks above pass only a cursor the store may refuse.
		return &pageError{Status: http.StatusBadRequest, Title: "Bad filter", err: err,
			Detail:  fmt.Sprintf("The store refused the filter: %v. A cursor is only good for the filter and order it was made for.", err),
			Allowed: []string{"the links of this page", "no cursor (the first page)"}}
	}
	if err != nil {
		return fmt.Errorf("list hosts: %w", err)
	}
	counts, err := h.store.Counts(ctx, now)
	if err != nil {
		return fmt.Errorf("count hosts: %w", err)
	}

	v := fleetView{
		base:       h.withRefresh(h.base(r, "Fleet"), r.URL),
		Query:      fq,
		Total:      page.Total,
		FleetTotal: counts.Total,
		ClearURL:   fleetQuery{Sort: fq.Sort, RefreshOff: fq.RefreshOff}.url(),
	}
	v.Filtered = fq.State != "" || fq.Engine != "" || fq.Agent != "" || len(fq.Labels) > 0
	v.States = options(states, fq.State)
	v.Engines = options(slices.SortedFunc(maps.Keys(counts.ByEngineVersion), compareVersions), fq.Engine)
	v.Agents = options(slices.SortedFunc(maps.Keys(counts.ByAgentVersion), compareVersions), fq.Agent)
	for i, kv := range fq.Labels {
		v.LabelChips = append(v.LabelChips, labelChip{Key: kv[0], Value: kv[1], URL: fq.with(func(c *fleetQuery) {
			c.Labels = slices.Delete(c.Labels, i, i+1)
		})})
	}
	v.Columns = fq.columns()
	for _, host := range page.Hosts {
		v.Rows = append(v.Rows, h.row(fq, host, now))
	}
	if page.Next != "" {
		v.NextURL = fq.with(func(c *fleetQuery) { c.Cursor = page.Next })
	}
	if fq.Cursor != "" {
		v.FirstURL = fq.with(func(*fleetQuery) {})
	}
	v.Charts = fleetCharts(counts, fq)
	h.render(w, r, http.StatusOK, "fleet", v)
	return nil
}

// row is one host of the table.
func (h *handler) row(fq fleetQuery, host wire.Host, now time.Time) hostRow {
	row := hostRow{
		ID:            host.ID,
		URL:           hostURL(host.ID, fq.RefreshOff),
		State:         host.State,
		ReportedState: host.ReportedState,
		EngineFlavor:  host.Engine.Flavor,
		EngineVers:    host.Engine.Version,
		AgentVersion:  host.AgentVersion,
		LastRel:       relTime(now, host.LastReport),
		LastAbs:       absTime(host.LastReport),
	}
	for _, k := range slices.Sorted(maps.Keys(host.Labels)) {
		val := host.Labels[k]
		row.Labels = append(row.Labels, labelChip{Key: k, Value: val, URL: fq.with(func(c *fleetQuery) {
			c.Labels = slices.DeleteFunc(c.Labels, func(kv [2]string) bool { return kv[0] == k })
			c.Labels = append(c.Labels, [2]string{k, val})
		})})
	}
	return row
}

// columns are the table's headers: a click sorts by the column, a second
// click reverses it.
func (fq fleetQuery) columns() []column {
	cols := []struct{ label, key string }{
		{"Host", "id"}, {"State", "state"}, {"Engine", "engineVersion"},
		{"Agent", "agentVersion"}, {"Last report", "lastReport"}, {"Labels", ""},
	}
	cur := fq.Sort
	if cur == "" {
		cur = "id" // the store's default order
	}
	out := make([]column, 0, len(cols))
	for _, c := range cols {
		col := column{Label: c.label}
		if c.key == "" {
			out = append(out, col)
			continue
		}
		next := c.key
		switch cur {
		case c.key:
			col.Order = "asc"
			next = "-" + c.key
		case "-" + c.key:
			col.Order = "desc"
		}
		col.URL = fq.with(func(q *fleetQuery) { q.Sort = next })
		out = append(out, col)
	}
	return out
}

// options are a select's options: "any" first, then values, with the
// current value kept even when no host has it now.
func options(values []string, cur string) []option {
	out := []option{{Value: "", Label: "any", Selected: cur == ""}}
	found := cur == ""
	for _, v := range values {
		label := v
		if v == "" {
			continue // "" means "no filter" in the form; the chart shows it
		}
		out = append(out, option{Value: v, Label: label, Selected: v == cur})
		found = found || v == cur
	}
	if !found {
		out = append(out, option{Value: cur, Label: cur, Selected: true})
	}
	return out
}

// compareVersions orders version strings by their numeric parts, so that
// 27.10.0 comes after 27.9.1; what is not a number compares as text.
func compareVersions(a, b string) int {
	as, bs := strings.FieldsFunc(a, isVersionSep), strings.FieldsFunc(b, isVersionSep)
	for i := 0; i < len(as) && i < len(bs); i++ {
		an, aerr := strconv.Atoi(as[i])
		bn, berr := strconv.Atoi(bs[i])
		var c int
		if aerr == nil && berr == nil {
			c = cmp.Compare(an, bn)
		} else {
			c = strings.Compare(as[i], bs[i])
		}
		if c != 0 {
			return c
		}
	}
	return cmp.Or(cmp.Compare(len(as), len(bs)), strings.Compare(a, b))
}

func isVersionSep(r rune) bool { return r == '.' || r == '-' || r == '+' || r == '~' }
