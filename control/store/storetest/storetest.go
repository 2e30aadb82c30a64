// Package storetest is the conformance suite of control/store: the same
// cases run against every backend (SQLite and PostgreSQL), so that both
// behave alike.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/berthhq/berth/control/store"
	"github.com/berthhq/berth/control/wire"
)

// T0 is the suite's clock origin; times are whole milliseconds, as stored.
var T0 = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

// Run runs the suite. newDSN returns the DSN of a fresh, empty database
// for each case; the suite opens (and reopens) it with store.Open.
func Run(t *testing.T, newDSN func(t *testing.T) string) {
	open := func(t *testing.T, dsn string) *store.Store {
		t.Helper()
		s, err := store.Open(context.Background(), dsn, store.Options{})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	fresh := func(t *testing.T) *store.Store { return open(t, newDSN(t)) }
	cases := []struct {
		name string
		run  func(t *testing.T, s *store.Store)
	}{
		{"Dedupe", testDedupe},
		{"Gaps", testGaps},
		{"SeqBackwards", testSeqBackwards},
		{"ConcurrentDuplicates", testConcurrentDuplicates},
		{"HostFields", testHostFields},
		{"EventsOnly", testEventsOnly},
		{"Stale", testStale},
		{"Filters", testFilters},
		{"SortAndPaging", testSortAndPaging},
		{"BadFilters", testBadFilters},
		{"HostDetail", testHostDetail},
		{"Counts", testCounts},
		{"BindIdentity", testBindIdentity},
		{"BindIdentityConcurrent", testBindIdentityConcurrent},
		{"BindResource", testBindResource},
		{"Tokens", testTokens},
		{"Sessions", testSessions},
		{"Closed", testClosed},
		{"Forget", testForget},
		{"HostPlatformAndPins", testHostPlatformAndPins},
		{"RolloutCreate", testRolloutCreate},
		{"RolloutEval", testRolloutEval},
		{"RolloutEvalConcurrent", testRolloutEvalConcurrent},
		{"DesiredChanges", testDesiredChanges},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t, fresh(t))
		})
	}
	t.Run("Reopen", func(t *testing.T) {
		t.Parallel()
		testReopen(t, newDSN(t), open)
	})
	// The retention cases open their own store, with its options.
	for _, c := range []struct {
		name string
		o    store.Options
		run  func(t *testing.T, s *store.Store)
	}{
		{"RetentionAge", store.Options{Retention: store.Retention{Heartbeats: 30 * day, Events: 90 * day}, PruneEvery: -1}, testRetentionAge},
		{"RetentionCount", store.Options{Retention: store.Retention{HeartbeatsPerHost: 5, EventsPerHost: 3}, PruneEvery: -1}, testRetentionCount},
		{"Pruner", store.Options{Retention: store.Retention{Heartbeats: 30 * day}, PruneEvery: 20 * time.Millisecond}, testPruner},
		{"CountsCached", store.Options{CountsMaxAge: 200 * time.Millisecond}, testCountsCached},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s, err := store.Open(context.Background(), newDSN(t), c.o)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			t.Cleanup(func() { s.Close() })
			c.run(t, s)
		})
	}
	t.Run("TwoStoresShareDatabase", func(t *testing.T) {
		t.Parallel()
		dsn := newDSN(t)
		a, b := open(t, dsn), open(t, dsn)
		testReplicas(t, a, b)
	})
}

// HB returns a heartbeat record of state with default fields.
func HB(seq uint64, state string) wire.Record {
	return wire.Record{Seq: seq, Kind: wire.KindHeartbeat, Time: T0.Add(time.Duration(seq) * time.Second), Heartbeat: &wire.Heartbeat{
		State:           state,
		Checks:          []wire.Check{{Name: "engine.api", Status: "ok", Time: T0}},
		Engine:          wire.Engine{Flavor: "docker", Version: "27.1.0", Active: true, Healthy: true},
		AgentVersion:    "1.0.0",
		IntervalSeconds: 10,
	}}
}

// Ev returns an event record of kind.
func Ev(seq uint64, kind string) wire.Record {
	return wire.Record{Seq: seq, Kind: wire.KindEvent, Time: T0.Add(time.Duration(seq) * time.Second),
		Event: &wire.Event{Kind: kind, Message: "m" + fmt.Sprint(seq), Fields: map[string]string{"seq": fmt.Sprint(seq)}}}
}

func batch(agent string, recs ...wire.Record) wire.Batch {
	return wire.Batch{Agent: agent, Records: recs}
}

func mustIngest(t *testing.T, s *store.Store, b wire.Batch, now time.Time) wire.Ack {
	t.Helper()
	ack, err := s.Ingest(context.Background(), b, now)
	if err != nil {
		t.Fatalf("Ingest(%s %v): %v", b.Agent, seqs(b), err)
	}
	return ack
}

func seqs(b wire.Batch) []uint64 {
	var s []uint64
	for _, r := range b.Records {
		s = append(s, r.Seq)
	}
	return s
}

