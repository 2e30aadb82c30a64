package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func goodBatch() Batch {
	return Batch{
		Agent: "0b1c2d3e-aaaa-bbbb-cccc-1234567890ab",
		Records: []Record{
			{Seq: 7, Kind: KindHeartbeat, Time: t0, Heartbeat: &Heartbeat{
				State:        "Degraded",
				Checks:       []Check{{Name: "engine.api", Status: "ok", Time: t0}, {Name: "disk", Status: "warn", Message: "12% free", Time: t0}},
				Engine:       Engine{Flavor: "docker", Version: "27.3.1", Active: true, Healthy: true},
				Cache:        map[string]float64{"hits": 10, "disk.bytes": 1.5e9},
				AgentVersion: "0.4.0",
				Labels:       map[string]string{"pool": "build", "berth.io/ring": "1"},
				OSBuild:      "Debian 13",
				Dropped:      Dropped{Heartbeats: 3},
			}},
			{Seq: 9, Kind: KindEvent, Time: t0.Add(time.Second), Event: &Event{
				Kind: "engine.upgrade.succeeded", Message: "27.3.1 → 28.0.0", Fields: map[string]string{"from": "27.3.1"},
			}},
		},
	}
}

func encode(t testing.TB, b Batch) []byte {
	raw, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestDecodeBatchRoundTrip(t *testing.T) {
	want := goodBatch()
	got, err := DecodeBatch(bytes.NewReader(encode(t, want)), 0)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("round trip (-want +got):\n%s", d)
	}
}

// mutate returns the JSON of goodBatch after f changed it.
func mutate(f func(b *Batch)) string {
	b := goodBatch()
	f(&b)
	raw, err := json.Marshal(b)
	if err != nil {
		panic(err)
	}
	return string(raw)
}

