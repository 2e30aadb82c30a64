package engine

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/berthhq/berth/internal/statedb"
)

// stubFlavor is a flavor whose daemon is <dir>/bin/engined; nothing else
// is used here.
type stubFlavor struct{ Flavor }

func (stubFlavor) Name() string { return "stub" }
func (stubFlavor) Daemon(dir, _ string) Daemon {
	return Daemon{Name: "engined", Path: filepath.Join(dir, "bin", "engined")}
}

// stubRunner reports a fixed state and counts starts and stops.
type stubRunner struct {
	Runner
	rs  RunState
	err error
}

func (r *stubRunner) State(context.Context) (RunState, error) { return r.rs, r.err }

func stubManager(t *testing.T, r Runner, installed ...string) (*Manager, *statedb.DB) {
	t.Helper()
	state := t.TempDir()
	db, err := statedb.Open(filepath.Join(state, "agent.db"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(Options{Flavor: stubFlavor{}, Runner: r, StateDir: state, DB: db, Managed: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range installed {
		exe := m.daemon(v).Path
		if err := os.MkdirAll(filepath.Dir(exe), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(exe, nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return m, db
}

func TestAdoptable(t *testing.T) {
	m, _ := stubManager(t, &stubRunner{}, "1.0")
	exe := func(v string) string { return filepath.Join(m.dir, v, "bin", "engined") }
	tests := []struct {
		name string
		rs   RunState
		want string
	}{
		{"nothing runs", RunState{}, ""},
		{"an installed version runs", RunState{Running: true, Exe: exe("1.0")}, "1.0"},
		{"a version that is not installed", RunState{Running: true, Exe: exe("2.0")}, ""},
		{"an engine outside the flavor's folder", RunState{Running: true, Exe: "/usr/bin/engined"}, ""},
		{"a folder that is no version", RunState{Running: true, Exe: filepath.Join(m.dir, "config", "bin", "engined")}, ""},
		{"no executable known", RunState{Running: true}, ""},
	}
	for _, tc := range tests {
		if got := m.adoptable(tc.rs); got != tc.want {
			t.Errorf("%s: adoptable = %q, want %q", tc.name, got, tc.want)
		}
	}
}

// With no record in agent.db (it was replaced after damage), the engine's
// state is rebuilt from what runs and recorded; with a record, what runs
// does not change it (issue 9, item 5).
func TestStateRebuiltFromWhatRuns(t *testing.T) {
	ctx := context.Background()
	r := &stubRunner{}
	m, db := stubManager(t, r, "1.0", "2.0")
	r.rs = RunState{Running: true, PID: 42, Exe: filepath.Join(m.dir, "2.0", "bin", "engined")}
	st, err := m.loadState(ctx)
	if err != nil || st.Active != "2.0" {
		t.Fatalf("loadState = %+v, %v; want 2.0 active", st, err)
	}
	var saved State
	if found, err := db.Get(ctx, stateBucket, "stub", &saved); err != nil || !found || saved.Active != "2.0" {
		t.Fatalf("recorded state = %v, %v, %+v; want 2.0 active", found, err, saved)
	}
	r.rs.Exe = filepath.Join(m.dir, "1.0", "bin", "engined")
	if st, err := m.loadState(ctx); err != nil || st.Active != "2.0" {
		t.Errorf("loadState with a record = %+v, %v; the record wins", st, err)
	}
}

func TestStateNotRebuilt(t *testing.T) {
	ctx := context.Background()
	for _, r := range []*stubRunner{{}, {err: errors.New("systemctl: not found")}} {
		m, db := stubManager(t, r, "1.0")
		if st, err := m.loadState(ctx); err != nil || st.Active != "" {
			t.Errorf("runner %+v: loadState = %+v, %v; want nothing active", r, st, err)
		}
		if found, _ := db.Get(ctx, stateBucket, "stub", &State{}); found {
			t.Errorf("runner %+v: a state was recorded", r)
		}
	}
}