func testDedupe(t *testing.T, s *store.Store) {
	steps := []struct {
		b    wire.Batch
		want wire.Ack
	}{
		{batch("h1", HB(1, "Healthy"), Ev(2, "a"), HB(3, "Healthy")), wire.Ack{Agent: "h1", UpTo: 3, Stored: 3}},
		{batch("h1", HB(1, "Healthy"), Ev(2, "a"), HB(3, "Healthy")), wire.Ack{Agent: "h1", UpTo: 3, Duplicates: 3}},
		{batch("h1", Ev(2, "a"), HB(3, "Healthy"), Ev(4, "b"), HB(5, "Degraded")), wire.Ack{Agent: "h1", UpTo: 5, Stored: 2, Duplicates: 2}},
		{batch("h1", HB(1, "Healthy")), wire.Ack{Agent: "h1", UpTo: 5, Duplicates: 1}},
		{batch("h2", HB(1, "Healthy")), wire.Ack{Agent: "h2", UpTo: 1, Stored: 1}},
	}
	for i, st := range steps {
		got := mustIngest(t, s, st.b, T0)
		if diff := cmp.Diff(st.want, got); diff != "" {
			t.Errorf("step %d: ack (-want +got):\n%s", i, diff)
		}
	}
	d, err := s.Host(context.Background(), "h1", T0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.History) != 3 || len(d.Events) != 2 {
		t.Errorf("stored %d heartbeats and %d events, want 3 and 2", len(d.History), len(d.Events))
	}
	if d.ReportedState != "Degraded" {
		t.Errorf("state %q after a duplicate of an older heartbeat, want Degraded (the newest)", d.ReportedState)
	}
}

func testGaps(t *testing.T, s *store.Store) {
	if got := mustIngest(t, s, batch("h1", HB(1, "Healthy"), HB(5, "Healthy"), Ev(9, "x")), T0); got.UpTo != 9 || got.Stored != 3 {
		t.Errorf("ack %+v, want UpTo 9, Stored 3", got)
	}
	if got := mustIngest(t, s, batch("h1", HB(20, "Healthy")), T0); got.UpTo != 20 || got.Stored != 1 {
		t.Errorf("ack %+v, want UpTo 20, Stored 1", got)
	}
	if got := mustIngest(t, s, batch("h1", HB(5, "Healthy"), Ev(9, "x"), HB(20, "Healthy"), HB(21, "Healthy")), T0); got.UpTo != 21 || got.Stored != 1 || got.Duplicates != 3 {
		t.Errorf("ack %+v, want UpTo 21, Stored 1, Duplicates 3", got)
	}
}

func testSeqBackwards(t *testing.T, s *store.Store) {
	ctx := context.Background()
	mustIngest(t, s, batch("h1", HB(1, "Healthy"), HB(5, "Healthy"), HB(10, "Healthy")), T0)
	for _, b := range []wire.Batch{
		batch("h1", HB(7, "Unhealthy")),
		batch("h1", HB(5, "Healthy"), HB(7, "Unhealthy"), HB(12, "Unhealthy")),
		batch("h1", HB(2, "Unhealthy"), HB(11, "Unhealthy"), Ev(13, "x")),
	} {
		if _, err := s.Ingest(ctx, b, T0.Add(time.Hour)); !errors.Is(err, store.ErrSeqBackwards) {
			t.Errorf("Ingest(%v) = %v, want ErrSeqBackwards", seqs(b), err)
		}
	}
	d, err := s.Host(ctx, "h1", T0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if d.LastSeq != 10 || len(d.History) != 3 || len(d.Events) != 0 || d.ReportedState != "Healthy" || !d.LastReport.Equal(T0) {
		t.Errorf("after refused batches: lastSeq %d, %d heartbeats, %d events, state %s, lastReport %s; want nothing changed",
			d.LastSeq, len(d.History), len(d.Events), d.ReportedState, d.LastReport)
	}
	// The agent goes on after the refusal.
	if got := mustIngest(t, s, batch("h1", HB(11, "Healthy")), T0); got.UpTo != 11 {
		t.Errorf("ack %+v, want UpTo 11", got)
	}
}

func testConcurrentDuplicates(t *testing.T, s *store.Store) {
	const agents, copies = 8, 12
	type res struct {
		ack wire.Ack
		err error
	}
	results := make(chan res, agents*copies*2)
	var wg sync.WaitGroup
	for a := 0; a < agents; a++ {
		agent := fmt.Sprintf("host-%02d", a)
		for c := 0; c < copies; c++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Two overlapping batches, as an agent that retried with
				// more records in its outbox sends them.
				for _, b := range []wire.Batch{
					batch(agent, HB(1, "Healthy"), Ev(2, "a"), HB(3, "Healthy")),
					batch(agent, HB(3, "Healthy"), Ev(4, "b")),
				} {
					ack, err := s.Ingest(context.Background(), b, T0)
					results <- res{ack, err}
				}
			}()
		}
	}
	wg.Wait()
	close(results)
	stored := map[string]int{}
	for r := range results {
		if r.err != nil {
			// A batch of 3..4 may arrive before 1..3: ErrSeqBackwards would
			// be wrong, since 3 is stored only once 1..3 is.
			if errors.Is(r.err, store.ErrSeqBackwards) {
				continue
			}
			t.Errorf("Ingest: %v", r.err)
			continue
		}
		stored[r.ack.Agent] += r.ack.Stored
	}
	ctx := context.Background()
	for a := 0; a < agents; a++ {
		agent := fmt.Sprintf("host-%02d", a)
		d, err := s.Host(ctx, agent, T0, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(d.History)+len(d.Events) != stored[agent] || stored[agent] > 4 {
			t.Errorf("%s: acks say %d stored, store holds %d heartbeats and %d events", agent, stored[agent], len(d.History), len(d.Events))
		}
	}
}

