//go:build linux

package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berthhq/berth/control/auth"
	"github.com/berthhq/berth/control/rollout"
	"github.com/berthhq/berth/control/server"
	"github.com/berthhq/berth/control/store"
	"github.com/berthhq/berth/control/wire"
	"github.com/berthhq/berth/internal/azstore"
	"github.com/berthhq/berth/internal/statedb"
	"github.com/berthhq/berth/internal/testenv"
	"github.com/berthhq/berth/internal/testenv/dockerd"
	"github.com/berthhq/berth/internal/testenv/secretlog"
	"github.com/berthhq/berth/packaging/tufrepo"
	"github.com/berthhq/berth/provision/selfupdate"
)

// Versions of the self-update tests: su1 is the installed launcher, su2
// and su5 work, su3 crashes at start, su4 never turns Healthy.
const (
	su1 = "9.1.0"
	su2 = "9.2.0"
	su3 = "9.3.0"
	su4 = "9.4.0"
	su5 = "9.5.0"
)

// suHealthTimeout is update.healthTimeout in these tests.
const suHealthTimeout = 20 * time.Second

// suRig is one self-update test's host: berth-agent binaries built with
// their own versions, a signed release repository published to a folder,
// a real dockerd the agent watches, and a real control server on SQLite
// that the agents report to.
type suRig struct {
	t        testing.TB
	work     string
	bins     map[string]string // version → binary
	repo     string
	pub      string
	config   string
	stateDir string
	hostID   string
	store    *store.Store
	svc      *rollout.Service

	mu       sync.Mutex
	launcher *exec.Cmd
	exited   chan struct{}
	logs     *lockedBuffer
}

func newSURig(t testing.TB) *suRig {
	t.Helper()
	if testing.Short() {
		t.Skip("builds berth-agent, starts dockerd")
	}
	host := dockerd.StartWatched(t)
	r := &suRig{t: t, work: t.TempDir(), bins: map[string]string{}, stateDir: host.Dir, hostID: "su-host"}
	r.repo = filepath.Join(r.work, "repo")
	r.pub = filepath.Join(r.work, "published")
	if err := tufrepo.Init(r.repo); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := store.Open(ctx, "sqlite://"+filepath.Join(r.work, "control.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	a, err := auth.New(ctx, auth.Options{Methods: []auth.Method{auth.MethodToken}, Tokens: st})
	if err != nil {
		t.Fatal(err)
	}
	// The rollout service answers the desired state, so that control can
	// move the agent too (TestSelfUpdateFollowsControl).
	r.svc = rollout.New(rollout.Options{Store: st})
	svcCtx, stopSvc := context.WithCancel(ctx)
	svcDone := make(chan struct{})
	go func() { r.svc.Run(svcCtx); close(svcDone) }()
	hs := httptest.NewServer(server.New(server.Options{Store: st, Auth: a, Rollouts: r.svc}))
	t.Cleanup(func() { hs.CloseClientConnections(); hs.Close(); stopSvc(); <-svcDone })
	r.store = st
	r.writeConfig(hs.URL, host.Endpoint, nil)
	secretlog.For(t).Logs(filepath.Join(host.Dir, "logs"))
	secretlog.For(t).Output("berth-agent run's output", func() string { return string(r.logs.Bytes()) })
	t.Cleanup(r.stopLauncher)
	return r
}

// build builds berth-agent (or, with a fake mode, the broken stand-in)
// stamped with version v.
func (r *suRig) build(v, fake string) string {
	r.t.Helper()
	out := filepath.Join(r.work, "bin", v, "berth-agent")
	pkg, ldflags := ".", "-X github.com/berthhq/berth/internal/buildinfo.Version="+v
	if fake != "" {
		pkg, ldflags = "./testdata/fakeagent", "-X main.mode="+fake
	}
	cmd := exec.Command(goTool(r.t), "build", "-o", out, "-ldflags", ldflags, pkg)
	if b, err := cmd.CombinedOutput(); err != nil {
		r.t.Fatalf("build %s: %v\n%s", v, err, b)
	}
	r.bins[v] = out
	return out
}

func goTool(t testing.TB) string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return testenv.NeedBinary(t, "/usr/local/go/bin/go")
}

// publish packages version v's binary (berth-agent at the root of a
// tar.gz), signs it into the repository and publishes the repository.
func (r *suRig) publish(v string) {
	r.t.Helper()
	bin, err := os.ReadFile(r.bins[v])
	if err != nil {
		r.t.Fatal(err)
	}
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	if err := tw.WriteHeader(&tar.Header{Name: "berth-agent", Mode: 0o755, Size: int64(len(bin)), Typeflag: tar.TypeReg}); err != nil {
		r.t.Fatal(err)
	}
	if _, err := tw.Write(bin); err != nil {
		r.t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		r.t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		r.t.Fatal(err)
	}
	file := filepath.Join(r.work, fmt.Sprintf("berth-agent-%s-linux-amd64.tar.gz", v))
	if err := os.WriteFile(file, buf.Bytes(), 0o644); err != nil {
		r.t.Fatal(err)
	}
	if _, err := tufrepo.Add(r.repo, tufrepo.Package{Kind: "agent", Version: v, OS: "linux", Arch: "amd64"}, file); err != nil {
		r.t.Fatal(err)
	}
	if err := tufrepo.Publish(context.Background(), r.repo, r.pub, azstore.Credential{}); err != nil {
		r.t.Fatal(err)
	}
}

// startLauncher runs the installed binary (su1) as the service does:
// `berth-agent run`, no child marker.
func (r *suRig) startLauncher() {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	cmd := exec.Command(r.bins[su1], "run", "--config", r.config)
	cmd.Env = suEnv()
	if r.logs == nil {
		r.logs = &lockedBuffer{}
	}
	cmd.Stdout, cmd.Stderr = r.logs, r.logs
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	r.launcher, r.exited = cmd, done
}

// suEnv is the environment of a berth-agent the test runs: never a child
// of a launcher, logs at info.
func suEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "BERTH_AGENT_LAUNCHER=") && !strings.HasPrefix(kv, asAgent+"=") {
			env = append(env, kv)
		}
	}
	return append(env, "BERTH_LOG_LEVEL=info")
}

