package selfupdate

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthhq/berth/control/wire"
	"github.com/berthhq/berth/internal/statedb"
)

func TestChoose(t *testing.T) {
	staged := map[string]Staged{"2": {}, "3": {}}
	bad := map[string]Failure{"3": {Reason: ReasonCrashAtStart}}
	for _, tc := range []struct {
		name string
		s    State
		want string
	}{
		{name: "nothing recorded: the launcher itself", s: State{}, want: "1"},
		{name: "the selection", s: State{Selected: "3", Good: "2", Staged: staged}, want: "3"},
		{name: "blacklisted selection: the good one", s: State{Selected: "3", Good: "2", Staged: staged, Blacklist: bad}, want: "2"},
		{name: "unstaged selection: the good one", s: State{Selected: "4", Good: "2", Staged: staged}, want: "2"},
		{name: "good one blacklisted too: the launcher", s: State{Selected: "3", Good: "3", Staged: staged, Blacklist: bad}, want: "1"},
		{name: "the launcher selected", s: State{Selected: "1", Good: "2", Staged: staged}, want: "1"},
		{name: "hostile names are never staged", s: State{Selected: "../../bin/sh", Good: "2", Staged: staged}, want: "2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := choose(tc.s, "1"); got != tc.want {
				t.Errorf("choose = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestHealthURL(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:8765": "http://127.0.0.1:8765/healthz",
		"0.0.0.0:8765":   "http://127.0.0.1:8765/healthz",
		":8765":          "http://127.0.0.1:8765/healthz",
		"[::]:8765":      "http://[::1]:8765/healthz",
		"10.0.0.4:9000":  "http://10.0.0.4:9000/healthz",
	} {
		if got := HealthURL(in); got != want {
			t.Errorf("HealthURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// Rejected is what the heartbeat carries: newest first, within the wire's
// limits, whatever the blacklist holds.
func TestRejected(t *testing.T) {
	ctx := context.Background()
	db, err := statedb.Open(filepath.Join(t.TempDir(), "agent.db"))
	if err != nil {
		t.Fatal(err)
	}
	if got := Rejected(ctx, db); len(got) != 0 {
		t.Fatalf("no state: Rejected = %v", got)
	}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := mutate(ctx, db, func(s *State) error {
		s.Blacklist = map[string]Failure{}
		for i := range 40 {
			s.Blacklist[fmt.Sprintf("1.%d", i)] = Failure{Reason: ReasonNotHealthy, Message: strings.Repeat("x", 10000), At: base.Add(time.Duration(i) * time.Minute)}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	got := Rejected(ctx, db)
	if len(got) != wire.MaxRejected || got[0].Version != "1.39" || got[len(got)-1].Version != "1.24" {
		t.Fatalf("Rejected: %d, first %s, last %s; want %d newest first", len(got), got[0].Version, got[len(got)-1].Version, wire.MaxRejected)
	}
	for _, r := range got {
		if r.Kind != wire.KindAgent || r.Reason != wire.RejectedBlacklisted || len(r.Message) > wire.MaxMessageLen || !strings.HasPrefix(r.Message, ReasonNotHealthy+": ") {
			t.Fatalf("Rejected entry %+v does not fit the wire", r)
		}
	}
}

// A launcher of another version (an MSI or .deb upgrade) starts over from
// itself, and says so; the blacklist stays.
func TestAdoptNewLauncher(t *testing.T) {
	ctx := context.Background()
	stateDir := t.TempDir()
	db, err := statedb.Open(filepath.Join(stateDir, "agent.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mutate(ctx, db, func(s *State) error {
		*s = State{Launcher: "1", Selected: "3", Good: "2", Blacklist: map[string]Failure{"4": {}}}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	ev := &recorder{}
	l, err := NewLauncher(LauncherOptions{DB: db, StateDir: stateDir, Self: "/bin/true", Version: "5", Events: ev})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.adopt(ctx); err != nil {
		t.Fatal(err)
	}
	st, _ := Load(ctx, db)
	if st.Launcher != "5" || st.Selected != "5" || st.Good != "5" || len(st.Blacklist) != 1 || !ev.has("agent.launcher.changed") {
		t.Fatalf("after a launcher upgrade: %+v, events %v", st, ev.events)
	}
}