func testReplicas(t *testing.T, a, b *store.Store) {
	const agents, copies = 6, 8
	var wg sync.WaitGroup
	var mu sync.Mutex
	stored := map[string]int{}
	for i := 0; i < agents; i++ {
		agent := fmt.Sprintf("host-%02d", i)
		for c := 0; c < copies; c++ {
			s := a
			if c%2 == 1 {
				s = b
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				ack, err := s.Ingest(context.Background(), batch(agent, HB(1, "Healthy"), Ev(2, "x"), HB(3, "Degraded")), T0)
				if err != nil {
					t.Errorf("Ingest: %v", err)
					return
				}
				mu.Lock()
				stored[agent] += ack.Stored
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	for i := 0; i < agents; i++ {
		agent := fmt.Sprintf("host-%02d", i)
		if stored[agent] != 3 {
			t.Errorf("%s: %d records stored across both stores, want 3", agent, stored[agent])
		}
		d, err := b.Host(context.Background(), agent, T0, 10)
		if err != nil {
			t.Fatal(err)
		}
		if d.LastSeq != 3 || len(d.History) != 2 || len(d.Events) != 1 {
			t.Errorf("%s: lastSeq %d, %d heartbeats, %d events; want 3, 2, 1", agent, d.LastSeq, len(d.History), len(d.Events))
		}
	}
}

func testHostFields(t *testing.T, s *store.Store) {
	ctx := context.Background()
	old := HB(1, "Healthy")
	newer := HB(2, "Degraded")
	newer.Heartbeat = &wire.Heartbeat{
		State: "Degraded",
		Checks: []wire.Check{
			{Name: "engine.api", Status: "ok", Time: T0},
			{Name: "disk", Status: "warn", Message: "82% used", Time: T0.Add(time.Second)},
		},
		Engine:       wire.Engine{Flavor: "containerd", Version: "2.0.1", Active: true},
		Cache:        map[string]float64{"hits": 12, "misses": 3.5},
		AgentVersion: "1.2.3",
		Labels:       map[string]string{"berth.io/pool": "gpu", "env": "prod"},
		OSBuild:      "Ubuntu 24.04",
		Dropped:      wire.Dropped{Heartbeats: 4, Events: 1},
	}
	mustIngest(t, s, batch("h1", old, newer, Ev(3, "engine.upgrade.started")), T0)
	want := wire.Host{
		ID: "h1", State: "Degraded", ReportedState: "Degraded",
		Engine:        newer.Heartbeat.Engine,
		AgentVersion:  "1.2.3",
		OSBuild:       "Ubuntu 24.04",
		Labels:        newer.Heartbeat.Labels,
		Checks:        newer.Heartbeat.Checks,
		Cache:         newer.Heartbeat.Cache,
		Dropped:       newer.Heartbeat.Dropped,
		Interval:      store.DefaultInterval, // IntervalSeconds 0
		LastReport:    T0,
		LastHeartbeat: newer.Time,
		FirstSeen:     T0,
		LastSeq:       3,
	}
	d, err := s.Host(ctx, "h1", T0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, d.Host); diff != "" {
		t.Errorf("host (-want +got):\n%s", diff)
	}
	// An events-only batch later moves lastReport and lastSeq only.
	later := T0.Add(time.Minute)
	mustIngest(t, s, batch("h1", Ev(4, "engine.upgrade.succeeded")), later)
	want.LastReport, want.LastSeq = later, 4
	if d, err = s.Host(ctx, "h1", later, 0); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, d.Host); diff != "" {
		t.Errorf("host after events (-want +got):\n%s", diff)
	}
	// A heartbeat without labels clears them (and their filter rows).
	hb := HB(5, "Healthy")
	mustIngest(t, s, batch("h1", hb), later)
	if d, err = s.Host(ctx, "h1", later, 0); err != nil {
		t.Fatal(err)
	}
	if d.Labels != nil || d.Interval != 10*time.Second || d.ReportedState != "Healthy" || d.Engine.Flavor != "docker" || !d.FirstSeen.Equal(T0) {
		t.Errorf("host after a plain heartbeat: %+v", d.Host)
	}
	page, err := s.Hosts(ctx, wire.HostFilter{Labels: map[string]string{"env": "prod"}}, later)
	if err != nil {
		t.Fatal(err)
	}
	if page.Total != 0 {
		t.Errorf("label filter matched %d hosts after the labels went", page.Total)
	}
}

func testEventsOnly(t *testing.T, s *store.Store) {
	ack := mustIngest(t, s, batch("h1", Ev(3, "engine.installed"), Ev(4, "cache.tier.down")), T0)
	if ack != (wire.Ack{Agent: "h1", UpTo: 4, Stored: 2}) {
		t.Errorf("ack %+v", ack)
	}
	d, err := s.Host(context.Background(), "h1", T0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if d.State != "Initializing" || d.Interval != store.DefaultInterval || !d.LastReport.Equal(T0) || !d.FirstSeen.Equal(T0) ||
		!d.LastHeartbeat.IsZero() || len(d.Events) != 2 || len(d.History) != 0 {
		t.Errorf("events-only host: %+v", d)
	}
}

func testStale(t *testing.T, s *store.Store) {
	ctx := context.Background()
	mustIngest(t, s, batch("h1", HB(1, "Healthy")), T0) // interval 10s
	for _, c := range []struct {
		after time.Duration
		want  string
	}{
		{0, "Healthy"},
		{30 * time.Second, "Healthy"}, // exactly 3 intervals: not yet
		{30*time.Second + time.Millisecond, wire.StateStale},
		{time.Hour, wire.StateStale},
	} {
		now := T0.Add(c.after)
		d, err := s.Host(ctx, "h1", now, 0)
		if err != nil {
			t.Fatal(err)
		}
		if d.State != c.want || d.ReportedState != "Healthy" {
			t.Errorf("after %s: state %q reported %q, want %q", c.after, d.State, d.ReportedState, c.want)
		}
		for _, st := range []string{"Healthy", wire.StateStale} {
			p, err := s.Hosts(ctx, wire.HostFilter{State: st}, now)
			if err != nil {
				t.Fatal(err)
			}
			if want := b2i(st == c.want); p.Total != want || len(p.Hosts) != want {
				t.Errorf("after %s: filter %s matched %d (%d listed), want %d", c.after, st, p.Total, len(p.Hosts), want)
			}
		}
	}
	// A report, even of events only, makes it fresh again.
	mustIngest(t, s, batch("h1", Ev(2, "x")), T0.Add(time.Hour))
	if d, _ := s.Host(ctx, "h1", T0.Add(time.Hour), 0); d.State != "Healthy" {
		t.Errorf("after a new report: state %q, want Healthy", d.State)
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// fleet ingests a fixed fleet for the filter, sort and count cases:
// hosts whose last reports are T0-i minutes, interval 60s (so i >= 4 are
// Stale at T0+1m... see now below).
type fleetHost struct {
	id, state, engine, agent string
	labels                   map[string]string
	age                      time.Duration // last report before now
}

var fleet = []fleetHost{
	{"a1", "Healthy", "27.1.0", "1.0.0", map[string]string{"env": "prod", "pool": "gpu"}, 0},
	{"a2", "Healthy", "27.1.0", "1.1.0", map[string]string{"env": "prod", "pool": "cpu"}, time.Minute},
	{"b1", "Degraded", "26.0.0", "1.1.0", map[string]string{"env": "dev"}, 2 * time.Minute},
	{"b2", "Unhealthy", "27.1.0", "1.0.0", map[string]string{"env": "prod", "pool": "gpu"}, 10 * time.Second},
	{"c1", "Initializing", "", "1.1.0", nil, 5 * time.Second},
	{"c2", "Healthy", "26.0.0", "1.0.0", map[string]string{"env": "dev", "pool": "gpu"}, 10 * time.Minute}, // Stale
	{"d1", "Degraded", "27.1.0", "1.1.0", map[string]string{"env": "prod"}, 4 * time.Minute},               // Stale
	{"Z9", "Healthy", "27.1.0", "1.1.0", nil, 3 * time.Second},                                             // upper case sorts first
}

// fleetNow is when the fleet is looked at.
var fleetNow = T0.Add(time.Hour)

func ingestFleet(t *testing.T, s *store.Store) {
	for _, h := range fleet {
		r := HB(1, h.state)
		r.Heartbeat.Engine.Version = h.engine
		r.Heartbeat.AgentVersion = h.agent
		r.Heartbeat.Labels = h.labels
		r.Heartbeat.IntervalSeconds = 60
		mustIngest(t, s, batch(h.id, r), fleetNow.Add(-h.age))
	}
}

func (h fleetHost) effState() string {
	if h.age > 3*time.Minute {
		return wire.StateStale
	}
	return h.state
}

func ids(hs []wire.Host) []string {
	out := []string{}
	for _, h := range hs {
		out = append(out, h.ID)
	}
	return out
}

func testFilters(t *testing.T, s *store.Store) {
	ingestFleet(t, s)
	for _, c := range []struct {
		name string
		f    wire.HostFilter
		want []string
	}{
		{"all", wire.HostFilter{}, []string{"Z9", "a1", "a2", "b1", "b2", "c1", "c2", "d1"}},
		{"healthy excludes stale", wire.HostFilter{State: "Healthy"}, []string{"Z9", "a1", "a2"}},
		{"degraded", wire.HostFilter{State: "Degraded"}, []string{"b1"}},
		{"unhealthy", wire.HostFilter{State: "Unhealthy"}, []string{"b2"}},
		{"initializing", wire.HostFilter{State: "Initializing"}, []string{"c1"}},
		{"stale", wire.HostFilter{State: "Stale"}, []string{"c2", "d1"}},
		{"engine", wire.HostFilter{EngineVersion: "26.0.0"}, []string{"b1", "c2"}},
		{"agent", wire.HostFilter{AgentVersion: "1.0.0"}, []string{"a1", "b2", "c2"}},
		{"label", wire.HostFilter{Labels: map[string]string{"pool": "gpu"}}, []string{"a1", "b2", "c2"}},
		{"two labels", wire.HostFilter{Labels: map[string]string{"pool": "gpu", "env": "prod"}}, []string{"a1", "b2"}},
		{"label no match", wire.HostFilter{Labels: map[string]string{"pool": "tpu"}}, []string{}},
		{"everything", wire.HostFilter{State: "Healthy", EngineVersion: "27.1.0", AgentVersion: "1.0.0", Labels: map[string]string{"env": "prod"}}, []string{"a1"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := s.Hosts(context.Background(), c.f, fleetNow)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(c.want, ids(p.Hosts)); diff != "" {
				t.Errorf("hosts (-want +got):\n%s", diff)
			}
			if p.Total != len(c.want) || p.Next != "" {
				t.Errorf("total %d next %q, want %d and none", p.Total, p.Next, len(c.want))
			}
		})
	}
}

func testSortAndPaging(t *testing.T, s *store.Store) {
	ingestFleet(t, s)
	keys := map[string]func(h fleetHost) string{
		"id":            func(h fleetHost) string { return h.id },
		"state":         func(h fleetHost) string { return h.effState() },
		"engineVersion": func(h fleetHost) string { return h.engine },
		"agentVersion":  func(h fleetHost) string { return h.agent },
		// zero-padded so that text order is time order
		"lastReport": func(h fleetHost) string { return fmt.Sprintf("%020d", fleetNow.Add(-h.age).UnixMilli()) },
	}
	for name, key := range keys {
		for _, desc := range []bool{false, true} {
			sortName := name
			if desc {
				sortName = "-" + name
			}
			want := slices.Clone(fleet)
			sort.SliceStable(want, func(i, j int) bool {
				ki, kj := key(want[i]), key(want[j])
				if ki != kj {
					return (ki < kj) != desc
				}
				return (want[i].id < want[j].id) != desc
			})
			var wantIDs []string
			for _, h := range want {
				wantIDs = append(wantIDs, h.id)
			}
			for _, limit := range []int{1, 3, 8, 0} {
				t.Run(fmt.Sprintf("%s/limit%d", sortName, limit), func(t *testing.T) {
					var got []string
					f := wire.HostFilter{Sort: sortName, Limit: limit}
					for pages := 0; ; pages++ {
						if pages > len(fleet) {
							t.Fatalf("more pages than hosts")
						}
						p, err := s.Hosts(context.Background(), f, fleetNow)
						if err != nil {
							t.Fatal(err)
						}
						if p.Total != len(fleet) {
							t.Errorf("total %d, want %d", p.Total, len(fleet))
						}
						got = append(got, ids(p.Hosts)...)
						if p.Next == "" {
							break
						}
						f.Cursor = p.Next
					}
					if diff := cmp.Diff(wantIDs, got); diff != "" {
						t.Errorf("order (-want +got):\n%s", diff)
					}
				})
			}
		}
	}
	// Paging with a filter: Total is the filter's.
	f := wire.HostFilter{Labels: map[string]string{"env": "prod"}, Sort: "-lastReport", Limit: 2}
	var got []string
	for {
		p, err := s.Hosts(context.Background(), f, fleetNow)
		if err != nil {
			t.Fatal(err)
		}
		if p.Total != 4 {
			t.Errorf("filtered total %d, want 4", p.Total)
		}
		got = append(got, ids(p.Hosts)...)
		if p.Next == "" {
			break
		}
		f.Cursor = p.Next
	}
	if diff := cmp.Diff([]string{"a1", "b2", "a2", "d1"}, got); diff != "" {
		t.Errorf("filtered pages (-want +got):\n%s", diff)
	}
}

func testBadFilters(t *testing.T, s *store.Store) {
	ingestFleet(t, s)
	p, err := s.Hosts(context.Background(), wire.HostFilter{Sort: "state", Limit: 2}, fleetNow)
	if err != nil || p.Next == "" {
		t.Fatalf("first page: %v, next %q", err, p.Next)
	}
	for _, c := range []struct {
		f    wire.HostFilter
		want string // in the message
	}{
		{wire.HostFilter{State: "Sick"}, "Healthy, Degraded, Unhealthy, Initializing, Stale"},
		{wire.HostFilter{State: "healthy"}, "want one of"},
		{wire.HostFilter{Sort: "name"}, "id, state, engineVersion, agentVersion, lastReport"},
		{wire.HostFilter{Sort: "--id"}, "want one of"},
		{wire.HostFilter{Limit: -1}, "1..1000"},
		{wire.HostFilter{Limit: wire.MaxLimit + 1}, "1..1000"},
		{wire.HostFilter{Cursor: "garbage!"}, "not one this store made"},
		{wire.HostFilter{Cursor: "eyJ2IjoyfQ"}, "not one this store made"},
		{wire.HostFilter{Sort: "id", Cursor: p.Next}, `made for sort "state"`},
	} {
		_, err := s.Hosts(context.Background(), c.f, fleetNow)
		if !errors.Is(err, store.ErrBadFilter) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Hosts(%+v) = %v, want ErrBadFilter saying %q", c.f, err, c.want)
		}
	}
}

func testHostDetail(t *testing.T, s *store.Store) {
	ctx := context.Background()
	states := []string{"Initializing", "Healthy", "Degraded", "Healthy", "Unhealthy"}
	var recs []wire.Record
	for i, st := range states {
		recs = append(recs, HB(uint64(2*i+1), st), Ev(uint64(2*i+2), fmt.Sprintf("kind.%d", i)))
	}
	mustIngest(t, s, batch("h1", recs[:4]...), T0)
	mustIngest(t, s, batch("h1", recs[4:]...), T0.Add(time.Second))
	d, err := s.Host(ctx, "h1", T0, 2)
	if err != nil {
		t.Fatal(err)
	}
	wantHist := []wire.HealthPoint{
		{Seq: 9, Time: T0.Add(9 * time.Second), State: "Unhealthy", Received: T0.Add(time.Second)},
		{Seq: 7, Time: T0.Add(7 * time.Second), State: "Healthy", Received: T0.Add(time.Second)},
	}
	if diff := cmp.Diff(wantHist, d.History); diff != "" {
		t.Errorf("history (-want +got):\n%s", diff)
	}
	wantEv := []wire.EventRecord{
		{Seq: 10, Time: T0.Add(10 * time.Second), Received: T0.Add(time.Second), Event: wire.Event{Kind: "kind.4", Message: "m10", Fields: map[string]string{"seq": "10"}}},
		{Seq: 8, Time: T0.Add(8 * time.Second), Received: T0.Add(time.Second), Event: wire.Event{Kind: "kind.3", Message: "m8", Fields: map[string]string{"seq": "8"}}},
	}
	if diff := cmp.Diff(wantEv, d.Events); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	for _, c := range []struct{ n, want int }{{0, 0}, {-1, 0}, {5, 5}, {100, 5}} {
		d, err := s.Host(ctx, "h1", T0, c.n)
		if err != nil {
			t.Fatal(err)
		}
		if len(d.History) != c.want || len(d.Events) != c.want || d.History == nil || d.Events == nil {
			t.Errorf("n=%d: %d history, %d events, want %d each (non-nil)", c.n, len(d.History), len(d.Events), c.want)
		}
		if c.want == 5 && (d.History[4].Seq != 1 || d.Events[4].Seq != 2) {
			t.Errorf("n=%d: oldest are %d and %d, want 1 and 2", c.n, d.History[4].Seq, d.Events[4].Seq)
		}
	}
	if _, err := s.Host(ctx, "nope", T0, 1); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Host(nope) = %v, want ErrNotFound", err)
	}
}

func testCounts(t *testing.T, s *store.Store) {
	c, err := s.Counts(context.Background(), fleetNow)
	if err != nil {
		t.Fatal(err)
	}
	empty := wire.Counts{
		ByState:         map[string]int{"Healthy": 0, "Degraded": 0, "Unhealthy": 0, "Initializing": 0, "Stale": 0},
		ByEngineVersion: map[string]int{}, ByAgentVersion: map[string]int{},
	}
	if diff := cmp.Diff(empty, c); diff != "" {
		t.Errorf("empty store counts (-want +got):\n%s", diff)
	}
	ingestFleet(t, s)
	if c, err = s.Counts(context.Background(), fleetNow); err != nil {
		t.Fatal(err)
	}
	want := wire.Counts{
		Total:           8,
		ByState:         map[string]int{"Healthy": 3, "Degraded": 1, "Unhealthy": 1, "Initializing": 1, "Stale": 2},
		ByEngineVersion: map[string]int{"27.1.0": 5, "26.0.0": 2, "": 1},
		ByAgentVersion:  map[string]int{"1.0.0": 3, "1.1.0": 5},
	}
	if diff := cmp.Diff(want, c); diff != "" {
		t.Errorf("counts (-want +got):\n%s", diff)
	}
}

func testBindIdentity(t *testing.T, s *store.Store) {
	ctx := context.Background()
	steps := []struct {
		agent, subject string
		want           error
	}{
		{"vm-1", "sub-1", nil},
		{"vm-1", "sub-1", nil},
		{"vm-1", "sub-2", store.ErrIdentityMismatch},
		{"vm-2", "sub-1", store.ErrIdentityMismatch},
		{"vm-2", "sub-2", nil},
		{"vm-2", "sub-2", nil},
		{"vm-1", "sub-1", nil},
	}
	for i, st := range steps {
		if err := s.BindIdentity(ctx, st.agent, st.subject); !errors.Is(err, st.want) || (st.want == nil) != (err == nil) {
			t.Errorf("step %d: BindIdentity(%s, %s) = %v, want %v", i, st.agent, st.subject, err, st.want)
		}
	}
	if err := s.BindIdentity(ctx, "", "x"); err == nil {
		t.Errorf("BindIdentity with no agent succeeded")
	}
}

// testBindResource: a managed identity binds by its resource; a resource
// built again with a new identity moves its binding to the new VM's agent
// id, and the old identity's tokens cannot move it back; a host bound by
// object id before resources were bound keeps its binding under the
// resource.
func testBindResource(t *testing.T, s *store.Store) {
	ctx := context.Background()
	// Tokens carry whole seconds; the binding's time is the store's clock.
	now := time.Now().Add(-time.Minute).Truncate(time.Second)
	m, m2 := "azure:/subscriptions/s/resourcegroups/rg/providers/p/t/vm", "azure:/subscriptions/s/resourcegroups/rg/providers/p/t/vm2"
	steps := []struct {
		name string
		b    store.Binding
		want error
	}{
		{"first use", store.Binding{Agent: "vm-1", Subject: m, ObjectID: "o1", Issued: now}, nil},
		{"again", store.Binding{Agent: "vm-1", Subject: m, ObjectID: "o1", Issued: now}, nil},
		{"the resource as another agent", store.Binding{Agent: "vm-2", Subject: m, ObjectID: "o1", Issued: now}, store.ErrIdentityMismatch},
		{"another resource as the agent", store.Binding{Agent: "vm-1", Subject: m2, ObjectID: "o9", Issued: now}, store.ErrIdentityMismatch},
		{"resource rebuilt: new identity, new VM id", store.Binding{Agent: "vm-3", Subject: m, ObjectID: "o2", Issued: now.Add(2 * time.Minute)}, nil},
		{"the old identity's token cannot move it back", store.Binding{Agent: "vm-1", Subject: m, ObjectID: "o1", Issued: now}, store.ErrIdentityMismatch},
		{"the new identity stays", store.Binding{Agent: "vm-3", Subject: m, ObjectID: "o2", Issued: now.Add(2 * time.Minute)}, nil},
	}
	for _, st := range steps {
		if err := s.Bind(ctx, st.b); !errors.Is(err, st.want) || (st.want == nil) != (err == nil) {
			t.Errorf("%s: Bind(%+v) = %v, want %v", st.name, st.b, err, st.want)
		}
	}
	// Bound by object id before: the binding carries over to the resource.
	if err := s.BindIdentity(ctx, "vm-4", "entra:o4"); err != nil {
		t.Fatal(err)
	}
	if err := s.Bind(ctx, store.Binding{Agent: "vm-4", Subject: m2, ObjectID: "o4", Issued: now, Formerly: "entra:o4"}); err != nil {
		t.Errorf("upgrade an object id binding: %v", err)
	}
	if err := s.Bind(ctx, store.Binding{Agent: "vm-5", Subject: m2, ObjectID: "o4", Issued: now}); !errors.Is(err, store.ErrIdentityMismatch) {
		t.Errorf("the upgraded resource as another agent: %v", err)
	}
}

func testBindIdentityConcurrent(t *testing.T, s *store.Store) {
	const n = 16
	count := func(bind func(i int) error) int {
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() { defer wg.Done(); errs[i] = bind(i) }()
		}
		wg.Wait()
		ok := 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case !errors.Is(err, store.ErrIdentityMismatch):
				t.Errorf("BindIdentity: %v", err)
			}
		}
		return ok
	}
	ctx := context.Background()
	// One agent, many subjects: one wins.
	if ok := count(func(i int) error { return s.BindIdentity(ctx, "vm-a", fmt.Sprintf("sub-a%d", i)) }); ok != 1 {
		t.Errorf("%d subjects bound to one agent, want 1", ok)
	}
	// One subject, many agents: one wins.
	if ok := count(func(i int) error { return s.BindIdentity(ctx, fmt.Sprintf("vm-b%d", i), "sub-b") }); ok != 1 {
		t.Errorf("one subject bound to %d agents, want 1", ok)
	}
	// The same pair many times: all succeed.
	if ok := count(func(int) error { return s.BindIdentity(ctx, "vm-c", "sub-c") }); ok != n {
		t.Errorf("same pair: %d of %d succeeded", ok, n)
	}
}