// stopLauncher stops the launcher as the service manager does (SIGTERM)
// and checks that it stops its agent and exits within the grace.
func (r *suRig) stopLauncher() {
	r.mu.Lock()
	cmd, done := r.launcher, r.exited
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	childPID := 0
	if v := r.versions(); v.Agent != nil {
		childPID = v.Agent.PID
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(40 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		r.t.Errorf("the launcher did not stop within 40s of SIGTERM")
	}
	// No agent outlives its launcher.
	for deadline := time.Now().Add(5 * time.Second); childPID > 0 && syscall.Kill(childPID, 0) == nil; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			r.t.Errorf("agent pid %d outlived its launcher", childPID)
			break
		}
	}
	dockerd.KillUnder(filepath.Join(r.work, "bin"), syscall.SIGKILL, 5*time.Second)
	r.mu.Lock()
	r.launcher = nil
	r.mu.Unlock()
}

// agent runs a berth-agent command with the installed binary.
func (r *suRig) agent(args ...string) (int, string, string) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, r.bins[su1], append(args, "--config", r.config)...)
	cmd.Env = suEnv()
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		r.t.Fatalf("berth-agent %v: %v", args, err)
	}
	return code, stdout.String(), stderr.String()
}

// versions is `berth-agent version --output json`.
func (r *suRig) versions() versionInfo {
	r.t.Helper()
	code, out, errOut := r.agent("version", "--output", "json")
	if code != 0 {
		r.t.Fatalf("version: exit %d: %s", code, errOut)
	}
	var v versionInfo
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		r.t.Fatalf("version output %q: %v", out, err)
	}
	return v
}

// waitReporting waits until control has a Healthy heartbeat of agent
// version v sent after since, and returns when it was sent.
func (r *suRig) waitReporting(v string, since time.Time, within time.Duration) time.Time {
	r.t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if at, ok := r.reporting(v, since); ok {
			return at
		}
		time.Sleep(200 * time.Millisecond)
	}
	h, _ := r.store.Host(context.Background(), r.hostID, time.Now(), 0)
	r.t.Fatalf("control did not see agent %s Healthy within %s; it has %s %s (last heartbeat %s)\nlogs:\n%s",
		v, within, h.AgentVersion, h.ReportedState, h.LastHeartbeat, testenv.Tail(r.logs.Bytes(), 8<<10))
	return time.Time{}
}

