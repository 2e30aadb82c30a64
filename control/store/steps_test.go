package store

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/berthhq/berth/control/wire"
)

// The pure steps of commitTx and Hosts, each as a got/want table. The
// conformance suite (storetest) runs them against SQLite and PostgreSQL.

var stepOpts = cmp.Options{
	cmp.AllowUnexported(hostState{}, hostRow{}, ingestRes{}, groupWrites{}, hostsQuery{}, cursor{}),
	cmpopts.EquateErrors(),
	cmpopts.EquateEmpty(),
}

func req(agent string, now int64, seqs ...int64) *ingestReq {
	r := &ingestReq{agent: agent, now: now}
	for _, s := range seqs {
		r.recs = append(r.recs, prepRec{seq: s, timeMs: s * 10, state: "Healthy"})
	}
	return r
}

func TestGroupHosts(t *testing.T) {
	for _, c := range []struct {
		name   string
		reqs   []*ingestReq
		order  []int
		agents []string
		first  map[string]int64
	}{
		{"one", []*ingestReq{req("a", 5)}, []int{0}, []string{"a"}, map[string]int64{"a": 5}},
		{"by agent, stable", []*ingestReq{req("b", 1), req("a", 2), req("b", 3), req("a", 4)},
			[]int{1, 3, 0, 2}, []string{"a", "b"}, map[string]int64{"a": 2, "b": 1}},
		{"none", nil, []int{}, nil, map[string]int64{}},
	} {
		order, agents, hosts := groupHosts(c.reqs)
		first := map[string]int64{}
		for a, h := range hosts {
			first[a] = h.firstSeen
			if h.checkLo != math.MaxInt64 {
				t.Errorf("%s: %s checkLo = %d, want MaxInt64", c.name, a, h.checkLo)
			}
		}
		if diff := cmp.Diff([]any{c.order, c.agents, c.first}, []any{order, agents, first}, stepOpts); diff != "" {
			t.Errorf("%s: groupHosts (-want +got):\n%s", c.name, diff)
		}
	}
}

func TestMarkChecks(t *testing.T) {
	for _, c := range []struct {
		name   string
		dbLast int64
		reqs   []*ingestReq
		lo, hi int64
	}{
		{"all new", 5, []*ingestReq{req("a", 1, 6, 7)}, math.MaxInt64, 0},
		{"retry", 5, []*ingestReq{req("a", 1, 3, 4, 6)}, 3, 4},
		{"across batches", 9, []*ingestReq{req("a", 1, 7), req("a", 2, 2, 10)}, 2, 7},
		{"new host", 0, []*ingestReq{req("a", 1, 1)}, math.MaxInt64, 0},
	} {
		hosts := map[string]*hostState{"a": {dbLastSeq: c.dbLast, checkLo: math.MaxInt64}}
		markChecks(c.reqs, hosts)
		if got := hosts["a"]; got.checkLo != c.lo || got.checkHi != c.hi {
			t.Errorf("%s: checks %d..%d, want %d..%d", c.name, got.checkLo, got.checkHi, c.lo, c.hi)
		}
	}
}

