package store

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/berthhq/berth/internal/clip"

	"github.com/berthhq/berth/control/wire"
)

// The states a wire.HostFilter may ask for.
var filterStates = []string{"Healthy", "Degraded", "Unhealthy", "Initializing", wire.StateStale}

// sortKeys maps HostFilter.Sort to its SQL expression; now is the
// placeholder of the current time in unix ms, for the effective state.
var sortKeys = map[string]func(now string) string{
	"id":            func(string) string { return "h.id" },
	"state":         stateExpr,
	"engineVersion": func(string) string { return "h.engine_version" },
	"agentVersion":  func(string) string { return "h.agent_version" },
	"lastReport":    func(string) string { return "h.last_report_ms" },
}

const sortNames = "id, state, engineVersion, agentVersion, lastReport (a leading - reverses)"

// staleCond is true for a host with no record for StaleAfter intervals;
// now is the placeholder of the current time in unix ms. isStale is the
// same test in Go.
func staleCond(now string) string {
	return fmt.Sprintf("h.last_report_ms + %d * h.interval_ms < %s", StaleAfter, now)
}

// stateExpr is a host's effective state: Stale or the reported one.
func stateExpr(now string) string {
	return fmt.Sprintf("(CASE WHEN %s THEN '%s' ELSE h.state END)", staleCond(now), wire.StateStale)
}

const hostCols = `h.id, h.state, h.engine_flavor, h.engine_version, h.engine_active, h.engine_healthy,
	h.agent_version, h.os_build, h.labels, h.checks, h.cache, h.dropped_heartbeats, h.dropped_events,
	h.interval_ms, h.first_seen_ms, h.last_report_ms, h.last_heartbeat_ms, h.last_seq,
	h.os, h.arch, h.rejected, COALESCE(p.engine, ''), COALESCE(p.agent, '')`

// hostFrom is what hostCols reads from: the host and its pins, if any.
const hostFrom = " FROM hosts h LEFT JOIN pins p ON p.host_id = h.id"

// cursor is what HostPage.Next encodes: the sort and the last host's key,
// so the next page starts after it (keyset paging: stable under inserts,
// and as cheap on page 100 as on page 1).
type cursor struct {
	V    int    `json:"v"`
	Sort string `json:"sort"`
	Key  string `json:"key,omitempty"`
	Num  int64  `json:"num,omitempty"`
	ID   string `json:"id"`
}

// Hosts returns one page of the hosts f selects, in f's order, with how
// many match in all. A host is Stale when now is more than StaleAfter
// intervals past its last report; it then matches only the Stale filter.
// An unknown state or sort, a limit out of range or a foreign cursor is
// ErrBadFilter.
func (s *Store) Hosts(ctx context.Context, f wire.HostFilter, now time.Time) (wire.HostPage, error) {
	q, err := planHosts(f, now)
	if err != nil {
		return wire.HostPage{}, err
	}
	var page wire.HostPage
	if err := s.r.QueryRowContext(ctx, q.count, q.countArgs...).Scan(&page.Total); err != nil {
		return wire.HostPage{}, fmt.Errorf("count hosts: %w", err)
	}
	rows, err := s.r.QueryContext(ctx, q.list, q.listArgs...)
	if err != nil {
		return wire.HostPage{}, fmt.Errorf("list hosts: %w", err)
	}
	defer rows.Close()
	hosts := []wire.Host{}
	for rows.Next() {
		h, err := scanHost(rows, now)
		if err != nil {
			return wire.HostPage{}, fmt.Errorf("list hosts: %w", err)
		}
		hosts = append(hosts, h)
	}
	if err := rows.Err(); err != nil {
		return wire.HostPage{}, fmt.Errorf("list hosts: %w", err)
	}
	page.Hosts, page.Next = pageOf(hosts, q.limit, q.sort)
	return page, nil
}

// hostsQuery is the SQL a HostFilter becomes: the count of the hosts that
// match and one page of them (limit+1 rows, the extra one saying there is
// a next page), each with its own arguments.
type hostsQuery struct {
	count     string
	countArgs []any
	list      string
	listArgs  []any
	sort      string // f.Sort, "id" when empty
	limit     int
}

