package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthhq/berth/agent/config"
	"github.com/berthhq/berth/control/wire"
	"github.com/berthhq/berth/internal/hostid"
	"github.com/berthhq/berth/internal/paths"
	"github.com/berthhq/berth/internal/statedb"
	"github.com/berthhq/berth/internal/statedb/statedbtest"
	"github.com/berthhq/berth/internal/units"
	"github.com/berthhq/berth/telemetry"
	"github.com/berthhq/berth/telemetry/report"
)

func TestStateStatus(t *testing.T) {
	at := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	r := statedb.Rebuild{At: at, Reason: "invalid database", Copy: "/s/agent.db.damaged-x"}
	unusable := errors.New("state database /s/agent.db is a directory, not a file: unusable; remove or rename it")
	tests := []struct {
		name          string
		probe         error
		rebuilt, kept bool
		want          telemetry.Status
		says          []string
	}{
		{"sound", nil, false, false, telemetry.OK, []string{"/s/agent.db: sound"}},
		{"replaced, copy kept", nil, true, true, telemetry.Warn, []string{"invalid database", "2026-12-04T10:00:00Z", "lost: reports queued", "/s/agent.db.damaged-x", "remove it"}},
		{"replaced, copy removed", nil, true, false, telemetry.OK, []string{"sound", "replaced at 2026-12-04T10:00:00Z", "invalid database"}},
		{"unusable", unusable, false, false, telemetry.Fail, []string{"remove or rename it"}},
		{"unusable wins over a rebuild", unusable, true, true, telemetry.Fail, []string{"is a directory"}},
	}
	for _, tc := range tests {
		got := stateStatus("/s/agent.db", tc.probe, r, tc.rebuilt, tc.kept)
		if got.Name != "state" || got.Status != tc.want {
			t.Errorf("%s: %s %s, want state %s", tc.name, got.Name, got.Status, tc.want)
		}
		for _, s := range tc.says {
			if !strings.Contains(got.Message, s) {
				t.Errorf("%s: message %q does not say %q", tc.name, got.Message, s)
			}
		}
	}
}

// fakeHost is what a damaged-state test starts the agent against: IMDS, a
// control endpoint that keeps the events it gets, and a state folder with
// a blob in the cache's disk tier.
type fakeHost struct {
	cfg  config.Config
	mu   sync.Mutex
	sent []wire.Event
	blob string // the cached blob's digest hex
}

const fakeVMID = "0a1b2c3d-0000-4000-8000-0000000000aa"

func newFakeHost(t *testing.T) *fakeHost {
	t.Helper()
	h := &fakeHost{}
	imds := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(fakeVMID)) }))
	t.Cleanup(imds.Close)
	t.Setenv(hostid.IMDSEnv, imds.URL)
	ctl := fakeControl(t, func(b wire.Batch) {
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, rec := range b.Records {
			if rec.Event != nil {
				h.sent = append(h.sent, *rec.Event)
			}
		}
	})

	cfg := config.Default()
	cfg.Agent.StateDir = t.TempDir()
	cfg.Control = report.Config{URL: ctl.URL, Auth: "none", ReportInterval: units.Duration(100 * time.Millisecond)}
	cfg.Engine.Endpoint = "unix://" + t.TempDir() + "/no-engine.sock"
	cfg.Cache.Enabled = true
	cfg.Cache.Listen = "127.0.0.1:0"
	cfg.Health.Listen = "127.0.0.1:0"
	h.cfg = cfg

	content := []byte("a layer the cache holds")
	sum := sha256.Sum256(content)
	h.blob = hex.EncodeToString(sum[:])
	p := filepath.Join(cfg.CacheDir(), "blobs", "sha256", h.blob[:2], h.blob)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, content, 0o644); err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *fakeHost) dbPath() string { return filepath.Join(h.cfg.StateDir(), paths.DBFile) }

