package selfupdate

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/filehash"
	"github.com/berthhq/berth/internal/statedb"
	"github.com/berthhq/berth/telemetry"
)

// The test binary doubles as the agents the launcher runs: started with
// the child marker, it behaves as testModes says for the version folder it
// runs from.
const testModes = "SELFUPDATE_TEST_MODES"

func TestMain(m *testing.M) {
	if _, child := IsChild(); child && os.Getenv(testModes) != "" {
		os.Exit(fakeAgent())
	}
	os.Exit(m.Run())
}

// fakeAgent is one agent: healthy serves /healthz Healthy until its stdin
// closes; crash exits 3 at once; sigkill dies by a signal after 100ms;
// hang runs and never answers.
func fakeAgent() int {
	exe, _ := os.Executable()
	mode := ""
	for _, kv := range strings.Split(os.Getenv(testModes), ",") {
		v, m, _ := strings.Cut(kv, "=")
		if filepath.Base(filepath.Dir(exe)) == v {
			mode = m
		}
	}
	ctx, cancel := ChildContext(context.Background(), os.Stdin)
	defer cancel()
	switch mode {
	case "crash":
		fmt.Fprintln(os.Stderr, "panic: broken at start")
		return 3
	case "sigkill":
		time.Sleep(100 * time.Millisecond)
		p, _ := os.FindProcess(os.Getpid())
		_ = p.Kill()
		time.Sleep(time.Hour)
	case "healthy":
		ln, err := net.Listen("tcp", os.Getenv("SELFUPDATE_TEST_HEALTH"))
		if err != nil {
			return 1
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_ = json.NewEncoder(w).Encode(telemetry.Health{State: telemetry.Healthy})
		})}
		go func() { <-ctx.Done(); _ = srv.Close() }()
		_ = srv.Serve(ln)
		return 0
	}
	<-ctx.Done()
	return 0
}

// recorder keeps the launcher's events.
type recorder struct {
	mu     sync.Mutex
	events []string
}

func (r *recorder) Event(_ context.Context, kind, msg string, fields map[string]string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, kind+" "+fields["version"]+fields["reason"]+" "+msg)
	return nil
}

func (r *recorder) has(prefix string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.events {
		if strings.HasPrefix(e, prefix) {
			return true
		}
	}
	return false
}

// stageCopy puts a copy of the test binary under <stateDir>/agents/v and
// records it, as Stage does.
func stageCopy(t *testing.T, db *statedb.DB, stateDir, v string) {
	t.Helper()
	bin := filepath.Join(stateDir, AgentsDir, v, BinaryName("linux"))
	copyFile(t, os.Args[0], bin)
	sum, _, err := filehash.SHA256(bin)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mutate(context.Background(), db, func(s *State) error {
		if s.Staged == nil {
			s.Staged = map[string]Staged{}
		}
		s.Staged[v] = Staged{Binary: bin, SHA256: sum}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestLauncher runs the launcher on real processes: a good version passes
// its gate, and each way of failing blacklists the version with its reason
// and falls back to the last good one, which keeps running.
func TestLauncher(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes for seconds")
	}
	for _, tc := range []struct {
		name, mode, reason string
	}{
		{name: "good version passes its gate", mode: "healthy"},
		{name: "crash at start", mode: "crash", reason: ReasonCrashAtStart},
		{name: "killed three times in five minutes", mode: "sigkill", reason: ReasonCrashLoop},
		{name: "never healthy", mode: "hang", reason: ReasonNotHealthy},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testLauncher(t, tc.mode, tc.reason)
		})
	}
}

func testLauncher(t *testing.T, mode, reason string) {
	stateDir := t.TempDir()
	health := freePort(t)
	t.Setenv(testModes, "self=healthy,2.0=healthy,3.0="+mode)
	t.Setenv("SELFUPDATE_TEST_HEALTH", health)
	db, err := statedb.Open(filepath.Join(stateDir, "agent.db"))
	if err != nil {
		t.Fatal(err)
	}
	self := filepath.Join(t.TempDir(), "self", "berth-agent")
	copyFile(t, os.Args[0], self)
	// 2.0 proved good before; 3.0 is the new selection.
	stageCopy(t, db, stateDir, "2.0")
	stageCopy(t, db, stateDir, "3.0")
	if _, err := mutate(context.Background(), db, func(s *State) error {
		s.Launcher, s.Good, s.Selected = "1.0", "2.0", "3.0"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	ev := &recorder{}
	// Short for the version that hangs; long enough for the others to
	// show their own failure first.
	timeout := 15 * time.Second
	if mode == "hang" {
		timeout = 3 * time.Second
	}
	l, err := NewLauncher(LauncherOptions{DB: db, StateDir: stateDir, Self: self, Version: "1.0", HealthURL: HealthURL(health),
		HealthTimeout: timeout, Events: ev, Poll: 100 * time.Millisecond, StopGrace: 5 * time.Second, Stderr: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	want := "3.0"
	if reason != "" {
		want = "2.0"
	}
	waitFor(t, 20*time.Second, "the launcher to settle on "+want, func() bool {
		st, _ := Load(ctx, db)
		run, _, _ := LoadRunning(ctx, db)
		return st.Good == want && run.Version == want && !run.Probation && st.Selected == want
	})
	st, _ := Load(ctx, db)
	if reason == "" {
		if !ev.has("agent.update.succeeded") || len(st.Blacklist) != 0 {
			t.Errorf("a good version: want agent.update.succeeded and no blacklist; events %v, blacklist %v", ev.events, st.Blacklist)
		}
	} else {
		if f, bad := st.Blacklisted("3.0"); !bad || f.Reason != reason {
			t.Errorf("3.0 blacklisted %v (%+v); want reason %s", bad, f, reason)
		}
		if !ev.has("agent.blacklisted 3.0"+reason) || !ev.has("agent.fallback") {
			t.Errorf("events %v; want agent.blacklisted 3.0 %s and agent.fallback", ev.events, reason)
		}
		if got := Rejected(ctx, db); len(got) != 1 || got[0].Version != "3.0" || got[0].Reason != "blacklisted" || got[0].Kind != "agent" {
			t.Errorf("Rejected = %+v; want 3.0 blacklisted", got)
		}
	}
	run, _, _ := LoadRunning(ctx, db)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("launcher: %v", err)
	}
	if p, err := os.FindProcess(run.PID); err == nil && p.Signal(nil) == nil {
		t.Errorf("agent pid %d still runs after the launcher stopped", run.PID)
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