var tokenRE = regexp.MustCompile(`^berth_([0-9a-f]{12})_[A-Za-z0-9_-]{43}$`)

func testTokens(t *testing.T, s *store.Store) {
	ctx := context.Background()
	agentTok, agentSecret, err := s.IssueToken(ctx, store.RoleAgent, "vm-1", T0)
	if err != nil {
		t.Fatal(err)
	}
	opTok, opSecret, err := s.IssueToken(ctx, store.RoleOperator, "alice", T0.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		tok    store.Token
		secret string
	}{{agentTok, agentSecret}, {opTok, opSecret}} {
		m := tokenRE.FindStringSubmatch(c.secret)
		if m == nil || m[1] != c.tok.ID {
			t.Errorf("secret %q does not look like berth_%s_<43 base64url>", c.secret, c.tok.ID)
		}
		got, err := s.LookupToken(ctx, c.secret)
		if err != nil {
			t.Errorf("LookupToken: %v", err)
		}
		if diff := cmp.Diff(c.tok, got); diff != "" {
			t.Errorf("LookupToken (-want +got):\n%s", diff)
		}
	}
	if agentTok.Role != store.RoleAgent || agentTok.Subject != "vm-1" || !agentTok.Created.Equal(T0) || agentTok.Revoked != nil {
		t.Errorf("issued token %+v", agentTok)
	}
	wrong := agentSecret[:len(agentSecret)-1] + "A"
	if wrong == agentSecret {
		wrong = agentSecret[:len(agentSecret)-1] + "B"
	}
	for _, bad := range []string{"", "berth_", "Bearer x", wrong, "berth_" + opTok.ID + agentSecret[len("berth_")+12:], "berth_000000000000_" + strings.Repeat("A", 43)} {
		if _, err := s.LookupToken(ctx, bad); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("LookupToken(%q) = %v, want ErrNotFound", bad, err)
		}
	}
	revokedAt := T0.Add(time.Hour)
	if err := s.RevokeToken(ctx, agentTok.ID, revokedAt); err != nil {
		t.Fatalf("RevokeToken: %v", err)
	}
	if err := s.RevokeToken(ctx, agentTok.ID, revokedAt.Add(time.Hour)); err != nil {
		t.Errorf("RevokeToken again: %v", err)
	}
	got, err := s.LookupToken(ctx, agentSecret)
	if !errors.Is(err, store.ErrRevoked) || got.ID != agentTok.ID || got.Revoked == nil || !got.Revoked.Equal(revokedAt) {
		t.Errorf("LookupToken(revoked) = %+v, %v; want the token revoked at %s and ErrRevoked", got, err, revokedAt)
	}
	for _, c := range []struct {
		since time.Time
		want  []string
	}{{revokedAt.Add(-time.Millisecond), []string{agentTok.ID}}, {revokedAt, nil}, {time.UnixMilli(0), []string{agentTok.ID}}} {
		ids, err := s.RevokedSince(ctx, c.since.UnixMilli())
		if err != nil || !slices.Equal(ids, c.want) {
			t.Errorf("RevokedSince(%s) = %q, %v; want %q", c.since, ids, err, c.want)
		}
	}
	if err := s.RevokeToken(ctx, "000000000000", revokedAt); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RevokeToken(unknown) = %v, want ErrNotFound", err)
	}
	list, err := s.Tokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	agentTok.Revoked = &revokedAt
	if diff := cmp.Diff([]store.Token{agentTok, opTok}, list); diff != "" {
		t.Errorf("Tokens (-want +got):\n%s", diff)
	}
	testConcurrentLookups(t, s)
	if _, _, err := s.IssueToken(ctx, "admin", "bob", T0); err == nil {
		t.Errorf("IssueToken(role admin) succeeded")
	}
	if _, _, err := s.IssueToken(ctx, store.RoleOperator, "", T0); err == nil {
		t.Errorf("IssueToken(no subject) succeeded")
	}
}