func TestDecide(t *testing.T) {
	hb := &hostRow{seq: 7, state: "Healthy"}
	withHB := req("a", 100, 6, 7)
	withHB.hb = hb
	event := req("a", 100, 6)
	event.recs[0] = prepRec{seq: 6, event: true, timeMs: 60, kind: "k", message: "m", fields: "{}"}
	for _, c := range []struct {
		name    string
		last    int64
		inDB    []int64
		reqs    []*ingestReq
		want    []ingestRes
		writes  groupWrites
		lastSeq int64
		hb      *hostRow
		ret     Retention
		pruned  [2]int64 // the host's pruned seq and time
	}{
		{name: "new records", last: 5, reqs: []*ingestReq{withHB},
			want:    []ingestRes{{ack: wire.Ack{Agent: "a", UpTo: 7, Stored: 2}}},
			writes:  groupWrites{hist: []any{"a", int64(6), int64(60), int64(100), "Healthy", "a", int64(7), int64(70), int64(100), "Healthy"}},
			lastSeq: 7, hb: hb},
		{name: "an event", last: 5, reqs: []*ingestReq{event},
			want:    []ingestRes{{ack: wire.Ack{Agent: "a", UpTo: 6, Stored: 1}}},
			writes:  groupWrites{evs: []any{"a", int64(6), int64(60), int64(100), "k", "m", "{}"}},
			lastSeq: 6},
		{name: "an honest retry", last: 5, inDB: []int64{4, 5}, reqs: []*ingestReq{req("a", 100, 4, 5)},
			want:    []ingestRes{{ack: wire.Ack{Agent: "a", UpTo: 5, Duplicates: 2}}},
			lastSeq: 5},
		{name: "numbering went back", last: 5, inDB: []int64{5}, reqs: []*ingestReq{req("a", 100, 3, 6)},
			want:    []ingestRes{{err: ErrSeqBackwards}},
			lastSeq: 5},
		{name: "a retry within the group", last: 0, reqs: []*ingestReq{req("a", 100, 1, 2), req("a", 101, 1, 2, 3)},
			want: []ingestRes{{ack: wire.Ack{Agent: "a", UpTo: 2, Stored: 2}}, {ack: wire.Ack{Agent: "a", UpTo: 3, Stored: 1, Duplicates: 2}}},
			writes: groupWrites{hist: []any{
				"a", int64(1), int64(10), int64(100), "Healthy",
				"a", int64(2), int64(20), int64(100), "Healthy",
				"a", int64(3), int64(30), int64(101), "Healthy"}},
			lastSeq: 3},
		{name: "an old heartbeat does not replace the host's", last: 7, inDB: []int64{7}, reqs: []*ingestReq{withHB},
			want:    []ingestRes{{err: ErrSeqBackwards}},
			lastSeq: 7},
		// Retention: a late retry of a record the store pruned is a
		// duplicate, whether pruned for its age or for the host's count; a
		// record there that was never stored is still a numbering gone back.
		{name: "a retry of records pruned for their age", last: 50, reqs: []*ingestReq{req("a", 1000, 3, 4)},
			ret:     Retention{Heartbeats: 500 * time.Millisecond},
			want:    []ingestRes{{ack: wire.Ack{Agent: "a", UpTo: 50, Duplicates: 2}}},
			lastSeq: 50},
		{name: "within the age: numbering went back", last: 50, reqs: []*ingestReq{req("a", 1000, 60-10)},
			ret:     Retention{Heartbeats: 900 * time.Millisecond},
			want:    []ingestRes{{err: ErrSeqBackwards}},
			lastSeq: 50},
		{name: "the heartbeats' age does not expire an event", last: 50, reqs: []*ingestReq{event},
			ret:     Retention{Heartbeats: 10 * time.Millisecond},
			want:    []ingestRes{{err: ErrSeqBackwards}},
			lastSeq: 50},
		{name: "a retry of records pruned for the count", last: 50, reqs: []*ingestReq{req("a", 100, 3, 4, 51)},
			want:    []ingestRes{{ack: wire.Ack{Agent: "a", UpTo: 51, Stored: 1, Duplicates: 2}}},
			writes:  groupWrites{hist: []any{"a", int64(51), int64(510), int64(100), "Healthy"}},
			lastSeq: 51, pruned: [2]int64{40, 400}},
		{name: "below the pruned number but newer: numbering went back", last: 50, reqs: []*ingestReq{req("a", 100, 30)},
			want:    []ingestRes{{err: ErrSeqBackwards}},
			lastSeq: 50, pruned: [2]int64{40, 200}},
	} {
		h := &hostState{dbLastSeq: c.last, lastSeq: c.last, prunedSeq: c.pruned[0], prunedTime: c.pruned[1]}
		for _, s := range c.inDB {
			if h.inDB == nil {
				h.inDB = map[int64]bool{}
			}
			h.inDB[s] = true
		}
		hosts := map[string]*hostState{"a": h}
		order, _, _ := groupHosts(c.reqs)
		got, w := decide(c.reqs, order, hosts, c.ret)
		if diff := cmp.Diff(c.want, got, stepOpts); diff != "" {
			t.Errorf("%s: results (-want +got):\n%s", c.name, diff)
		}
		if diff := cmp.Diff(c.writes, w, stepOpts); diff != "" {
			t.Errorf("%s: writes (-want +got):\n%s", c.name, diff)
		}
		if h.lastSeq != c.lastSeq || h.hb != c.hb {
			t.Errorf("%s: host lastSeq %d, hb %v; want %d, %v", c.name, h.lastSeq, h.hb, c.lastSeq, c.hb)
		}
		stored := errors.Is(got[len(got)-1].err, ErrSeqBackwards)
		if h.touched == stored {
			t.Errorf("%s: touched %v after a refused last batch %v", c.name, h.touched, stored)
		}
	}
}