// planHosts checks f and turns it into SQL; now decides which hosts are
// Stale. An unknown state or sort, a limit out of range or a foreign
// cursor is ErrBadFilter.
func planHosts(f wire.HostFilter, now time.Time) (hostsQuery, error) {
	o, err := orderOf(f.Sort, f.Limit)
	if err != nil {
		return hostsQuery{}, err
	}
	a := &sqlArgs{now: now.UnixMilli()}
	where, err := filterConds(f, a)
	if err != nil {
		return hostsQuery{}, err
	}
	// The cursor is checked after the filter, as Hosts always did, so a
	// filter with two faults is told of the same one.
	c, err := readCursor(f.Cursor, o.sort)
	if err != nil {
		return hostsQuery{}, err
	}
	q := hostsQuery{sort: o.sort, limit: o.limit}
	q.count = "SELECT COUNT(*) FROM hosts h" + whereClause(where)
	// The count's arguments stop here: its query must not see a parameter
	// it does not use.
	q.countArgs = slices.Clone(a.vals)
	if labelsOnly(f) {
		q.count, q.countArgs = labelCount(f.Labels)
	}

	keyExpr := o.keyExpr(a)
	if f.Cursor != "" {
		where = append(where, cursorCond(o, keyExpr, c, a))
	}
	limit := a.add(int64(o.limit + 1))
	q.list = "SELECT " + hostCols + hostFrom + whereClause(where) + orderClause(keyExpr, o.desc, limit)
	q.listArgs = a.vals
	return q, nil
}

// hostOrder is how a HostFilter sorts and pages.
type hostOrder struct {
	sort  string // HostFilter.Sort, "id" when empty
	key   string // sort without its "-": a sortKeys entry
	desc  bool
	limit int // HostFilter.Limit, wire.DefaultLimit when 0
}

// orderOf checks a HostFilter's sort and limit and fills in their
// defaults; an unknown sort or a limit out of range is ErrBadFilter.
func orderOf(sort string, limit int) (hostOrder, error) {
	o := hostOrder{sort: sort, limit: limit}
	if o.sort == "" {
		o.sort = "id"
	}
	o.desc = strings.HasPrefix(o.sort, "-")
	o.key = strings.TrimPrefix(o.sort, "-")
	if _, ok := sortKeys[o.key]; !ok {
		return hostOrder{}, fmt.Errorf("%w: sort %q: want one of %s", ErrBadFilter, clip.String(sort, quoteLen), sortNames)
	}
	switch {
	case limit == 0:
		o.limit = wire.DefaultLimit
	case limit < 0 || limit > wire.MaxLimit:
		return hostOrder{}, fmt.Errorf("%w: limit %d: want 1..%d (0 for %d)", ErrBadFilter, limit, wire.MaxLimit, wire.DefaultLimit)
	}
	return o, nil
}

// keyExpr is the SQL expression o sorts by. Only the effective state
// depends on the current time, so only it binds now: a query that does
// not use a parameter must not carry it.
func (o hostOrder) keyExpr(a *sqlArgs) string {
	if o.key == "state" {
		return sortKeys[o.key](a.nowArg())
	}
	return sortKeys[o.key]("")
}

// sqlArgs collects a query's arguments and names their placeholders ($1,
// $2, …). The current time is bound once, when first used.
type sqlArgs struct {
	vals []any
	now  int64 // unix ms
	nowP string
}

// add binds v and returns its placeholder.
func (a *sqlArgs) add(v any) string {
	a.vals = append(a.vals, v)
	return "$" + strconv.Itoa(len(a.vals))
}

// nowArg returns the placeholder of the current time, binding it on the
// first call.
func (a *sqlArgs) nowArg() string {
	if a.nowP == "" {
		a.nowP = a.add(a.now)
	}
	return a.nowP
}

// filterConds returns the WHERE conditions of f's state, versions and
// labels (labels in key order, so the SQL is the same for the same
// filter), binding their values in a. An unknown state is ErrBadFilter.
func filterConds(f wire.HostFilter, a *sqlArgs) ([]string, error) {
	var where []string
	switch f.State {
	case "":
	case wire.StateStale:
		where = append(where, staleCond(a.nowArg()))
	case "Healthy", "Degraded", "Unhealthy", "Initializing":
		where = append(where, "h.state = "+a.add(f.State)+" AND NOT ("+staleCond(a.nowArg())+")")
	default:
		return nil, fmt.Errorf("%w: state %q: want one of %s", ErrBadFilter, clip.String(f.State, quoteLen), strings.Join(filterStates, ", "))
	}
	if f.EngineVersion != "" {
		where = append(where, "h.engine_version = "+a.add(f.EngineVersion))
	}
	if f.AgentVersion != "" {
		where = append(where, "h.agent_version = "+a.add(f.AgentVersion))
	}
	for _, k := range slices.Sorted(maps.Keys(f.Labels)) {
		where = append(where, "EXISTS (SELECT 1 FROM host_labels l WHERE l.host_id = h.id AND l.key = "+
			a.add(k)+" AND l.value = "+a.add(f.Labels[k])+")")
	}
	return where, nil
}