// testConcurrentLookups: lookups at once (which PostgreSQL answers
// together, in one query) each get their own token, and a wrong secret of
// a real id or an unknown id gets ErrNotFound.
func testConcurrentLookups(t *testing.T, s *store.Store) {
	ctx := context.Background()
	const n = 64
	secrets := make([]string, n)
	for i := range secrets {
		var err error
		if _, secrets[i], err = s.IssueToken(ctx, store.RoleAgent, fmt.Sprintf("lookup-%d", i), T0); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for round := range 4 {
		for i, secret := range secrets {
			wg.Go(func() {
				switch (i + round) % 3 {
				case 0:
					got, err := s.LookupToken(ctx, secret)
					if err != nil || got.Subject != fmt.Sprintf("lookup-%d", i) || !strings.Contains(secret, got.ID) {
						t.Errorf("LookupToken(token %d) = %+v, %v; want lookup-%d", i, got, err, i)
					}
				case 1:
					wrong := secret[:len(secret)-2] + "AA"
					if _, err := s.LookupToken(ctx, wrong); !errors.Is(err, store.ErrNotFound) && wrong != secret {
						t.Errorf("LookupToken(token %d with a wrong secret) = %v, want ErrNotFound", i, err)
					}
				default:
					if _, err := s.LookupToken(ctx, fmt.Sprintf("berth_%012x_%s", 1<<40+i, strings.Repeat("A", 43))); !errors.Is(err, store.ErrNotFound) {
						t.Errorf("LookupToken(unknown id %d) = %v, want ErrNotFound", i, err)
					}
				}
			})
		}
	}
	wg.Wait()
}

var sessionRE = regexp.MustCompile(`^berth_session_[A-Za-z0-9_-]{43}$`)

// testSessions: a web session lives until its expiry, its sign-out, or
// the revocation of the token that opened it, whichever comes first.
func testSessions(t *testing.T, s *store.Store) {
	ctx := context.Background()
	tok, _, err := s.IssueToken(ctx, store.RoleOperator, "alice", T0)
	if err != nil {
		t.Fatal(err)
	}
	open := func(subject, tokenID string, ttl time.Duration) string {
		t.Helper()
		secret, err := s.CreateSession(ctx, subject, tokenID, T0, T0.Add(ttl))
		if err != nil {
			t.Fatalf("CreateSession: %v", err)
		}
		if !sessionRE.MatchString(secret) {
			t.Errorf("session secret %q does not look like berth_session_<43 base64url>", secret)
		}
		return secret
	}
	check := func(what, secret string, at time.Time, want error) {
		t.Helper()
		got, err := s.LookupSession(ctx, secret, at)
		if !errors.Is(err, want) || (want == nil) != (err == nil) {
			t.Errorf("%s: LookupSession = %+v, %v; want %v", what, got, err, want)
		}
	}
	a := open("alice", tok.ID, time.Hour)
	got, err := s.LookupSession(ctx, a, T0.Add(time.Minute))
	if want := (store.Session{Subject: "alice", TokenID: tok.ID, Created: T0, Expires: T0.Add(time.Hour)}); err != nil || got != want {
		t.Errorf("LookupSession = %+v, %v; want %+v", got, err, want)
	}
	check("at its expiry", a, T0.Add(time.Hour), store.ErrExpired)
	for _, bad := range []string{"", a[:len(a)-1], a + "x", strings.TrimPrefix(a, "berth_session_"), "berth_" + strings.Repeat("A", 200)} {
		check("secret "+bad, bad, T0, store.ErrNotFound)
	}
	entra := open("4a1b6c2e-0000-4000-8000-000000000001", "", time.Hour)
	check("an Entra operator's session", entra, T0.Add(time.Minute), nil)

	b := open("alice", tok.ID, time.Hour)
	if err := s.RevokeSession(ctx, b, T0.Add(time.Minute)); err != nil {
		t.Fatalf("RevokeSession: %v", err)
	}
	if err := s.RevokeSession(ctx, b, T0.Add(2*time.Minute)); err != nil {
		t.Errorf("RevokeSession twice: %v", err)
	}
	check("after sign-out", b, T0.Add(2*time.Minute), store.ErrRevoked)
	check("the other session", a, T0.Add(2*time.Minute), nil)
	if err := s.RevokeToken(ctx, tok.ID, T0.Add(3*time.Minute)); err != nil {
		t.Fatal(err)
	}
	check("after its token was revoked", a, T0.Add(3*time.Minute), store.ErrRevoked)
	check("the Entra session", entra, T0.Add(3*time.Minute), nil)

	// Sessions that ended are deleted when the next one starts.
	short := open("bob", "", time.Minute)
	if _, err := s.CreateSession(ctx, "carol", "", T0.Add(2*time.Hour), T0.Add(3*time.Hour)); err != nil {
		t.Fatal(err)
	}
	check("an ended session after the next sign-in", short, T0, store.ErrNotFound)
	if _, err := s.CreateSession(ctx, "dave", "", T0, T0); err == nil {
		t.Errorf("CreateSession with no time left succeeded")
	}
}

func testClosed(t *testing.T, s *store.Store) {
	mustIngest(t, s, batch("h1", HB(1, "Healthy")), T0)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Ingest(context.Background(), batch("h1", HB(2, "Healthy")), T0); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Ingest after Close = %v, want ErrClosed", err)
	}
	if err := s.Ping(context.Background()); err == nil {
		t.Errorf("Ping after Close succeeded")
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// testReopen: what one store wrote, the same database opened again reads,
// and a retry after the reopen is a duplicate.
func testReopen(t *testing.T, dsn string, open func(*testing.T, string) *store.Store) {
	s := open(t, dsn)
	ctx := context.Background()
	mustIngest(t, s, batch("h1", HB(1, "Healthy"), Ev(2, "engine.installed")), T0)
	tok, secret, err := s.IssueToken(ctx, store.RoleAgent, "h1", T0)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s = open(t, dsn)
	d, err := s.Host(ctx, "h1", T0, 10)
	if err != nil {
		t.Fatalf("Host after reopen: %v", err)
	}
	if d.LastSeq != 2 || len(d.History) != 1 || len(d.Events) != 1 {
		t.Errorf("after reopen: lastSeq %d, %d history, %d events; want 2, 1, 1", d.LastSeq, len(d.History), len(d.Events))
	}
	got, err := s.LookupToken(ctx, secret)
	if err != nil || got.ID != tok.ID {
		t.Errorf("LookupToken after reopen = %v, %v; want %s", got, err, tok.ID)
	}
	ack := mustIngest(t, s, batch("h1", HB(1, "Healthy"), Ev(2, "engine.installed")), T0)
	if ack.Duplicates != 2 {
		t.Errorf("retry after reopen: %+v, want 2 duplicates", ack)
	}
}
