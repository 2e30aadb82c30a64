package outbox

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/berthhq/berth/control/wire"
	"github.com/berthhq/berth/internal/statedb"
	"github.com/google/go-cmp/cmp"
)

func openDB(t *testing.T) *statedb.DB {
	t.Helper()
	db, err := statedb.Open(filepath.Join(t.TempDir(), "agent.db"))
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func hb(n int) wire.Heartbeat {
	return wire.Heartbeat{State: "Healthy", AgentVersion: fmt.Sprint("0.", n), Engine: wire.Engine{Flavor: "docker"}}
}

func ev(n int) wire.Event { return wire.Event{Kind: "test.event", Message: fmt.Sprint("event ", n)} }

func mustAppend(t *testing.T, o *Outbox, kind wire.Kind, p any) uint64 {
	t.Helper()
	seq, err := o.Append(context.Background(), kind, p)
	if err != nil {
		t.Fatal(err)
	}
	return seq
}

// summary is a record as "h0.3" or "e:event 4": kind and the test's marker.
func summary(t *testing.T, o *Outbox) []string {
	t.Helper()
	recs, err := o.Peek(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range recs {
		if r.Heartbeat != nil {
			out = append(out, "h"+r.Heartbeat.AgentVersion)
		} else {
			out = append(out, "e:"+r.Event.Message)
		}
	}
	return out
}

func TestAppendPeekAckAcrossReopen(t *testing.T) {
	ctx := context.Background()
	db := openDB(t)
	o := New(db, Options{})
	if got, err := o.Peek(ctx, 10); err != nil || len(got) != 0 {
		t.Fatalf("Peek on a new outbox = %v, %v", got, err)
	}
	s1 := mustAppend(t, o, wire.KindHeartbeat, hb(1))
	s2 := mustAppend(t, o, wire.KindEvent, ev(2))
	s3 := mustAppend(t, o, wire.KindHeartbeat, ptr(hb(3)))
	if !(s1 < s2 && s2 < s3) {
		t.Fatalf("seqs %d %d %d not increasing", s1, s2, s3)
	}

	// A new instance on the same file (an agent restart) sees the same.
	o = New(db, Options{})
	recs, err := o.Peek(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[0].Seq != s1 || recs[1].Seq != s2 || recs[1].Kind != wire.KindEvent || recs[1].Event.Message != "event 2" {
		t.Fatalf("Peek(2) = %+v", recs)
	}
	// What Peek returns is a valid batch as the endpoint checks it.
	if err := (wire.Batch{Agent: "a", Records: recs}).Validate(time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := o.Ack(ctx, s2); err != nil {
		t.Fatal(err)
	}
	if err := o.Ack(ctx, s1); err != nil { // a repeated, older ack is harmless
		t.Fatal(err)
	}

	o = New(db, Options{})
	if d := cmp.Diff([]string{"h0.3"}, summary(t, o)); d != "" {
		t.Fatalf("after ack (-want +got):\n%s", d)
	}
	if err := o.Ack(ctx, s3); err != nil {
		t.Fatal(err)
	}
	// Numbers are never reused, even with the outbox empty, after a reopen.
	o = New(db, Options{})
	if s4 := mustAppend(t, o, wire.KindEvent, ev(4)); s4 <= s3 {
		t.Fatalf("seq after ack and reopen = %d, want > %d", s4, s3)
	}
	st, err := o.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Records != 1 || st.Bytes <= 0 {
		t.Fatalf("stats = %+v", st)
	}
	if err := o.Ack(ctx, st.NextSeq); !errors.Is(err, ErrAckAhead) {
		t.Fatalf("Ack beyond the last record = %v, want ErrAckAhead", err)
	}
	if got := summary(t, o); len(got) != 1 {
		t.Fatalf("a refused ack deleted records: %v", got)
	}
}

func ptr[T any](v T) *T { return &v }

func TestBoundDropsOldestHeartbeatsNeverEvents(t *testing.T) {
	ctx := context.Background()
	o := New(openDB(t), Options{MaxRecords: 4})
	mustAppend(t, o, wire.KindHeartbeat, hb(1))
	mustAppend(t, o, wire.KindEvent, ev(2))
	mustAppend(t, o, wire.KindHeartbeat, hb(3))
	mustAppend(t, o, wire.KindHeartbeat, hb(4))
	mustAppend(t, o, wire.KindEvent, ev(5))     // drops h0.1
	mustAppend(t, o, wire.KindHeartbeat, hb(6)) // drops h0.3
	mustAppend(t, o, wire.KindEvent, ev(7))     // drops h0.4
	if d := cmp.Diff([]string{"e:event 2", "e:event 5", "h0.6", "e:event 7"}, summary(t, o)); d != "" {
		t.Fatalf("(-want +got):\n%s", d)
	}
	mustAppend(t, o, wire.KindEvent, ev(8)) // drops h0.6, the last heartbeat
	// Only events now: the new record is refused, stored events stay.
	if _, err := o.Append(ctx, wire.KindEvent, ev(9)); !errors.Is(err, ErrFull) {
		t.Fatalf("Append to an outbox of events = %v, want ErrFull", err)
	}
	if _, err := o.Append(ctx, wire.KindHeartbeat, hb(10)); !errors.Is(err, ErrFull) {
		t.Fatalf("Append heartbeat to an outbox of events = %v, want ErrFull", err)
	}
	if d := cmp.Diff([]string{"e:event 2", "e:event 5", "e:event 7", "e:event 8"}, summary(t, o)); d != "" {
		t.Fatalf("(-want +got):\n%s", d)
	}
	d, err := New(o.db, Options{}).Dropped(ctx) // durable: seen by a new instance
	if err != nil {
		t.Fatal(err)
	}
	if want := (wire.Dropped{Heartbeats: 5, Events: 1}); d != want {
		t.Fatalf("Dropped = %+v, want %+v", d, want)
	}
	// Once acknowledged, there is room again.
	recs, _ := o.Peek(ctx, 2)
	if err := o.Ack(ctx, recs[1].Seq); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, o, wire.KindHeartbeat, hb(11))
	if d := cmp.Diff([]string{"e:event 7", "e:event 8", "h0.11"}, summary(t, o)); d != "" {
		t.Fatalf("(-want +got):\n%s", d)
	}
}

func TestByteBound(t *testing.T) {
	ctx := context.Background()
	o := New(openDB(t), Options{MaxBytes: 600})
	for i := range 10 {
		mustAppend(t, o, wire.KindHeartbeat, hb(i))
	}
	st, err := o.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Bytes > 600 || st.Records == 0 || st.Records == 10 || st.Dropped.Heartbeats != uint64(10-st.Records) {
		t.Fatalf("stats = %+v", st)
	}
	// The newest survive.
	got := summary(t, o)
	if got[len(got)-1] != "h0.9" {
		t.Fatalf("records = %v", got)
	}
	big := wire.Event{Kind: "big", Message: string(make([]byte, 1000))}
	if _, err := o.Append(ctx, wire.KindEvent, big); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Append of a record over MaxBytes = %v, want ErrTooLarge", err)
	}
	if d, _ := o.Dropped(ctx); d.Events != 1 {
		t.Fatalf("Dropped = %+v, want 1 event", d)
	}
	if got2 := summary(t, o); !slices.Equal(got, got2) {
		t.Fatalf("a refused record changed the outbox: %v → %v", got, got2)
	}
}

func TestAppendRefusesInvalid(t *testing.T) {
	o := New(openDB(t), Options{})
	for name, c := range map[string]struct {
		kind wire.Kind
		p    any
	}{
		"wrong payload type": {wire.KindEvent, "hello"},
		"kind mismatch":      {wire.KindHeartbeat, ev(1)},
		"unknown kind":       {"metric", ev(1)},
		"invalid event":      {wire.KindEvent, wire.Event{Kind: ""}},
		"invalid heartbeat":  {wire.KindHeartbeat, wire.Heartbeat{State: "Fine"}},
	} {
		if _, err := o.Append(context.Background(), c.kind, c.p); err == nil {
			t.Errorf("%s: Append accepted it", name)
		}
	}
	if got := summary(t, o); len(got) != 0 {
		t.Fatalf("records stored: %v", got)
	}
}

func TestConcurrentAppendsGetUniqueIncreasingSeqs(t *testing.T) {
	db := openDB(t)
	// Two instances, as two processes sharing agent.db would have.
	outboxes := []*Outbox{New(db, Options{}), New(db, Options{})}
	const per = 40
	seqs := make([][]uint64, 2)
	var wg sync.WaitGroup
	for g := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				seq, err := outboxes[g].Append(context.Background(), wire.KindEvent, ev(g*1000+i))
				if err != nil {
					t.Error(err)
					return
				}
				seqs[g] = append(seqs[g], seq)
			}
		}()
	}
	wg.Wait()
	all := map[uint64]bool{}
	for g, s := range seqs {
		if !slices.IsSorted(s) {
			t.Errorf("goroutine %d got seqs out of order: %v", g, s)
		}
		for _, n := range s {
			if all[n] {
				t.Fatalf("seq %d given twice", n)
			}
			all[n] = true
		}
	}
	recs, err := outboxes[0].Peek(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2*per {
		t.Fatalf("%d records stored, want %d", len(recs), 2*per)
	}
	for i := 1; i < len(recs); i++ {
		if recs[i].Seq <= recs[i-1].Seq {
			t.Fatalf("Peek not in seq order at %d: %d after %d", i, recs[i].Seq, recs[i-1].Seq)
		}
	}
}