func TestHostWrites(t *testing.T) {
	hb := &hostRow{seq: 3, state: "Healthy", flavor: "docker", version: "24.0.7", active: 1, healthy: 1,
		agentVersion: "1.0.0", labels: `{"pool":"blue","zone":"1"}`, checks: "[]", cache: "{}",
		labelMap: map[string]string{"zone": "1", "pool": "blue"}, intervalMs: 60000, lastHeartbeatMs: 30,
		os: "linux", arch: "amd64", rejected: `[{"kind":"engine"}]`}
	full := []any{"a", "Healthy", "docker", "24.0.7", int64(1), int64(1), "1.0.0", "", `{"pool":"blue","zone":"1"}`, "[]", "{}",
		int64(0), int64(0), int64(60000), int64(10), int64(20), int64(30), int64(3), int64(8), int64(2), int64(0), int64(0),
		"linux", "amd64", `[{"kind":"engine"}]`}
	labels := []any{"a", "pool", "blue", "a", "zone", "1"}
	for _, c := range []struct {
		name string
		h    hostState
		want groupWrites
	}{
		{"untouched", hostState{hb: hb}, groupWrites{}},
		{"events only", hostState{touched: true, firstSeen: 10, report: 20, lastSeq: 4, events: 3, prunedSeq: 2, prunedTime: 9},
			groupWrites{touch: []any{"a", int64(60000), int64(10), int64(20), int64(4), int64(0), int64(3), int64(2), int64(9)}}},
		{"new host", hostState{touched: true, hb: hb, firstSeen: 10, report: 20, lastSeq: 3, heartbeats: 8, events: 2},
			groupWrites{full: full, labels: labels}},
		{"labels changed", hostState{touched: true, exists: true, dbLabels: `{"pool":"green"}`, hb: hb, firstSeen: 10, report: 20, lastSeq: 3, heartbeats: 8, events: 2},
			groupWrites{full: full, delLabels: []any{"a"}, labels: labels}},
		{"labels as stored", hostState{touched: true, exists: true, dbLabels: hb.labels, hb: hb, firstSeen: 10, report: 20, lastSeq: 3, heartbeats: 8, events: 2},
			groupWrites{full: full}},
	} {
		var w groupWrites
		h := c.h
		hostWrites([]string{"a"}, map[string]*hostState{"a": &h}, &w)
		if diff := cmp.Diff(c.want, w, stepOpts); diff != "" {
			t.Errorf("%s: hostWrites (-want +got):\n%s", c.name, diff)
		}
	}
}