func TestDecodeBatchHostile(t *testing.T) {
	deep := strings.Repeat(`{"agent":"a","records":[`, 1) + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + "]}"
	nested := `{"agent":"a","records":[{"seq":1,"kind":"event","time":"2026-03-01T12:00:00Z","event":{"kind":"x","fields":{"a":{"b":{"c":1}}}}}]}`
	tests := []struct {
		name    string
		body    string
		max     int64
		wantErr error
		want    string // in the message
	}{
		{"empty body", "", 0, ErrInvalid, "empty body"},
		{"malformed", `{"agent":"a",`, 0, ErrInvalid, "JSON ends early"},
		{"syntax", `{"agent":"a" "records":[]}`, 0, ErrInvalid, "malformed JSON at byte"},
		{"not an object", `[1,2]`, 0, ErrInvalid, "batch: JSON array"},
		{"null", `null`, 0, ErrInvalid, "agent: missing"},
		{"trailing data", mutate(func(*Batch) {}) + `{}`, 0, ErrInvalid, "data after the batch"},
		{"unknown field", `{"agent":"a","records":[],"admin":true}`, 0, ErrInvalid, `unknown field "admin"`},
		{"unknown nested field", strings.Replace(mutate(func(*Batch) {}), `"seq":7`, `"seq":7,"sequence":8`, 1), 0, ErrInvalid, `unknown field "sequence"`},
		{"seq as string", strings.Replace(mutate(func(*Batch) {}), `"seq":7`, `"seq":"7"`, 1), 0, ErrInvalid, "records.seq: JSON string"},
		{"seq negative", strings.Replace(mutate(func(*Batch) {}), `"seq":7`, `"seq":-7`, 1), 0, ErrInvalid, "records.seq"},
		{"seq fraction", strings.Replace(mutate(func(*Batch) {}), `"seq":7`, `"seq":7.5`, 1), 0, ErrInvalid, "records.seq"},
		{"seq overflow", strings.Replace(mutate(func(*Batch) {}), `"seq":7`, `"seq":18446744073709551616`, 1), 0, ErrInvalid, "records.seq"},
		{"records not a list", `{"agent":"a","records":{}}`, 0, ErrInvalid, "records: JSON object"},
		{"time garbage", strings.Replace(mutate(func(*Batch) {}), `"time":"2026-03-01T12:00:00Z"`, `"time":"yesterday"`, 1), 0, ErrInvalid, "yesterday"},
		{"deep nesting", deep, 0, ErrInvalid, ""},
		{"nested object in fields", nested, 0, ErrInvalid, "fields"},
		{"oversized", mutate(func(*Batch) {}), 100, ErrTooLarge, "over 100 bytes"},
		{"oversized whitespace after", mutate(func(*Batch) {}) + strings.Repeat(" ", 5000), 1000, ErrTooLarge, ""},
		{"no records", `{"agent":"a","records":[]}`, 0, ErrInvalid, "records: no records"},
		{"agent missing", mutate(func(b *Batch) { b.Agent = "" }), 0, ErrInvalid, "agent: missing"},
		{"agent charset", mutate(func(b *Batch) { b.Agent = "../etc/passwd" }), 0, ErrInvalid, "agent:"},
		{"agent too long", mutate(func(b *Batch) { b.Agent = strings.Repeat("a", 129) }), 0, ErrInvalid, "agent: 129 bytes"},
		{"seq zero", mutate(func(b *Batch) { b.Records[0].Seq = 0 }), 0, ErrInvalid, "records[0].seq: missing or 0"},
		{"seq backwards", mutate(func(b *Batch) { b.Records[1].Seq = 3 }), 0, ErrInvalid, "records[1].seq: 3 is not above the previous record's 7"},
		{"seq duplicate", mutate(func(b *Batch) { b.Records[1].Seq = 7 }), 0, ErrInvalid, "records[1].seq: 7 repeats"},
		// Numbers no clock-seeded outbox can reach: they would wedge the
		// host, every honest number after them being below.
		{"seq 2^63-1", mutate(func(b *Batch) { b.Records[1].Seq = 1<<63 - 1 }), 0, ErrInvalid, "records[1].seq: 9223372036854775807 is above"},
		{"seq 2^64-1", mutate(func(b *Batch) { b.Records[1].Seq = 1<<64 - 1 }), 0, ErrInvalid, "records[1].seq: 18446744073709551615 is above"},
		{"seq past the skew", mutate(func(b *Batch) { b.Records[1].Seq = MaxSeq(time.Now()) + 1e9 }), 0, ErrInvalid, "clock-seeded numbering"},
		{"kind unknown", mutate(func(b *Batch) { b.Records[1].Kind = "metric" }), 0, ErrInvalid, `records[1].kind: unknown kind "metric"`},
		{"kind missing", mutate(func(b *Batch) { b.Records[1].Kind = "" }), 0, ErrInvalid, "records[1].kind: missing"},
		{"payload missing", mutate(func(b *Batch) { b.Records[1].Event = nil }), 0, ErrInvalid, "records[1].event: missing"},
		{"payload mismatched", mutate(func(b *Batch) { b.Records[1].Kind = KindHeartbeat }), 0, ErrInvalid, "records[1].heartbeat: missing"},
		{"both payloads", mutate(func(b *Batch) { b.Records[0].Event = &Event{Kind: "x"} }), 0, ErrInvalid, "records[0].event: set on a record"},
		{"time missing", mutate(func(b *Batch) { b.Records[0].Time = time.Time{} }), 0, ErrInvalid, "records[0].time: missing"},
		{"time 1970", mutate(func(b *Batch) { b.Records[0].Time = time.Unix(5, 0) }), 0, ErrInvalid, "records[0].time: 1970"},
		{"time far future", mutate(func(b *Batch) { b.Records[1].Time = time.Now().AddDate(1, 0, 0) }), 0, ErrInvalid, "records[1].time:"},
		{"state unknown", mutate(func(b *Batch) { b.Records[0].Heartbeat.State = "Fine" }), 0, ErrInvalid, "records[0].heartbeat.state"},
		{"check status", mutate(func(b *Batch) { b.Records[0].Heartbeat.Checks[1].Status = "meh" }), 0, ErrInvalid, "records[0].heartbeat.checks[1].status"},
		{"check name", mutate(func(b *Batch) { b.Records[0].Heartbeat.Checks[0].Name = "" }), 0, ErrInvalid, "records[0].heartbeat.checks[0].name: missing"},
		{"too many checks", mutate(func(b *Batch) {
			b.Records[0].Heartbeat.Checks = make([]Check, MaxChecks+1)
		}), 0, ErrInvalid, "records[0].heartbeat.checks: 65 checks"},
		{"too many labels", mutate(func(b *Batch) {
			for i := range MaxLabels + 1 {
				b.Records[0].Heartbeat.Labels[fmt.Sprint("k", i)] = "v"
			}
		}), 0, ErrInvalid, "records[0].heartbeat.labels: "},
		{"label key", mutate(func(b *Batch) { b.Records[0].Heartbeat.Labels["a b"] = "v" }), 0, ErrInvalid, `labels: key "a b"`},
		{"label value long", mutate(func(b *Batch) { b.Records[0].Heartbeat.Labels["pool"] = strings.Repeat("x", 257) }), 0, ErrInvalid, "labels[pool]: 257 bytes"},
		{"message long", mutate(func(b *Batch) { b.Records[1].Event.Message = strings.Repeat("x", MaxMessageLen+1) }), 0, ErrInvalid, "records[1].event.message"},
		{"event kind", mutate(func(b *Batch) { b.Records[1].Event.Kind = "" }), 0, ErrInvalid, "records[1].event.kind: missing"},
		{"too many records", mutate(func(b *Batch) {
			b.Records = nil
			for i := range MaxRecords + 1 {
				b.Records = append(b.Records, Record{Seq: uint64(i + 1), Kind: KindEvent, Time: t0, Event: &Event{Kind: "x"}})
			}
		}), 0, ErrInvalid, "records: 1001 records"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeBatch(strings.NewReader(tt.body), tt.max)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v; want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %q; want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestErrorShape(t *testing.T) {
	raw, _ := json.Marshal(Error{Code: CodeForbidden, Message: "agent a may not write for b"})
	if got, want := string(raw), `{"code":"forbidden","message":"agent a may not write for b"}`; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}

func FuzzDecodeBatch(f *testing.F) {
	f.Add(encode(f, goodBatch()))
	f.Add([]byte(`{"agent":"a","records":[{"seq":1,"kind":"event","time":"2026-03-01T12:00:00Z","event":{"kind":"x"}}]}`))
	f.Add([]byte(`{"agent":"a","records":[{"seq":2,"kind":"heartbeat","time":"2026-03-01T12:00:00Z","heartbeat":{"state":"Healthy","checks":null,"engine":{}}}]}`))
	f.Add([]byte(`{"agent":"a","records":[]}`))
	f.Add([]byte(`[[[[[[`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := DecodeBatch(bytes.NewReader(data), 64<<10)
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error of no known class: %v", err)
			}
			return
		}
		// What was accepted must survive a round trip and stay valid.
		again, err := DecodeBatch(bytes.NewReader(encode(t, b)), 0)
		if err != nil {
			t.Fatalf("re-decoding an accepted batch: %v", err)
		}
		if d := cmp.Diff(b, again, cmpopts.EquateEmpty()); d != "" {
			t.Fatalf("round trip (-first +second):\n%s", d)
		}
	})
}

func TestCheckAgentID(t *testing.T) {
	for _, c := range []struct {
		id   string
		want string // "" accepted
	}{
		{"vm-1", ""},
		{"0c1f7a2e-9d5b-4c3a-8e6f-1a2b3c4d5e6f", ""},
		{"host.example_1", ""},
		{"", "agent id missing"},
		{"a b", `agent id "a b" has ' ' at byte 1`},
		{"-vm", `agent id "-vm" has '-' at byte 0`},
		{"vm/1", `has '/' at byte 2`},
		{strings.Repeat("a", MaxIDLen+1), "over the limit"},
	} {
		err := CheckAgentID(c.id)
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("CheckAgentID(%q) = %v, want %q", c.id, err, c.want)
		}
		// The same rule as a batch's agent.
		batchErr := Batch{Agent: c.id}.Validate(time.Now())
		if accepted := batchErr == nil || !strings.Contains(batchErr.Error(), "agent:"); accepted != (err == nil) {
			t.Errorf("CheckAgentID(%q) = %v but a batch's agent check says %v", c.id, err, batchErr)
		}
	}
}