func (h *fakeHost) event(kind string) (wire.Event, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range h.sent {
		if e.Kind == kind {
			return e, true
		}
	}
	return wire.Event{}, false
}

// ran is what one start of the daemon showed.
type ran struct {
	state   telemetry.Check
	agentID string
	blobs   int
	rebuilt *wire.Event // the state.rebuilt event control got, if any
}

// runDaemon starts the daemon (New, then Run) on h, waits until it has
// checked itself (and, when the state check warns of a rebuild, until
// control has the state.rebuilt event), and stops it, failing if it does
// not keep running until then.
func runDaemon(t *testing.T, h *fakeHost) ran {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, err := New(ctx, h.cfg, Options{})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	var r ran
	r.agentID = a.reporter.Agent()
	r.blobs = a.cache.Disk.Stats().Blobs
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case err := <-done:
			t.Fatalf("Run returned before it was stopped: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
		mon := a.monitor.Load()
		if mon == nil {
			continue
		}
		for _, c := range mon.Refresh(ctx).Checks {
			if c.Name == "state" {
				r.state = c
			}
		}
		e, ok := h.event("state.rebuilt")
		if ok {
			r.rebuilt = &e
		}
		if r.state.Name != "" && (ok || r.state.Status != telemetry.Warn) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out: state check %+v, state.rebuilt sent %v", r.state, ok)
		}
	}
	stopRun(t, cancel, done)
	return r
}

// The agent starts on every damaged agent.db (issue 9, item 5): the daemon
// runs, its identity comes back from IMDS and its cache index from the
// disk tier, the state check warns, control gets a state.rebuilt event
// saying what was lost, and the damaged copy is kept. The one-shot
// constructors start on it too.
func TestAgentStartsOnDamagedState(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the daemon once per damage")
	}
	for _, dm := range statedbtest.Damages() {
		t.Run(dm.Name, func(t *testing.T) {
			h := newFakeHost(t)
			statedbtest.Sample(t, h.dbPath())
			want := dm.Want(t, h.dbPath())
			dm.Do(t, h.dbPath())
			damaged, err := os.ReadFile(h.dbPath())
			if err != nil {
				t.Fatal(err)
			}
			r := runDaemon(t, h)
			copies, _ := filepath.Glob(h.dbPath() + ".damaged-*")
			replaced := r.state.Status == telemetry.Warn
			t.Logf("want %s; state check %s: %s", want, r.state.Status, r.state.Message)
			switch {
			case want == statedbtest.Replaced && !replaced:
				t.Fatalf("state check %s %q; want warn after the rebuild", r.state.Status, r.state.Message)
			case !replaced && r.state.Status != telemetry.OK:
				t.Fatalf("state check %s %q; want ok", r.state.Status, r.state.Message)
			case replaced && want == statedbtest.Repaired:
				t.Errorf("a torn meta page made agent.db be replaced")
			}
			if r.agentID != fakeVMID {
				t.Errorf("agent id %q; want it from IMDS (%s)", r.agentID, fakeVMID)
			}
			if r.blobs != 1 {
				t.Errorf("the cache index has %d blobs; want the 1 on disk", r.blobs)
			}
			if !replaced {
				if len(copies) != 0 {
					t.Errorf("copies %v of a file that was not replaced", copies)
				}
				return
			}
			if len(copies) != 1 || !strings.Contains(r.state.Message, copies[0]) {
				t.Fatalf("copies %v; the check says %q", copies, r.state.Message)
			}
			if kept, err := os.ReadFile(copies[0]); err != nil || string(kept) != string(damaged) {
				t.Errorf("the damaged copy is not the damaged file byte for byte (%v)", err)
			}
			if r.rebuilt == nil || r.rebuilt.Fields["copy"] != copies[0] || !strings.Contains(r.rebuilt.Fields["lost"], "reports queued") {
				t.Errorf("state.rebuilt event = %+v; want the copy and what was lost", r.rebuilt)
			}
			oneShots(t, h)
		})
	}
}