func TestPlanHosts(t *testing.T) {
	now := time.UnixMilli(1_000_000)
	stale := "h.last_report_ms + 3 * h.interval_ms < "
	list := "SELECT " + hostCols + hostFrom
	for _, c := range []struct {
		name string
		f    wire.HostFilter
		want hostsQuery
		err  string
	}{
		{name: "everything", f: wire.HostFilter{},
			want: hostsQuery{count: "SELECT COUNT(*) FROM hosts h", list: list + " ORDER BY h.id ASC, h.id ASC LIMIT $1",
				listArgs: []any{int64(101)}, sort: "id", limit: 100}},
		{name: "state and labels", f: wire.HostFilter{State: "Healthy", Labels: map[string]string{"z": "1", "a": "2"}, Limit: 5},
			want: hostsQuery{
				count: "SELECT COUNT(*) FROM hosts h WHERE h.state = $1 AND NOT (" + stale + "$2) AND " +
					"EXISTS (SELECT 1 FROM host_labels l WHERE l.host_id = h.id AND l.key = $3 AND l.value = $4) AND " +
					"EXISTS (SELECT 1 FROM host_labels l WHERE l.host_id = h.id AND l.key = $5 AND l.value = $6)",
				countArgs: []any{"Healthy", int64(1_000_000), "a", "2", "z", "1"},
				list: list + " WHERE h.state = $1 AND NOT (" + stale + "$2) AND " +
					"EXISTS (SELECT 1 FROM host_labels l WHERE l.host_id = h.id AND l.key = $3 AND l.value = $4) AND " +
					"EXISTS (SELECT 1 FROM host_labels l WHERE l.host_id = h.id AND l.key = $5 AND l.value = $6) ORDER BY h.id ASC, h.id ASC LIMIT $7",
				listArgs: []any{"Healthy", int64(1_000_000), "a", "2", "z", "1", int64(6)}, sort: "id", limit: 5}},
		// Sorting by state needs now, which the count does not see.
		{name: "by state, reversed", f: wire.HostFilter{Sort: "-state", EngineVersion: "24.0.7"},
			want: hostsQuery{
				count:     "SELECT COUNT(*) FROM hosts h WHERE h.engine_version = $1",
				countArgs: []any{"24.0.7"},
				list:      list + " WHERE h.engine_version = $1 ORDER BY (CASE WHEN " + stale + "$2 THEN 'Stale' ELSE h.state END) DESC, h.id DESC LIMIT $3",
				listArgs:  []any{"24.0.7", int64(1_000_000), int64(101)}, sort: "-state", limit: 100}},
		{name: "stale, from a cursor", f: wire.HostFilter{State: "Stale", Sort: "lastReport", Cursor: encodeCursor(cursor{V: 1, Sort: "lastReport", Num: 42, ID: "vm-3"})},
			want: hostsQuery{
				count:     "SELECT COUNT(*) FROM hosts h WHERE " + stale + "$1",
				countArgs: []any{int64(1_000_000)},
				list:      list + " WHERE " + stale + "$1 AND (h.last_report_ms > $2 OR (h.last_report_ms = $2 AND h.id > $3)) ORDER BY h.last_report_ms ASC, h.id ASC LIMIT $4",
				listArgs:  []any{int64(1_000_000), int64(42), "vm-3", int64(101)}, sort: "lastReport", limit: 100}},
		{name: "bad sort", f: wire.HostFilter{Sort: "size"}, err: `sort "size"`},
		{name: "bad limit", f: wire.HostFilter{Limit: 1001}, err: "limit 1001"},
		{name: "bad state", f: wire.HostFilter{State: "Sleepy"}, err: `state "Sleepy"`},
		{name: "foreign cursor", f: wire.HostFilter{Cursor: "nope"}, err: "is not one this store made"},
		{name: "cursor of another sort", f: wire.HostFilter{Cursor: encodeCursor(cursor{V: 1, Sort: "id", ID: "a"}), Sort: "-id"}, err: `cursor made for sort "id", not "-id"`},
		{name: "state named before cursor", f: wire.HostFilter{State: "Sleepy", Cursor: "nope"}, err: `state "Sleepy"`},
	} {
		got, err := planHosts(c.f, now)
		if c.err != "" {
			if !errors.Is(err, ErrBadFilter) || !contains(err, c.err) {
				t.Errorf("%s: planHosts = %v, want ErrBadFilter saying %q", c.name, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: planHosts: %v", c.name, err)
			continue
		}
		if diff := cmp.Diff(c.want, got, stepOpts); diff != "" {
			t.Errorf("%s: planHosts (-want +got):\n%s", c.name, diff)
		}
	}
}

func contains(err error, s string) bool {
	return err != nil && strings.Contains(err.Error(), s)
}

func TestPageOf(t *testing.T) {
	h := func(id string) wire.Host {
		return wire.Host{ID: id, State: "Healthy", AgentVersion: "1." + id, Engine: wire.Engine{Version: "v" + id}, LastReport: time.UnixMilli(7)}
	}
	three := []wire.Host{h("a"), h("b"), h("c")}
	for _, c := range []struct {
		name  string
		hosts []wire.Host
		limit int
		sort  string
		ids   int
		next  *cursor
	}{
		{"fits", three, 3, "id", 3, nil},
		{"one more", three, 2, "id", 2, &cursor{V: 1, Sort: "id", Key: "b", ID: "b"}},
		{"by state", three, 2, "-state", 2, &cursor{V: 1, Sort: "-state", Key: "Healthy", ID: "b"}},
		{"by engine", three, 1, "engineVersion", 1, &cursor{V: 1, Sort: "engineVersion", Key: "va", ID: "a"}},
		{"by agent", three, 1, "agentVersion", 1, &cursor{V: 1, Sort: "agentVersion", Key: "1.a", ID: "a"}},
		{"by report", three, 1, "-lastReport", 1, &cursor{V: 1, Sort: "-lastReport", Num: 7, ID: "a"}},
		{"empty", []wire.Host{}, 5, "id", 0, nil},
	} {
		got, next := pageOf(c.hosts, c.limit, c.sort)
		if len(got) != c.ids {
			t.Errorf("%s: %d hosts, want %d", c.name, len(got), c.ids)
		}
		if c.next == nil {
			if next != "" {
				t.Errorf("%s: next %q, want none", c.name, next)
			}
			continue
		}
		dec, err := decodeCursor(next)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if diff := cmp.Diff(*c.next, dec, stepOpts); diff != "" {
			t.Errorf("%s: next cursor (-want +got):\n%s", c.name, diff)
		}
	}
}

func TestOverCount(t *testing.T) {
	for _, c := range []struct {
		stored, bound int64
		want          bool
	}{
		{0, 0, false},
		{1 << 40, 0, false}, // no bound
		{50_000, 50_000, false},
		{55_000, 50_000, false}, // within the slack of a tenth
		{55_001, 50_000, true},
		{6, 5, true}, // a bound under 10 has no slack
		{5, 5, false},
	} {
		if got := overCount(c.stored, c.bound); got != c.want {
			t.Errorf("overCount(%d, %d) = %v, want %v", c.stored, c.bound, got, c.want)
		}
	}
}

func TestExpired(t *testing.T) {
	day := 24 * time.Hour
	r := Retention{Heartbeats: 30 * day, Events: 90 * day}
	now := int64(100 * day / time.Millisecond)
	for _, c := range []struct {
		name  string
		r     Retention
		event bool
		time  int64
		want  bool
	}{
		{"heartbeat within", r, false, now - int64(29*day/time.Millisecond), false},
		{"heartbeat at the cutoff", r, false, now - int64(30*day/time.Millisecond), false},
		{"heartbeat past", r, false, now - int64(30*day/time.Millisecond) - 1, true},
		{"event past the heartbeats' age", r, true, now - int64(31*day/time.Millisecond), false},
		{"event past its own", r, true, now - int64(91*day/time.Millisecond), true},
		{"kept for ever", Retention{}, false, 0, false},
		{"from the future", r, false, now + 1000, false},
	} {
		if got := c.r.expired(c.event, c.time, now); got != c.want {
			t.Errorf("%s: expired = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestParseRetention(t *testing.T) {
	day := 24 * time.Hour
	for _, c := range []struct {
		in   string
		want Retention
		err  string
	}{
		{in: "", want: DefaultRetention},
		{in: "heartbeats=30d,events=90d", want: DefaultRetention},
		{in: "heartbeats=7d", want: Retention{Heartbeats: 7 * day, Events: 90 * day, HeartbeatsPerHost: 50_000, EventsPerHost: 10_000}},
		{in: " heartbeats=12h , events=0 ,heartbeatsPerHost=100,eventsPerHost=0", want: Retention{Heartbeats: 12 * time.Hour, HeartbeatsPerHost: 100}},
		{in: "heartbeats=90m", want: Retention{Heartbeats: 90 * time.Minute, Events: 90 * day, HeartbeatsPerHost: 50_000, EventsPerHost: 10_000}},
		{in: "heartbeats", err: "want KEY=VALUE"},
		{in: "heartbeats=", err: "want KEY=VALUE"},
		{in: "=30d", err: "want KEY=VALUE"},
		{in: "history=30d", err: `unknown key "history"`},
		{in: "heartbeats=30d,heartbeats=7d", err: "heartbeats given twice"},
		{in: "heartbeats=-1d", err: "whole number of days"},
		{in: "heartbeats=1.5d", err: "whole number of days"},
		{in: "heartbeats=99999999999d", err: "whole number of days"},
		{in: "heartbeats=-5h", err: "cannot be negative"},
		{in: "heartbeats=30s", err: "under a minute"},
		{in: "heartbeats=1000000h", err: "over 36500 days"},
		{in: "heartbeats=month", err: "want an age"},
		{in: "eventsPerHost=-1", err: "whole number of records"},
		{in: "eventsPerHost=1e3", err: "whole number of records"},
		{in: "eventsPerHost=99999999999999", err: "whole number of records"},
		{in: ",", err: "want KEY=VALUE"},
	} {
		got, err := ParseRetention(c.in, DefaultRetention)
		if c.err != "" {
			if !contains(err, c.err) {
				t.Errorf("ParseRetention(%q) = %v, want an error saying %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("ParseRetention(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
		if back, err := ParseRetention(got.String(), Retention{}); err != nil || back != got {
			t.Errorf("ParseRetention(%q.String() = %q) = %+v, %v; want it back", c.in, got.String(), back, err)
		}
	}
}

// FuzzParseRetention: --retention is outside data; whatever it is, the
// parser answers without panicking, and what it accepts prints back to
// itself.
func FuzzParseRetention(f *testing.F) {
	for _, s := range []string{"", "heartbeats=30d,events=90d", "heartbeatsPerHost=5", "heartbeats=12h", "events=0", "x=y=z", ",,", "heartbeats=9223372036854775807ns"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRetention(s, DefaultRetention)
		if err != nil {
			return
		}
		if r.Heartbeats < 0 || r.Events < 0 || r.HeartbeatsPerHost < 0 || r.EventsPerHost < 0 {
			t.Fatalf("ParseRetention(%q) = %+v: negative", s, r)
		}
		if back, err := ParseRetention(r.String(), Retention{}); err != nil || back != r {
			t.Fatalf("ParseRetention(%q) = %+v prints as %q, which parses to %+v, %v", s, r, r.String(), back, err)
		}
	})
}

func TestColumns(t *testing.T) {
	got, err := columns(colTypes("tb"), []any{"a", int64(1), "b", int64(2)})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]any{[]string{"a", "b"}, []int64{1, 2}}, got); diff != "" {
		t.Errorf("columns (-want +got):\n%s", diff)
	}
	for _, c := range []struct {
		types []string
		args  []any
		err   string
	}{
		{colTypes("tb"), []any{"a", "1"}, "column 1 row 0: string, want a int64"},
		{colTypes("t"), []any{int64(1)}, "column 0 row 0: int64, want a string"},
		{[]string{"json"}, []any{"{}"}, `type "json" has no array form`},
	} {
		if _, err := columns(c.types, c.args); !contains(err, c.err) {
			t.Errorf("columns(%v, %v) = %v, want an error saying %q", c.types, c.args, err, c.err)
		}
	}
	if got := arrayParams(colTypes("tbt")); got != "$1::text[], $2::bigint[], $3::text[]" {
		t.Errorf("arrayParams = %q", got)
	}
}