// The agent sends, is killed before the ack is applied, starts again with a
// new instance and gets the ack (or sends again): nothing is lost, and what
// is sent again has the same numbers, so the endpoint dedupes it.
func TestCrashBetweenSendAndAck(t *testing.T) {
	ctx := context.Background()
	db := openDB(t)
	o := New(db, Options{})
	var written []uint64
	for i := range 5 {
		written = append(written, mustAppend(t, o, wire.KindEvent, ev(i)))
	}
	sent, err := o.Peek(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	// "Crash": o is abandoned; a new process opens the same file.
	o2 := New(db, Options{})
	again, err := o2.Peek(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(sent, again); d != "" {
		t.Fatalf("records after restart differ (-before +after):\n%s", d)
	}
	written = append(written, mustAppend(t, o2, wire.KindEvent, ev(5)))
	if err := o2.Ack(ctx, sent[len(sent)-1].Seq); err != nil {
		t.Fatal(err)
	}
	rest, err := New(db, Options{}).Peek(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []uint64
	for _, r := range append(sent, rest...) {
		got = append(got, r.Seq)
	}
	if d := cmp.Diff(written, got); d != "" {
		t.Fatalf("sent + left != written (-want +got):\n%s", d)
	}
}

func TestSeqSeededFromClock(t *testing.T) {
	now := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	o := New(openDB(t), Options{Now: func() time.Time { return now }})
	if seq := mustAppend(t, o, wire.KindEvent, ev(1)); seq != uint64(now.UnixMicro()) {
		t.Fatalf("first seq = %d, want %d", seq, now.UnixMicro())
	}
}