// oneShots damages agent.db again and opens it the way `engine status` and
// `cache stats` do: neither panics nor fails.
func oneShots(t *testing.T, h *fakeHost) {
	t.Helper()
	ctx := context.Background()
	for _, open := range []func() error{
		func() error {
			m, err := OpenEngine(ctx, h.cfg, Options{})
			if err == nil {
				_, err = m.Status(ctx)
			}
			return err
		},
		func() error {
			c, err := OpenCache(ctx, h.cfg, slog.New(slog.DiscardHandler))
			if err != nil {
				return err
			}
			defer c.Close()
			if n := c.Disk.Stats().Blobs; n != 1 {
				return errors.New("cache index without the blob on disk")
			}
			return nil
		},
	} {
		if err := os.WriteFile(h.dbPath(), []byte(strings.Repeat("damaged ", 2000)), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := open(); err != nil {
			t.Errorf("one-shot on a damaged agent.db: %v", err)
		}
	}
}

// What the agent does not replace: a directory in the place of agent.db,
// and a file it may not write. The daemon runs, the state check fails with
// the path and the fix, nothing is moved, and the one-shots give a clear
// error or work; once the path is fixed, the agent uses it again without a
// restart.
func TestAgentStartsOnUnusableState(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the daemon")
	}
	for _, tc := range []struct {
		name string
		make func(t *testing.T, path string)
		fix  func(t *testing.T, path string)
		says string
	}{
		{"a directory in its place", func(t *testing.T, path string) {
			if err := os.MkdirAll(filepath.Join(path, "x"), 0o700); err != nil {
				t.Fatal(err)
			}
		}, func(t *testing.T, path string) {
			if err := os.RemoveAll(path); err != nil {
				t.Fatal(err)
			}
		}, "is a directory, not a file"},
		{"a read-only file", func(t *testing.T, path string) {
			statedbtest.Sample(t, path)
			if out, err := exec.Command("chattr", "+i", path).CombinedOutput(); err != nil {
				t.Skipf("chattr +i: %v: %s (a read-only file needs it when the tests run as root)", err, out)
			}
			t.Cleanup(func() { _ = exec.Command("chattr", "-i", path).Run() })
		}, func(t *testing.T, path string) {
			if err := exec.Command("chattr", "-i", path).Run(); err != nil {
				t.Fatal(err)
			}
		}, "chattr -i"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newFakeHost(t)
			tc.make(t, h.dbPath())
			r := runDaemon(t, h)
			if r.state.Status != telemetry.Fail || !strings.Contains(r.state.Message, h.dbPath()) || !strings.Contains(r.state.Message, tc.says) {
				t.Errorf("state check %s %q; want fail naming %s and saying %q", r.state.Status, r.state.Message, h.dbPath(), tc.says)
			}
			if r.agentID != fakeVMID {
				t.Errorf("agent id %q", r.agentID)
			}
			if copies, _ := filepath.Glob(h.dbPath() + ".damaged-*"); len(copies) != 0 {
				t.Errorf("copies %v", copies)
			}
			ctx := context.Background()
			m, err := OpenEngine(ctx, h.cfg, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := m.Status(ctx); err != nil && (!errors.Is(err, statedb.ErrUnusable) || !strings.Contains(err.Error(), h.dbPath())) {
				t.Errorf("engine status: %v; want it to work or to name the path and the fix", err)
			}
			if c, err := OpenCache(ctx, h.cfg, slog.New(slog.DiscardHandler)); err != nil {
				t.Errorf("OpenCache: %v", err)
			} else {
				c.Close()
			}
			tc.fix(t, h.dbPath())
			if r := runDaemon(t, h); r.state.Status != telemetry.OK {
				t.Errorf("after the fix the state check is %s %q; want ok", r.state.Status, r.state.Message)
			}
		})
	}
}