// reporting says whether control's last heartbeat of the host is agent
// version v's, Healthy, and sent after since. LastHeartbeat, not
// LastReport: events (a fallback's agent.started) move LastReport without
// a new heartbeat.
func (r *suRig) reporting(v string, since time.Time) (time.Time, bool) {
	h, err := r.store.Host(context.Background(), r.hostID, time.Now(), 0)
	ok := err == nil && h.AgentVersion == v && h.ReportedState == "Healthy" && h.LastHeartbeat.After(since)
	return h.LastHeartbeat, ok
}

// events are the host's events at control, newest first.
func (r *suRig) events() []wire.EventRecord {
	r.t.Helper()
	h, err := r.store.Host(context.Background(), r.hostID, time.Now(), 200)
	if err != nil {
		r.t.Fatal(err)
	}
	return h.Events
}

// findEvent returns the newest event of kind whose fields have want.
func (r *suRig) findEvent(kind string, want map[string]string) (wire.EventRecord, bool) {
	for _, e := range r.events() {
		if e.Kind != kind {
			continue
		}
		ok := true
		for k, v := range want {
			ok = ok && e.Fields[k] == v
		}
		if ok {
			return e, true
		}
	}
	return wire.EventRecord{}, false
}

// waitEvent waits until control has the event.
func (r *suRig) waitEvent(kind string, want map[string]string) wire.EventRecord {
	r.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if e, ok := r.findEvent(kind, want); ok {
			return e
		}
		time.Sleep(200 * time.Millisecond)
	}
	r.t.Fatalf("control has no %s event with %v; events: %v", kind, want, r.eventKinds())
	return wire.EventRecord{}
}

func (r *suRig) eventKinds() []string {
	var out []string
	for _, e := range r.events() {
		out = append(out, e.Kind+fmt.Sprint(e.Fields))
	}
	return out
}

// TestSelfUpdateEndToEnd is issue 11's self-update on one real host: the
// installed su1 launcher moves to su2 by `self-update`, which reports
// Healthy at control; a su3 that crashes at start and a su4 that never
// turns Healthy are each blacklisted, with events saying why, and the
// host is back on su2 within update.healthTimeout.
func TestSelfUpdateEndToEnd(t *testing.T) {
	r := newSURig(t)
	for v, fake := range map[string]string{su1: "", su2: "", su3: "crash", su4: "hang"} {
		r.build(v, fake)
	}
	r.publish(su1)
	r.publish(su2)
	r.startLauncher()
	r.waitReporting(su1, time.Time{}, 60*time.Second)
	// One launcher per state folder.
	if code, _, errOut := r.agent("run"); code != 1 || !strings.Contains(errOut, "another berth-agent launcher runs") {
		t.Fatalf("a second launcher: exit %d, %s", code, errOut)
	}

	// su1 → su2.
	start := time.Now()
	code, out, errOut := r.agent("self-update")
	if code != 0 || !strings.Contains(out, "agent "+su2+": Healthy and reporting") {
		t.Fatalf("self-update to %s: exit %d\n%s\n%s", su2, code, out, errOut)
	}
	r.waitReporting(su2, start, 30*time.Second)
	t.Logf("%s → %s: Healthy at control %s after self-update started", su1, su2, time.Since(start).Round(time.Millisecond))
	r.waitEvent("agent.update.succeeded", map[string]string{"from": su1, "to": su2})
	if v := r.versions(); v.Launcher != su1 || v.Agent == nil || v.Agent.Version != su2 || v.Agent.Probation {
		t.Fatalf("version: want launcher %s running agent %s (good), got %+v %+v", su1, su2, v, v.Agent)
	}

	// su3 crashes at start: blacklisted at once, the host back on su2.
	r.publish(su3)
	r.failedUpdate(su3, "crash-at-start", "exit code 3")
	// su4 never turns Healthy: blacklisted after the health timeout.
	r.publish(su4)
	r.failedUpdate(su4, "not-healthy", "not Healthy and reporting within update.healthTimeout")

	// The newest is blacklisted: --check says so and changes nothing.
	code, out, _ = r.agent("self-update", "--check")
	if code != 0 || !strings.Contains(out, "agent "+su4+", the newest, is blacklisted here (not-healthy") {
		t.Fatalf("self-update --check with the newest blacklisted: exit %d: %s", code, out)
	}
	code, out, _ = r.agent("self-update", "--check", "--output", "json")
	if code != 0 || !strings.Contains(out, `"action": "blacklisted"`) {
		t.Fatalf("self-update --check --output json: exit %d: %s", code, out)
	}

	// Downgrades go the same way: to the launcher's own version (nothing
	// to download), and back up to the still-staged su2.
	for _, v := range []string{su1, su2} {
		start := time.Now()
		code, out, errOut = r.agent("self-update", "--version", v, "--output", "json")
		if code != 0 || !strings.Contains(out, `"outcome": "healthy"`) {
			t.Fatalf("self-update --version %s: exit %d\n%s\n%s", v, code, out, errOut)
		}
		r.waitReporting(v, start, 30*time.Second)
	}
}