// labelsOnly reports whether f filters by labels and nothing else.
func labelsOnly(f wire.HostFilter) bool {
	return len(f.Labels) > 0 && f.State == "" && f.EngineVersion == "" && f.AgentVersion == ""
}

// labelCount counts the hosts that have every label of labels from
// host_labels alone, whose rows all belong to a host (a host's labels are
// written and forgotten with its row, in one transaction). Counting
// through hosts would visit each match's row: hosts is rewritten by every
// report, so few of its pages are marked all-visible and an index-only
// look-up becomes a read of the row, one random page a match, half a
// second for the 10,000 hosts of a label in a fleet of a million that no
// longer fits in memory; host_labels changes only with a label.
func labelCount(labels map[string]string) (string, []any) {
	a := &sqlArgs{}
	var b strings.Builder
	for i, k := range slices.Sorted(maps.Keys(labels)) {
		if i == 0 {
			b.WriteString("SELECT COUNT(*) FROM host_labels l WHERE l.key = " + a.add(k) + " AND l.value = " + a.add(labels[k]))
			continue
		}
		b.WriteString(" AND EXISTS (SELECT 1 FROM host_labels m WHERE m.host_id = l.host_id AND m.key = " + a.add(k) + " AND m.value = " + a.add(labels[k]) + ")")
	}
	return b.String(), a.vals
}

// readCursor decodes HostFilter.Cursor s ("" is the first page, the zero
// cursor) and checks it was made for sort; anything else is ErrBadFilter.
func readCursor(s, sort string) (cursor, error) {
	if s == "" {
		return cursor{}, nil
	}
	c, err := decodeCursor(s)
	if err != nil {
		return cursor{}, err
	}
	if c.Sort != sort {
		return cursor{}, fmt.Errorf("%w: cursor made for sort %q, not %q", ErrBadFilter, c.Sort, sort)
	}
	return c, nil
}

// cursorCond is the keyset condition that starts a page after cursor c:
// past c's key in o's direction, ties broken by the host id.
func cursorCond(o hostOrder, keyExpr string, c cursor, a *sqlArgs) string {
	var key string
	if o.key == "lastReport" {
		key = a.add(c.Num)
	} else {
		key = a.add(c.Key)
	}
	op := ">"
	if o.desc {
		op = "<"
	}
	return fmt.Sprintf("(%s %s %s OR (%s = %s AND h.id %s %s))", keyExpr, op, key, keyExpr, key, op, a.add(c.ID))
}

