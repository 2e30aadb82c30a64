package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/berthhq/berth/control/store"
	"github.com/berthhq/berth/control/wire"
)

const day = 24 * time.Hour

// at returns rec with its time set to t.
func at(rec wire.Record, t time.Time) wire.Record {
	rec.Time = t
	return rec
}

// kept returns the sequence numbers of a host's stored heartbeats and
// events, newest first.
func kept(t *testing.T, s *store.Store, id string, now time.Time) (hist, evs []uint64) {
	t.Helper()
	d, err := s.Host(context.Background(), id, now, wire.MaxLimit)
	if err != nil {
		t.Fatalf("Host(%s): %v", id, err)
	}
	hist, evs = []uint64{}, []uint64{}
	for _, p := range d.History {
		hist = append(hist, p.Seq)
	}
	for _, e := range d.Events {
		evs = append(evs, e.Seq)
	}
	return hist, evs
}

func checkKept(t *testing.T, s *store.Store, id string, now time.Time, hist, evs []uint64) {
	t.Helper()
	gotH, gotE := kept(t, s, id, now)
	if diff := cmp.Diff([]any{hist, evs}, []any{gotH, gotE}); diff != "" {
		t.Errorf("%s keeps [heartbeats events] (-want +got):\n%s", id, diff)
	}
}

// testRetentionAge: Prune deletes heartbeats and events past their ages,
// by the records' own times; the host's latest state stays; a late retry
// of a pruned record is a duplicate, a record never stored there a 409.
func testRetentionAge(t *testing.T, s *store.Store) {
	ctx := context.Background()
	old := batch("h1", at(HB(1, "Healthy"), T0), at(HB(2, "Healthy"), T0), at(Ev(3, "engine.installed"), T0))
	mustIngest(t, s, old, T0)
	mustIngest(t, s, batch("h1", at(HB(10, "Degraded"), T0.Add(40*day))), T0.Add(40*day))
	now := T0.Add(40 * day)
	p, err := s.Prune(ctx, now)
	if err != nil {
		t.Fatalf("Prune: %v", err)
	}
	if p != (store.Pruned{Heartbeats: 2}) {
		t.Errorf("Prune at 40 days = %+v, want 2 heartbeats", p)
	}
	checkKept(t, s, "h1", now, []uint64{10}, []uint64{3})
	// The agent never heard the first answer and sends the batch again,
	// 40 days on: its records were stored (and two pruned since).
	if ack := mustIngest(t, s, old, now); ack != (wire.Ack{Agent: "h1", UpTo: 10, Duplicates: 3}) {
		t.Errorf("late retry of pruned records: %+v, want 3 duplicates", ack)
	}
	// A record numbered there that was never stored, with a recent time,
	// is a numbering gone back.
	if _, err := s.Ingest(ctx, batch("h1", at(HB(5, "Healthy"), now)), now); !errors.Is(err, store.ErrSeqBackwards) {
		t.Errorf("Ingest of a never-stored 5 = %v, want ErrSeqBackwards", err)
	}
	// Past every age nothing is left but the host's latest state.
	later := T0.Add(200 * day)
	if p, err = s.Prune(ctx, later); err != nil || p != (store.Pruned{Heartbeats: 1, Events: 1}) {
		t.Errorf("Prune at 200 days = %+v, %v; want 1 heartbeat and 1 event", p, err)
	}
	checkKept(t, s, "h1", later, []uint64{}, []uint64{})
	d, err := s.Host(ctx, "h1", now, 0)
	if err != nil || d.ReportedState != "Degraded" || d.LastSeq != 10 {
		t.Errorf("host after pruning: %+v, %v; want its latest state kept", d.Host, err)
	}
	if p, err = s.Prune(ctx, later); err != nil || p != (store.Pruned{}) {
		t.Errorf("Prune again = %+v, %v; want nothing", p, err)
	}
}

// testRetentionCount: a host keeps at most its count of each kind, the
// oldest go as new ones come, and a late retry of one of those is a
// duplicate.
func testRetentionCount(t *testing.T, s *store.Store) {
	ctx := context.Background()
	for seq := uint64(1); seq <= 20; seq += 2 {
		mustIngest(t, s, batch("h1", HB(seq, "Healthy"), HB(seq+1, "Healthy")), T0)
	}
	for seq := uint64(21); seq <= 30; seq++ {
		mustIngest(t, s, batch("h1", Ev(seq, "x")), T0)
	}
	checkKept(t, s, "h1", T0, []uint64{20, 19, 18, 17, 16}, []uint64{30, 29, 28})
	if ack := mustIngest(t, s, batch("h1", HB(3, "Healthy"), HB(4, "Healthy"), Ev(22, "x"), HB(31, "Unhealthy")), T0); ack != (wire.Ack{Agent: "h1", UpTo: 31, Stored: 1, Duplicates: 3}) {
		t.Errorf("late retry of pruned records: %+v, want 3 duplicates and 1 stored", ack)
	}
	checkKept(t, s, "h1", T0, []uint64{31, 20, 19, 18, 17}, []uint64{30, 29, 28})
	// Below the pruned numbers, but newer than anything pruned: never
	// stored, a numbering gone back.
	if _, err := s.Ingest(ctx, batch("h1", at(HB(12, "Healthy"), T0.Add(time.Hour))), T0); !errors.Is(err, store.ErrSeqBackwards) {
		t.Errorf("Ingest of a never-stored 12 = %v, want ErrSeqBackwards", err)
	}
	d, err := s.Host(ctx, "h1", T0, 0)
	if err != nil || d.ReportedState != "Unhealthy" || d.LastSeq != 31 {
		t.Errorf("host: %+v, %v; want Unhealthy at 31", d.Host, err)
	}
	// Another host is counted apart.
	mustIngest(t, s, batch("h2", HB(1, "Healthy")), T0)
	checkKept(t, s, "h2", T0, []uint64{1}, []uint64{})
}