// failedUpdate runs `self-update` to a broken version v and checks that
// it fails saying why, that v is blacklisted with reason, and that the
// host is back on su2, Healthy at control, within update.healthTimeout
// (plus the launcher's switch).
func (r *suRig) failedUpdate(v, reason, why string) {
	r.t.Helper()
	start := time.Now()
	code, out, errOut := r.agent("self-update")
	if code != 1 || !strings.Contains(errOut, "agent "+v+" was blacklisted ("+reason+")") || !strings.Contains(errOut, why) {
		r.t.Fatalf("self-update to broken %s: want exit 1 saying it was blacklisted (%s): exit %d\n%s\n%s", v, reason, code, out, errOut)
	}
	// A heartbeat sent after the command returned: the fallback's, not
	// one of su2's from before the switch.
	back := r.waitReporting(su2, time.Now(), suHealthTimeout+30*time.Second)
	if took := back.Sub(start); took > suHealthTimeout+15*time.Second {
		r.t.Errorf("back on %s %s after the update to %s started; want within the health timeout %s (+15s)", su2, took, v, suHealthTimeout)
	}
	r.t.Logf("%s (%s): blacklisted, back on %s and Healthy at control %s after self-update started", v, reason, su2, back.Sub(start).Round(time.Millisecond))
	bl := r.waitEvent("agent.blacklisted", map[string]string{"version": v, "reason": reason, "next": su2})
	if !strings.Contains(bl.Message, why) {
		r.t.Errorf("agent.blacklisted event %q does not say %q", bl.Message, why)
	}
	r.waitEvent("agent.fallback", map[string]string{"from": v, "to": su2, "reason": reason})
	if ver := r.versions(); ver.Agent == nil || ver.Agent.Version != su2 || ver.Agent.Probation {
		r.t.Fatalf("version after %s failed: want %s running (good), got %+v", v, su2, ver.Agent)
	}
}

// lockedBuffer is a bytes.Buffer for several writers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Bytes() []byte {
	if l == nil {
		return nil // never started
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.b.Bytes())
}

// TestSelfUpdateSurvivesSIGKILL kills, at a random moment of an update
// between su2 and su5, the launcher (the service manager starts it again),
// the running agent, or the process staging the new version. Each round
// must end with the host on a good version — not blacklisted, past its
// health gate — reporting Healthy at control. BERTH_SOAK_ROUNDS sets the
// rounds (`make soak`: SELFUPDATE_SOAK_ROUNDS).
func TestSelfUpdateSurvivesSIGKILL(t *testing.T) {
	r := newSURig(t)
	for _, v := range []string{su1, su2, su5} {
		r.build(v, "")
	}
	r.publish(su2)
	r.publish(su5)
	r.startLauncher()
	r.waitReporting(su1, time.Time{}, 60*time.Second)
	rounds := testenv.SoakRounds(t, 3)
	tally := map[string]int{}
	target := su2
	for i := range rounds {
		point := r.killRound(target)
		tally[point]++
		v := r.settled(2*suHealthTimeout + time.Minute)
		t.Logf("round %d: killed %s; settled on %s", i+1, point, v)
		if target == su2 {
			target = su5
		} else {
			target = su2
		}
	}
	t.Logf("%d kills, every round settled on a good version reporting Healthy: %v", rounds, tally)
}