// whereClause joins conditions into a WHERE clause, "" for none.
func whereClause(conds []string) string {
	if len(conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(conds, " AND ")
}

// orderClause sorts by keyExpr then the host id, both in one direction,
// and takes limit (a placeholder) rows.
func orderClause(keyExpr string, desc bool, limit string) string {
	dir := "ASC"
	if desc {
		dir = "DESC"
	}
	return fmt.Sprintf(" ORDER BY %s %s, h.id %s LIMIT %s", keyExpr, dir, dir, limit)
}

// pageOf cuts the up to limit+1 hosts read to limit and, when there was
// one more, returns the cursor that starts the next page after the last.
func pageOf(hosts []wire.Host, limit int, sortName string) ([]wire.Host, string) {
	if len(hosts) <= limit {
		return hosts, ""
	}
	hosts = hosts[:limit]
	return hosts, encodeCursor(cursorAfter(hosts[limit-1], sortName))
}

// cursorAfter is the cursor of the page that starts after host last in
// order sortName: its sort key and id.
func cursorAfter(last wire.Host, sortName string) cursor {
	c := cursor{V: 1, Sort: sortName, ID: last.ID}
	switch strings.TrimPrefix(sortName, "-") {
	case "state":
		c.Key = last.State
	case "engineVersion":
		c.Key = last.Engine.Version
	case "agentVersion":
		c.Key = last.AgentVersion
	case "lastReport":
		c.Num = last.LastReport.UnixMilli()
	case "id":
		c.Key = last.ID
	}
	return c
}

func encodeCursor(c cursor) string {
	b, _ := json.Marshal(c) // a struct of strings and numbers always encodes
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s string) (cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	var c cursor
	if err == nil {
		err = json.Unmarshal(b, &c)
	}
	if err == nil && (c.V != 1 || c.ID == "") {
		err = errors.New("unknown version")
	}
	if err != nil {
		return cursor{}, fmt.Errorf("%w: cursor %q is not one this store made: pass HostPage.Next as it came", ErrBadFilter, clip.String(s, quoteLen))
	}
	return c, nil
}

type scanner interface{ Scan(...any) error }

func scanHost(r scanner, now time.Time) (wire.Host, error) {
	var (
		h                                   wire.Host
		active, healthy                     int64
		labels, checks, cache               string
		dropHB, dropEv                      int64
		intervalMs, firstMs, reportMs, hbMs int64
		lastSeq                             int64
		rejected, pinEngine, pinAgent       string
	)
	if err := r.Scan(&h.ID, &h.ReportedState, &h.Engine.Flavor, &h.Engine.Version, &active, &healthy,
		&h.AgentVersion, &h.OSBuild, &labels, &checks, &cache, &dropHB, &dropEv,
		&intervalMs, &firstMs, &reportMs, &hbMs, &lastSeq,
		&h.OS, &h.Arch, &rejected, &pinEngine, &pinAgent); err != nil {
		return wire.Host{}, err
	}
	if err := unmarshalOpt(rejected, &h.Rejected); err != nil {
		return wire.Host{}, fmt.Errorf("host %s rejected versions: %w", h.ID, err)
	}
	if pinEngine != "" || pinAgent != "" {
		h.Pin = &wire.Pin{Engine: pinEngine, Agent: pinAgent}
	}
	h.Engine.Active, h.Engine.Healthy = active != 0, healthy != 0
	if err := unmarshalOpt(labels, &h.Labels); err != nil {
		return wire.Host{}, fmt.Errorf("host %s labels: %w", h.ID, err)
	}
	if err := unmarshalOpt(checks, &h.Checks); err != nil {
		return wire.Host{}, fmt.Errorf("host %s checks: %w", h.ID, err)
	}
	if err := unmarshalOpt(cache, &h.Cache); err != nil {
		return wire.Host{}, fmt.Errorf("host %s cache: %w", h.ID, err)
	}
	h.Dropped = wire.Dropped{Heartbeats: uint64(max(dropHB, 0)), Events: uint64(max(dropEv, 0))}
	h.Interval = time.Duration(intervalMs) * time.Millisecond
	h.FirstSeen = msTime(firstMs)
	h.LastReport = msTime(reportMs)
	if hbMs != 0 {
		h.LastHeartbeat = msTime(hbMs)
	}
	h.LastSeq = uint64(max(lastSeq, 0))
	h.State = h.ReportedState
	if isStale(reportMs, intervalMs, now) {
		h.State = wire.StateStale
	}
	return h, nil
}

// isStale is staleCond in Go.
func isStale(reportMs, intervalMs int64, now time.Time) bool {
	return reportMs+StaleAfter*intervalMs < now.UnixMilli()
}

// unmarshalOpt decodes s into v, leaving v nil for an empty object or list
// (the omitempty fields of Host).
func unmarshalOpt(s string, v any) error {
	if s == "" || s == "{}" || s == "[]" || s == "null" {
		return nil
	}
	return json.Unmarshal([]byte(s), v)
}

func msTime(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

// Host returns one host with its n newest heartbeats' states and n newest
// events, newest first (n is capped at wire.MaxLimit), or ErrNotFound.
func (s *Store) Host(ctx context.Context, id string, now time.Time, n int) (wire.HostDetail, error) {
	n = min(max(n, 0), wire.MaxLimit)
	row := s.r.QueryRowContext(ctx, "SELECT "+hostCols+hostFrom+" WHERE h.id = $1", id)
	h, err := scanHost(row, now)
	if errors.Is(err, sql.ErrNoRows) {
		return wire.HostDetail{}, fmt.Errorf("host %q: %w", clip.String(id, quoteLen), ErrNotFound)
	}
	if err != nil {
		return wire.HostDetail{}, fmt.Errorf("host %q: %w", clip.String(id, quoteLen), err)
	}
	d := wire.HostDetail{Host: h, History: []wire.HealthPoint{}, Events: []wire.EventRecord{}}
	if n == 0 {
		return d, nil
	}
	rows, err := s.r.QueryContext(ctx, `SELECT seq, time_ms, state, received_ms FROM history
		WHERE host_id = $1 ORDER BY seq DESC LIMIT $2`, id, int64(n))
	if err != nil {
		return wire.HostDetail{}, fmt.Errorf("host %q history: %w", clip.String(id, quoteLen), err)
	}
	for rows.Next() {
		var p wire.HealthPoint
		var seq, t, rcv int64
		if err := rows.Scan(&seq, &t, &p.State, &rcv); err != nil {
			rows.Close()
			return wire.HostDetail{}, fmt.Errorf("host %q history: %w", clip.String(id, quoteLen), err)
		}
		p.Seq, p.Time, p.Received = uint64(seq), msTime(t), msTime(rcv)
		d.History = append(d.History, p)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return wire.HostDetail{}, fmt.Errorf("host %q history: %w", clip.String(id, quoteLen), err)
	}
	rows, err = s.r.QueryContext(ctx, `SELECT seq, time_ms, received_ms, kind, message, fields FROM events
		WHERE host_id = $1 ORDER BY seq DESC LIMIT $2`, id, int64(n))
	if err != nil {
		return wire.HostDetail{}, fmt.Errorf("host %q events: %w", clip.String(id, quoteLen), err)
	}
	for rows.Next() {
		var e wire.EventRecord
		var seq, t, rcv int64
		var fields string
		if err := rows.Scan(&seq, &t, &rcv, &e.Kind, &e.Message, &fields); err != nil {
			rows.Close()
			return wire.HostDetail{}, fmt.Errorf("host %q events: %w", clip.String(id, quoteLen), err)
		}
		if err := unmarshalOpt(fields, &e.Fields); err != nil {
			rows.Close()
			return wire.HostDetail{}, fmt.Errorf("host %q event %d fields: %w", clip.String(id, quoteLen), seq, err)
		}
		e.Seq, e.Time, e.Received = uint64(seq), msTime(t), msTime(rcv)
		d.Events = append(d.Events, e)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return wire.HostDetail{}, fmt.Errorf("host %q events: %w", clip.String(id, quoteLen), err)
	}
	return d, nil
}

// Counts counts the hosts by effective state (every filter state present,
// 0 when none), by engine version and by agent version ("" for hosts that
// sent no heartbeat yet). With Options.CountsMaxAge it answers from a copy
// (see countsCache), whose Stale hosts are those of when it was made.
func (s *Store) Counts(ctx context.Context, now time.Time) (wire.Counts, error) {
	if s.countsMaxAge <= 0 {
		return s.countHosts(ctx, now)
	}
	return s.counts.get(ctx, s, now)
}

// countHosts is Counts, read from the database.
func (s *Store) countHosts(ctx context.Context, now time.Time) (wire.Counts, error) {
	rows, err := s.r.QueryContext(ctx, "SELECT "+stateExpr("$1")+`, h.engine_version, h.agent_version, COUNT(*)
		FROM hosts h GROUP BY 1, 2, 3`, now.UnixMilli())
	if err != nil {
		return wire.Counts{}, fmt.Errorf("count hosts: %w", err)
	}
	defer rows.Close()
	c := wire.Counts{ByState: map[string]int{}, ByEngineVersion: map[string]int{}, ByAgentVersion: map[string]int{}}
	for _, st := range filterStates {
		c.ByState[st] = 0
	}
	for rows.Next() {
		var st, ev, av string
		var n int
		if err := rows.Scan(&st, &ev, &av, &n); err != nil {
			return wire.Counts{}, fmt.Errorf("count hosts: %w", err)
		}
		c.Total += n
		c.ByState[st] += n
		c.ByEngineVersion[ev] += n
		c.ByAgentVersion[av] += n
	}
	if err := rows.Err(); err != nil {
		return wire.Counts{}, fmt.Errorf("count hosts: %w", err)
	}
	return c, nil
}