// testPruner: the store prunes in the background without being asked,
// and Close stops it.
func testPruner(t *testing.T, s *store.Store) {
	mustIngest(t, s, batch("h1", at(HB(1, "Healthy"), time.Now().Add(-31*day)), at(HB(2, "Healthy"), time.Now())), time.Now())
	deadline := time.Now().Add(20 * time.Second)
	for {
		hist, _ := kept(t, s, "h1", time.Now())
		if len(hist) == 1 && hist[0] == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the background pruner left %v, want [2]", hist)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// testForget: a forgotten host's next records are taken whatever their
// numbers; its history is kept, or dropped when asked.
func testForget(t *testing.T, s *store.Store) {
	ctx := context.Background()
	hb := HB(100, "Healthy")
	hb.Heartbeat.Labels = map[string]string{"pool": "blue"}
	mustIngest(t, s, batch("h1", hb, Ev(101, "x")), T0)
	mustIngest(t, s, batch("h2", HB(1, "Healthy")), T0)
	if _, err := s.Ingest(ctx, batch("h1", HB(5, "Healthy")), T0); !errors.Is(err, store.ErrSeqBackwards) {
		t.Fatalf("Ingest of 5 below 101 = %v, want ErrSeqBackwards", err)
	}
	f, err := s.Forget(ctx, "h1", false)
	if err != nil || f != (wire.Forgotten{ID: "h1"}) {
		t.Fatalf("Forget(h1) = %+v, %v", f, err)
	}
	if _, err := s.Host(ctx, "h1", T0, 0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Host(h1) after forget = %v, want ErrNotFound", err)
	}
	if p, err := s.Hosts(ctx, wire.HostFilter{Labels: map[string]string{"pool": "blue"}}, T0); err != nil || p.Total != 0 {
		t.Errorf("label filter after forget: %d hosts, %v; want none", p.Total, err)
	}
	if ack := mustIngest(t, s, batch("h1", HB(5, "Degraded")), T0.Add(time.Minute)); ack != (wire.Ack{Agent: "h1", UpTo: 5, Stored: 1}) {
		t.Errorf("first report after forget: %+v, want 5 stored", ack)
	}
	checkKept(t, s, "h1", T0, []uint64{100, 5}, []uint64{101})
	d, err := s.Host(ctx, "h1", T0, 0)
	if err != nil || d.LastSeq != 5 || d.ReportedState != "Degraded" || !d.FirstSeen.Equal(T0.Add(time.Minute)) {
		t.Errorf("host after forget and a report: %+v, %v", d.Host, err)
	}
	if f, err = s.Forget(ctx, "h1", true); err != nil || f != (wire.Forgotten{ID: "h1", HistoryDropped: true, Heartbeats: 2, Events: 1}) {
		t.Fatalf("Forget(h1, drop) = %+v, %v", f, err)
	}
	mustIngest(t, s, batch("h1", HB(1, "Healthy")), T0)
	checkKept(t, s, "h1", T0, []uint64{1}, []uint64{})
	// The other host is untouched.
	checkKept(t, s, "h2", T0, []uint64{1}, []uint64{})
	for _, drop := range []bool{false, true} {
		if _, err := s.Forget(ctx, "nope", drop); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Forget(nope, %v) = %v, want ErrNotFound", drop, err)
		}
	}
	// Only history left (forgotten, kept): dropping it still works.
	if _, err := s.Forget(ctx, "h2", false); err != nil {
		t.Fatal(err)
	}
	if f, err = s.Forget(ctx, "h2", true); err != nil || f.Heartbeats != 1 {
		t.Errorf("Forget(h2, drop) of its kept history = %+v, %v", f, err)
	}
}

// testCountsCached: with CountsMaxAge, Counts answers from a copy until
// it is that old, then from the old copy while a new one is read, and
// never hands out the copy's own maps.
func testCountsCached(t *testing.T, s *store.Store) {
	ctx := context.Background()
	ingestFleet(t, s)
	first, err := s.Counts(ctx, fleetNow)
	if err != nil || first.Total != len(fleet) {
		t.Fatalf("Counts = %+v, %v; want %d hosts", first, err, len(fleet))
	}
	first.ByState["Healthy"] = 1000 // the caller's copy, not the store's
	mustIngest(t, s, batch("new-host", HB(1, "Healthy")), fleetNow)
	c, err := s.Counts(ctx, fleetNow)
	if err != nil || c.Total != len(fleet) || c.ByState["Healthy"] != 3 {
		t.Errorf("Counts within the age = %+v, %v; want the copy: %d hosts, 3 Healthy", c, err, len(fleet))
	}
	deadline := time.Now().Add(20 * time.Second)
	for c.Total != len(fleet)+1 {
		if time.Now().After(deadline) {
			t.Fatalf("Counts still %d hosts long after the copy's age", c.Total)
		}
		time.Sleep(50 * time.Millisecond)
		if c, err = s.Counts(ctx, fleetNow); err != nil {
			t.Fatal(err)
		}
	}
}