// killRound starts `self-update --version target` and SIGKILLs one of the
// processes at a random moment; it returns which, and in what phase.
func (r *suRig) killRound(target string) string {
	r.t.Helper()
	cmd := exec.Command(r.bins[su1], "self-update", "--version", target, "--config", r.config)
	cmd.Env = suEnv()
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	// An update takes about 1.5 s once staged: most kills land inside it.
	time.Sleep(time.Duration(rand.Int64N(int64(1500 * time.Millisecond))))
	phase := r.phase(target)
	r.mu.Lock()
	launcher, exited := r.launcher, r.exited
	r.mu.Unlock()
	victim := []string{"launcher", "agent", "stager"}[rand.IntN(3)]
	pid := 0
	switch victim {
	case "launcher":
		pid = launcher.Process.Pid
	case "agent":
		pid = r.childOf(launcher.Process.Pid)
	case "stager":
		pid = cmd.Process.Pid
	}
	if pid == 0 {
		victim, pid = "launcher", launcher.Process.Pid // between two agents
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	if victim == "launcher" {
		<-exited
		r.startLauncher() // as systemd's Restart= does
	}
	select {
	case <-done:
	case <-time.After(3 * time.Minute):
		_ = cmd.Process.Kill()
		r.t.Fatalf("self-update did not end within 3 minutes: %s", out.Bytes())
	}
	return victim + " " + phase
}

// phase says where the update is: before the launcher switched, the new
// version on probation, or past its gate.
func (r *suRig) phase(target string) string {
	run, _, err := selfupdate.LoadRunning(context.Background(), r.db())
	switch {
	case err != nil:
		return "unknown"
	case run.Version != target:
		return "before-switch"
	case run.Probation:
		return "on-probation"
	}
	return "after-gate"
}

func (r *suRig) db() *statedb.DB {
	db, err := statedb.Open(filepath.Join(r.stateDir, "agent.db"))
	if err != nil {
		r.t.Fatal(err)
	}
	return db
}

// childOf returns the agent the launcher pid runs, 0 when it runs none.
func (r *suRig) childOf(pid int) int {
	run, ok, err := selfupdate.LoadRunning(context.Background(), r.db())
	if err != nil || !ok || run.LauncherPID != pid {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", run.PID))
	if err != nil {
		return 0
	}
	// Field 4, after the command name in parentheses, is the parent.
	var state string
	var ppid int
	if i := bytes.LastIndexByte(b, ')'); i < 0 || func() bool { _, err := fmt.Sscan(string(b[i+1:]), &state, &ppid); return err != nil }() || ppid != pid {
		return 0
	}
	return run.PID
}

// settled waits until the launcher runs a good version — the selected
// one, past its gate, not blacklisted — that control sees Healthy in a
// heartbeat sent after settled started, and returns it. It looks again
// each time: a launcher about to switch still runs the old version.
func (r *suRig) settled(within time.Duration) string {
	r.t.Helper()
	from := time.Now()
	deadline := from.Add(within)
	for time.Now().Before(deadline) {
		ctx := context.Background()
		run, ok, err := selfupdate.LoadRunning(ctx, r.db())
		st, serr := selfupdate.Load(ctx, r.db())
		if err == nil && serr == nil && ok && !run.Probation && run.Version == st.Selected && syscall.Kill(run.PID, 0) == nil {
			_, bad := st.Blacklisted(run.Version)
			if _, seen := r.reporting(run.Version, from); !bad && seen && (st.Good == run.Version || run.Version == su1) {
				return run.Version
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	r.t.Fatalf("the host did not settle on a good version within %s\nlogs:\n%s", within, testenv.Tail(r.logs.Bytes(), 8<<10))
	return ""
}
