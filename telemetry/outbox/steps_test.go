package outbox

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/berthhq/berth/control/wire"
	"github.com/google/go-cmp/cmp"
)

func TestNewRecord(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.FixedZone("CEST", 2*3600))
	h, e := hb(1), ev(1)
	tests := []struct {
		name    string
		kind    wire.Kind
		payload any
		want    wire.Record
		wantTag byte
		wantErr bool
	}{
		{"heartbeat", wire.KindHeartbeat, h, wire.Record{Seq: 1, Kind: wire.KindHeartbeat, Time: now.UTC(), Heartbeat: &h}, tagHeartbeat, false},
		{"heartbeat pointer", wire.KindHeartbeat, &h, wire.Record{Seq: 1, Kind: wire.KindHeartbeat, Time: now.UTC(), Heartbeat: &h}, tagHeartbeat, false},
		{"event", wire.KindEvent, e, wire.Record{Seq: 1, Kind: wire.KindEvent, Time: now.UTC(), Event: &e}, tagEvent, false},
		{"event pointer", wire.KindEvent, &e, wire.Record{Seq: 1, Kind: wire.KindEvent, Time: now.UTC(), Event: &e}, tagEvent, false},
		{"wrong payload type", wire.KindEvent, "hello", wire.Record{}, 0, true},
		{"kind mismatch", wire.KindHeartbeat, e, wire.Record{}, 0, true},
		{"invalid event", wire.KindEvent, wire.Event{}, wire.Record{}, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, tag, err := newRecord(tc.kind, tc.payload, now)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error: %v", err, tc.wantErr)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("record (-want +got):\n%s", d)
			}
			if tag != tc.wantTag {
				t.Errorf("tag = %q, want %q", tag, tc.wantTag)
			}
		})
	}
}

func TestNextSeq(t *testing.T) {
	tests := []struct {
		name   string
		stored uint64
		now    time.Time
		want   uint64
	}{
		{"stored counter wins", 42, time.Unix(1_800_000_000, 0), 42},
		{"new outbox takes the clock", 0, time.UnixMicro(1_777_593_600_000_001), 1_777_593_600_000_001},
		{"clock at 1970 still starts at 1", 0, time.Unix(0, 0), 1},
		{"clock before 1970 starts at 1", 0, time.Unix(-100, 0), 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := nextSeq(tc.stored, tc.now); got != tc.want {
				t.Errorf("nextSeq(%d, %v) = %d, want %d", tc.stored, tc.now, got, tc.want)
			}
		})
	}
}

func TestMakeRoom(t *testing.T) {
	opts := Options{MaxRecords: 4, MaxBytes: 100}
	tests := []struct {
		name       string
		held       usage
		size       int64
		heartbeats []int64 // sizes, oldest first
		wantDrop   int
		wantLeft   usage
		wantErr    error
	}{
		{"fits", usage{2, 50}, 10, []int64{20}, 0, usage{2, 50}, nil},
		{"fits exactly", usage{3, 90}, 10, []int64{20}, 0, usage{3, 90}, nil},
		{"record bound drops one", usage{4, 40}, 10, []int64{10, 10}, 1, usage{3, 30}, nil},
		{"byte bound drops until it fits", usage{3, 95}, 30, []int64{10, 20, 30}, 2, usage{1, 65}, nil},
		{"only events: full", usage{4, 40}, 10, nil, 0, usage{4, 40}, ErrFull},
		{"dropping every heartbeat is not enough", usage{4, 90}, 40, []int64{10, 10}, 0, usage{2, 70}, ErrFull},
		{"larger than the outbox", usage{0, 0}, 101, []int64{10}, 0, usage{0, 0}, ErrTooLarge},
		{"as large as the outbox, empty", usage{0, 0}, 100, nil, 0, usage{0, 0}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			drop, left, err := makeRoom(opts, tc.held, tc.size, slices.Values(tc.heartbeats))
			if !errors.Is(err, tc.wantErr) || (err == nil) != (tc.wantErr == nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if drop != tc.wantDrop {
				t.Errorf("drop = %d, want %d", drop, tc.wantDrop)
			}
			if left != tc.wantLeft {
				t.Errorf("left = %+v, want %+v", left, tc.wantLeft)
			}
		})
	}
}

func TestDroppedKey(t *testing.T) {
	tests := []struct {
		tag  byte
		want string
	}{
		{tagHeartbeat, string(keyDroppedHB)},
		{tagEvent, string(keyDroppedEv)},
	}
	for _, tc := range tests {
		if got := string(droppedKey(tc.tag)); got != tc.want {
			t.Errorf("droppedKey(%q) = %q, want %q", tc.tag, got, tc.want)
		}
	}
}
