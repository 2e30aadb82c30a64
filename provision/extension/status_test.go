//go:build !windows

package extension

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthhq/berth/provision"
	"github.com/berthhq/berth/provision/extension/waagenttest"
)

var now = time.Date(2026, 12, 4, 18, 0, 0, 0, time.UTC)

// checkStatusFile asserts what the guest agent needs of every status file:
// valid JSON, an array, within 128 KB, parsed by parse_ext_status.
func checkStatusFile(t testing.TB, data []byte) waagenttest.Status {
	t.Helper()
	if len(data) > MaxStatusFileSize {
		t.Fatalf("status is %d bytes, over 128 KB", len(data))
	}
	st, err := waagenttest.ParseStatus(data)
	if err != nil {
		t.Fatalf("the guest agent would not parse it: %v\n%.300s", err, data)
	}
	return st
}

func TestEncodeStatusStaysWithinTheLimit(t *testing.T) {
	huge := strings.Repeat("é", 200<<10)
	s := NewStatus(OpEnable, StateError, CodeProvision, huge)
	for i := 0; i < 40; i++ {
		s.Substatus = append(s.Substatus, Substatus{Name: huge, Status: StateError, FormattedMessage: &Message{Lang: "en", Message: huge}})
	}
	st := checkStatusFile(t, EncodeStatus(s, now))
	if st.Status != "error" || !strings.HasSuffix(st.Message, "[TRUNCATED]") || len(st.Message) > 1024 {
		t.Errorf("top message not cut to 1 KB: %d bytes", len(st.Message))
	}
	if st.Clarification() != int(CodeProvision) {
		t.Errorf("the clarification was lost: %+v", st.Substatus[0])
	}
	if last := st.Substatus[len(st.Substatus)-1]; last.Name != "Truncated" {
		t.Errorf("dropped substatus entries are not said: %+v", last.Name)
	}
}

func TestEncodeStatusRepairsWhatTheAgentRefuses(t *testing.T) {
	s := Status{Status: "bogus", Substatus: []Substatus{{Name: "x", Status: "weird"}}}
	s.FormattedMessage = &Message{Lang: "en", Message: "bad \xff utf8"}
	st := checkStatusFile(t, EncodeStatus(s, now))
	if st.Status != "error" {
		t.Errorf("status = %q", st.Status)
	}
}

func TestWriteStatusIsAtomic(t *testing.T) {
	dir := t.TempDir()
	if err := WriteStatus(dir, 5, NewStatus(OpEnable, StateSuccess, 0, "ok"), now); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != "5.status" {
		t.Errorf("status folder holds %v, want only 5.status", entries)
	}
	data, _ := os.ReadFile(filepath.Join(dir, "5.status"))
	checkStatusFile(t, data)
}

func TestObserverReportsStepsThenTheResult(t *testing.T) {
	stateDir, statusDir, eventsDir, hb := t.TempDir(), t.TempDir(), t.TempDir(), filepath.Join(t.TempDir(), "heartbeat.log")
	write := func(seq int) {
		if _, err := writeJSON(filepath.Join(stateDir, StateFile), HandlerState{StatusFolder: statusDir, EventsFolder: eventsDir, HeartbeatFile: hb, Sequence: seq, Version: "1.0.0"}, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if o, loop, err := Attach(t.Context(), stateDir, nil); o != nil || loop != nil || err != nil {
		t.Fatalf("Attach without extension.json = %v, %v", o, err)
	}
	write(2)
	o, loop, err := Attach(t.Context(), stateDir, nil)
	if err != nil || o == nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	o.Step(ctx, provision.StepResult{Name: "engine", State: provision.Running})
	st, _ := waagenttest.ReadStatus(statusDir, 2)
	if st.Status != "transitioning" || len(st.Substatus) != 1 || st.Substatus[0].Name != "engine" {
		t.Errorf("after a step: %+v", st)
	}
	o.Step(ctx, provision.StepResult{Name: "engine", State: provision.Done, Seconds: 2})
	o.Finished(ctx, provision.Result{Ready: true, Steps: []provision.StepResult{{Name: "engine", State: provision.Done}, {Name: "health", State: provision.Done}}})
	st, _ = waagenttest.ReadStatus(statusDir, 2)
	if st.Status != "success" || len(st.Substatus) != 2 || st.Substatus[1].Status != "success" {
		t.Errorf("after the end: %+v", st)
	}
	// The daemon's next run of the plan does not flip the status back.
	o.Step(ctx, provision.StepResult{Name: "engine", State: provision.Running})
	if st, _ = waagenttest.ReadStatus(statusDir, 2); st.Status != "success" {
		t.Errorf("a later run flipped the status to %s", st.Status)
	}
	// A new sequence number moves the status without a restart.
	write(3)
	o.Finished(ctx, provision.Result{Failed: "prewarm", Steps: []provision.StepResult{{Name: "prewarm", State: provision.Failed, Error: "pull failed"}}})
	if st, _ = waagenttest.ReadStatus(statusDir, 3); st.Status != "error" || st.Clarification() != int(CodeProvision) || !strings.Contains(st.Message, "prewarm: pull failed") {
		t.Errorf("failed run: %+v", st)
	}
	events, err := waagenttest.Events(eventsDir)
	// engine running, engine done, provision ready, provision failed: the
	// later run's steps that did not fail are not events.
	if err != nil || len(events) != 4 {
		t.Errorf("events = %d, %v; want 4", len(events), err)
	}
	levels := map[string]int{}
	for _, e := range events {
		for _, k := range []string{"Version", "Timestamp", "TaskName", "EventLevel", "Message", "EventPid", "EventTid", "OperationId"} {
			if _, ok := e[k].(string); !ok {
				t.Errorf("event lacks %s: %v", k, e)
			}
		}
		levels[e["EventLevel"].(string)]++
	}
	if levels[LevelError] == 0 || levels[LevelInformational] == 0 {
		t.Errorf("event levels = %v", levels)
	}
	ctx2, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { loop(ctx2); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if status, fresh, err := waagenttest.Heartbeat(hb, time.Now()); err == nil && status == "ready" && fresh {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no heartbeat written")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
}

func TestEventsStayWithinTheAgentsLimits(t *testing.T) {
	dir := t.TempDir()
	e := Event{Version: "1", TaskName: "t", EventLevel: LevelError, Message: strings.Repeat("\x00", 10<<10)}
	if data := EncodeEvent(e); len(data) > maxEventSize {
		t.Errorf("event is %d bytes, over 6 KB", len(data))
	}
	var list []Event
	if err := json.Unmarshal(EncodeEvent(e), &list); err != nil || len(list) != 1 || len(list[0].Message) > maxEventMessage {
		t.Errorf("event: %v, %d", err, len(list[0].Message))
	}
	for i := 0; i < maxPendingEvents; i++ {
		if err := WriteEvent(dir, e, now); err != nil {
			t.Fatal(err)
		}
	}
	if err := WriteEvent(dir, e, now); err != errEventsFull {
		t.Errorf("event %d written: %v; the agent would drop events over its limit", maxPendingEvents+1, err)
	}
}