// TestMaxSeq: what an agent's outbox numbers (its clock in microseconds
// when it was made, one more per record) passes; what no such numbering
// reaches does not.
func TestMaxSeq(t *testing.T) {
	now := time.Date(2026, 12, 4, 15, 0, 0, 0, time.UTC)
	rec := func(seq uint64) Record {
		return Record{Seq: seq, Kind: KindEvent, Time: now, Event: &Event{Kind: "x"}}
	}
	for _, c := range []struct {
		name string
		seq  uint64
		ok   bool
	}{
		{"a new outbox's first", uint64(now.UnixMicro()), true},
		{"an outbox a year old, a million records on", uint64(now.AddDate(-1, 0, 0).UnixMicro()) + 1e6, true},
		{"a clock a week ahead", uint64(now.Add(MaxClockSkewAhead).UnixMicro()), true},
		{"past a week ahead", uint64(now.Add(MaxClockSkewAhead).UnixMicro()) + 1, false},
		{"2^62", 1 << 62, false},
		{"2^63-1", 1<<63 - 1, false},
		{"1", 1, true},
	} {
		err := rec(c.seq).Validate(now)
		if (err == nil) != c.ok {
			t.Errorf("%s: seq %d: Validate = %v, want ok %v", c.name, c.seq, err, c.ok)
		}
	}
	if got := MaxSeq(time.Unix(0, 0).Add(-30 * 24 * time.Hour)); got != 0 {
		t.Errorf("MaxSeq before 1970 = %d, want 0", got)
	}
}
