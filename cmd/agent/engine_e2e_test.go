//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berthhq/berth/engine"
	"github.com/berthhq/berth/internal/azstore"
	"github.com/berthhq/berth/internal/testenv"
	"github.com/berthhq/berth/internal/testenv/azurite"
	"github.com/berthhq/berth/internal/testenv/dockerd"
	"github.com/berthhq/berth/internal/testenv/secretlog"
	"github.com/berthhq/berth/packaging/enginebundle/enginebundletest"
	"github.com/berthhq/berth/packaging/tufrepo"
)

// Versions of the test packages: A and B work, C's dockerd cannot start.
const (
	verA = "20.10.24-1"
	verB = "20.10.24-2"
	verC = "20.10.24-3"
)

// rig is one test's host: an isolated Docker host, Azurite holding signed
// packages, and the agent's config file.
type rig struct {
	t       testing.TB
	host    *dockerd.Host
	az      *azurite.Server
	repo    string // the TUF repository published to Azurite
	keyFile string // Azurite's shared key
	config  string
	cfg     map[string]any
}

// newRig builds packages of the given versions (C broken), signs them
// into a TUF repository and publishes it to a container in Azurite, then
// writes an agent.yaml that trusts it.
func newRig(t testing.TB, versions ...string) *rig {
	t.Helper()
	if testing.Short() {
		t.Skip("starts dockerd and Azurite")
	}
	host := dockerd.NewHost(t)
	az := azurite.Start(t)
	work := t.TempDir()
	repo := filepath.Join(work, "repo")
	if err := tufrepo.Init(repo); err != nil {
		t.Fatal(err)
	}
	for _, v := range versions {
		p := enginebundletest.Docker(t, work, v, v == verC)
		if _, err := tufrepo.Add(repo, tufrepo.Package{Kind: "engine", Flavor: "docker", Version: v, OS: "linux", Arch: "amd64"}, p); err != nil {
			t.Fatal(err)
		}
		os.Remove(p)
	}
	keyFile := az.KeyFile(t)
	cred := azstore.Credential{Auth: "shared-key", KeyFile: keyFile}
	if err := tufrepo.Publish(context.Background(), repo, az.ContainerURL("releases"), cred); err != nil {
		t.Fatal(err)
	}
	b := &rig{t: t, host: host, az: az, repo: repo, keyFile: keyFile, config: filepath.Join(work, "agent.yaml")}
	secretlog.For(t).Logs(filepath.Join(host.Dir, "logs")) // Azurite registered its key
	b.cfg = map[string]any{
		"agent": map[string]any{"stateDir": host.Dir},
		"engine": map[string]any{
			"endpoint": host.Endpoint,
			"settings": host.Settings,
			"releases": map[string]any{
				"url":      az.ContainerURL("releases"),
				"auth":     "shared-key",
				"keyFile":  keyFile,
				"rootFile": filepath.Join(repo, "metadata", "root.json"),
			},
			"upgrade": map[string]any{"healthTimeout": "60s"},
		},
		"cache":  map[string]any{"enabled": false},
		"health": map[string]any{"listen": testenv.FreePort(t)},
	}
	b.writeConfig("")
	return b
}

// writeConfig writes agent.yaml (as JSON, which the schema accepts) with
// engine.version set to pin.
func (b *rig) writeConfig(pin string) {
	b.t.Helper()
	b.cfg["engine"].(map[string]any)["version"] = pin
	data, err := json.MarshalIndent(b.cfg, "", "  ")
	if err != nil {
		b.t.Fatal(err)
	}
	if err := os.WriteFile(b.config, data, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// agent returns a berth-agent command: this test binary acting as it.
func (b *rig) agent(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, os.Args[0], append(args, "--config", b.config)...)
	// The tests time their kills and checks by the agent's progress
	// lines, which one-shot commands log only at info.
	cmd.Env = append(os.Environ(), asAgent+"=1", "BERTH_LOG_LEVEL=info")
	return cmd
}

// run runs berth-agent to the end and returns its exit code and output.
func (b *rig) run(args ...string) (int, string, string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := b.agent(ctx, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	secretlog.For(b.t).Output(fmt.Sprintf("berth-agent %v's output", args), func() string { return stdout.String() + stderr.String() })
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		b.t.Fatalf("berth-agent %v: %v", args, err)
	}
	return code, stdout.String(), stderr.String()
}

func (b *rig) mustRun(args ...string) string {
	b.t.Helper()
	code, out, errOut := b.run(args...)
	if code != 0 {
		b.t.Fatalf("berth-agent %s: exit %d\n%s", strings.Join(args, " "), code, errOut)
	}
	return out
}

func (b *rig) status() engine.Status {
	b.t.Helper()
	var st engine.Status
	out := b.mustRun("engine", "status", "--output", "json")
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		b.t.Fatalf("engine status JSON: %v\n%s", err, out)
	}
	return st
}

// containerPID returns the pid of a running container, or 0.
func (b *rig) containerPID(name string) int {
	b.t.Helper()
	out, err := b.host.Docker(context.Background(), "inspect", "-f", "{{.State.Running}} {{.State.Pid}}", name)
	if err != nil {
		b.t.Fatalf("docker inspect %s: %v: %s", name, err, out)
	}
	var running bool
	var pid int
	fmt.Sscan(string(out), &running, &pid)
	if !running {
		return 0
	}
	return pid
}

func (b *rig) startContainer(name string) int {
	b.t.Helper()
	dockerd.BusyboxImage(b.t, b.host, "busybox:berth")
	if out, err := b.host.Docker(context.Background(), "run", "-d", "--name", name, "--network", "none", "busybox:berth", "sleep", "86400"); err != nil {
		b.t.Fatalf("docker run: %v: %s", err, out)
	}
	pid := b.containerPID(name)
	if pid == 0 {
		b.t.Fatal("container is not running after docker run")
	}
	return pid
}

func wantHealthyOn(t testing.TB, st engine.Status, v string) {
	t.Helper()
	if !st.Healthy || st.Active != v || st.RunningVersion != v || st.Journal != nil {
		t.Fatalf("engine status: want healthy on %s with no journal, got healthy=%v active=%q running=%q journal=%+v apiError=%q",
			v, st.Healthy, st.Active, st.RunningVersion, st.Journal, st.APIError)
	}
}

// TestEngineLifecycleEndToEnd: install A from Azurite, run a container,
// upgrade to B with the container kept alive, fail over a broken C with an
// automatic rollback to B, then roll back to A by hand.
func TestEngineLifecycleEndToEnd(t *testing.T) {
	b := newRig(t, verA, verB, verC)

	b.mustRun("engine", "install", verA)
	wantHealthyOn(t, b.status(), verA)
	pid := b.startContainer("keep")

	b.mustRun("engine", "upgrade", verB)
	st := b.status()
	wantHealthyOn(t, st, verB)
	if st.Previous != verA {
		t.Errorf("previous = %q, want %s", st.Previous, verA)
	}
	if got := b.containerPID("keep"); got != pid {
		t.Fatalf("container pid after upgrade = %d, want %d (live-restore should keep it running)", got, pid)
	}

	code, _, stderr := b.run("engine", "upgrade", verC)
	if code != 1 {
		t.Fatalf("upgrade to broken %s exited %d, want 1", verC, code)
	}
	for _, want := range []string{"rolled back to " + verB, "broken on purpose"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("upgrade error does not say %q:\n%s", want, stderr)
		}
	}
	st = b.status()
	wantHealthyOn(t, st, verB)
	if f, ok := st.Failed[verC]; !ok || !strings.Contains(f.Reason, "exited") {
		t.Errorf("status does not report %s as failed: %+v", verC, st.Failed)
	}
	text := b.mustRun("engine", "status")
	if !strings.Contains(text, "failed:") || !strings.Contains(text, verC) {
		t.Errorf("text status does not show the failure:\n%s", text)
	}
	if got := b.containerPID("keep"); got != pid {
		t.Fatalf("container pid after the failed upgrade = %d, want %d", got, pid)
	}

	b.mustRun("engine", "rollback")
	wantHealthyOn(t, b.status(), verA)
	if got := b.containerPID("keep"); got != pid {
		t.Fatalf("container pid after rollback = %d, want %d", got, pid)
	}
	list := b.mustRun("engine", "list")
	for _, want := range []string{"* " + verA, "- " + verB, "! " + verC} {
		if !strings.Contains(list, want) {
			t.Errorf("engine list lacks %q:\n%s", want, list)
		}
	}
}

// TestDaemonDoesNotRetryFailedVersion: the daemon pinned to a broken
// version tries it once, rolls back, and leaves it alone until the pin
// changes; then it moves to the new pin. It also restarts a dead engine and
// repairs a hand-edited daemon.json.
func TestDaemonDoesNotRetryFailedVersion(t *testing.T) {
	b := newRig(t, verA, verB, verC)
	b.mustRun("engine", "install", verA)

	b.writeConfig(verC)
	logs := b.startDaemon()
	waitFor(t, 90*time.Second, "the daemon to try and roll back "+verC, func() bool {
		return strings.Contains(logs.String(), `"event":"rolled-back"`)
	})
	time.Sleep(12 * time.Second) // two more rounds of the watch loop
	if n := strings.Count(logs.String(), `"event":"upgrade-started"`); n != 1 {
		t.Fatalf("daemon started %d upgrades to the failed version, want 1:\n%s", n, logs.String())
	}
	wantHealthyOn(t, b.status(), verA)

	// The engine dies: the daemon starts it again.
	dockerd.KillUnder(filepath.Join(b.host.Dir, "engines"), syscall.SIGKILL, 10*time.Second)
	waitFor(t, 60*time.Second, "the daemon to restart the engine", func() bool {
		return strings.Contains(logs.String(), `"event":"restarted"`)
	})
	// Someone edits daemon.json by hand: the daemon puts its own back.
	conf := filepath.Join(b.host.Dir, "engines", "docker", "config", "daemon.json")
	orig, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, []byte(`{"debug": true}`), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "the daemon to repair daemon.json", func() bool {
		now, _ := os.ReadFile(conf)
		return bytes.Equal(now, orig) && strings.Contains(logs.String(), `"event":"config-repaired"`)
	})
	waitFor(t, 60*time.Second, "the engine to be healthy on "+verA, func() bool {
		st := b.status()
		return st.Healthy && st.Active == verA
	})

	// Stopping the agent leaves the engine running.
	b.stopDaemon()
	if !strings.Contains(logs.String(), "the engine keeps running") {
		t.Errorf("the daemon did not log its clean stop:\n%s", logs.String())
	}
	wantHealthyOn(t, b.status(), verA)

	// A new pin is a new desired version: the daemon moves to it.
	b.writeConfig(verB)
	b.startDaemon()
	waitFor(t, 120*time.Second, "the daemon to move to "+verB, func() bool {
		st := b.status()
		return st.Healthy && st.Active == verB && st.Journal == nil
	})
}

var daemons sync.Map // *rig → *daemon

// daemon is a running `berth-agent run` and its output.
type daemon struct {
	cmd  *exec.Cmd
	logs *testenv.Buffer
}

func (b *rig) startDaemon() *testenv.Buffer {
	b.t.Helper()
	logs := &testenv.Buffer{}
	cmd := b.agent(context.Background(), "run")
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		b.t.Fatal(err)
	}
	daemons.Store(b, &daemon{cmd: cmd, logs: logs})
	secretlog.For(b.t).Output("berth-agent run's output", logs.String) // read after the stop below
	b.t.Cleanup(b.stopDaemon)
	return logs
}

func (b *rig) stopDaemon() {
	v, ok := daemons.LoadAndDelete(b)
	if !ok {
		return
	}
	d := v.(*daemon)
	cmd := d.cmd
	// A service manager stops a service that has started: a SIGTERM in the
	// first milliseconds of the process, before it could install its
	// handler, would test the Go runtime, not the agent.
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(d.logs.String(), "agent running") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		// SIGTERM is how a service manager stops the agent: a clean exit.
		if err != nil {
			b.t.Errorf("berth-agent run did not exit cleanly on SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		b.t.Errorf("berth-agent run did not stop within 30s of SIGTERM")
	}
}

// poll calls ok until it holds or d has passed, and says whether it held.
func poll(d time.Duration, ok func() bool) bool {
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(500 * time.Millisecond)
	}
	return true
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func waitFor(t testing.TB, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// killPoints are lines the agent logs as an upgrade goes; the fault test
// kills it a random moment after one of them.
var killPoints = []string{
	`event=upgrade-started`,
	`stage="stop `,
	`msg="engine daemon stopped"`,
	`stage="start `,
	`msg="engine daemon started"`,
	`stage="wait for `,
	`msg="engine healthy"`,
}

// roundTimeout bounds one SIGKILL round's recovery. A kill in the middle
// of a switch can take an undo (stop the half-started version, start the
// old one, wait for it) and then the switch again: several engine starts,
// each of which can take tens of seconds when CI runs every package's real
// components at once on 2 cores. A round on a quiet machine takes ~3 s.
const roundTimeout = 4 * time.Minute

// TestUpgradeSurvivesSIGKILL kills the agent with SIGKILL at random moments
// after each step of upgrades between A and B, 21 times in all
// ($BERTH_SOAK_ROUNDS under `make soak`), and checks that after a restart the
// host always ends on a healthy A or B with consistent state, and that the
// container never stops.
func TestUpgradeSurvivesSIGKILL(t *testing.T) {
	b := newRig(t, verA, verB, verC)
	b.mustRun("engine", "install", verA)
	b.mustRun("engine", "install", verB) // unpacked beside A; A stays active
	b.mustRun("engine", "install", verC) // the broken one, for kills during a rollback
	pid := b.startContainer("keep")
	seed := uint64(time.Now().UnixNano())
	t.Logf("kill-point seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))

	// Rounds go on until 21 kills have landed mid-upgrade (a kill that
	// comes after the agent finished does not count), at most 60 rounds;
	// `make soak` asks for more ($BERTH_SOAK_ROUNDS kills, in as many as
	// three times the rounds), and as many rollback kills as one in seven.
	wantKills := testenv.SoakRounds(t, 21)
	maxRounds := wantKills * 60 / 21
	rollbackKills := max(3, wantKills/7)
	hit := map[string]int{}
	midSwitch := map[string]int{} // journal step the kill left behind
	kills, rounds := 0, 0
	for i := 0; kills < wantKills && i < maxRounds; i++ {
		rounds++
		st := b.status()
		to := verB
		if st.Active == verB {
			to = verA
		}
		point := killPoints[i%len(killPoints)]
		// Half the kills come within 20 ms of the line, to land in the
		// short steps; the others anywhere in the next 300 ms.
		delay := time.Duration(rng.IntN(20)) * time.Millisecond
		if i%2 == 1 {
			delay = time.Duration(rng.IntN(300)) * time.Millisecond
		}
		if b.killDuring(point, delay, "engine", "upgrade", to) {
			kills++
			hit[point]++
			if st := b.status(); st.Journal != nil {
				midSwitch[string(st.Journal.Step)]++
			}
		}

		// Restart the agent: the daemon pinned to the target finishes or
		// undoes the interrupted switch, then converges on the target.
		b.writeConfig(to)
		logs := b.startDaemon()
		var last engine.Status
		ok := poll(roundTimeout, func() bool {
			last = b.status()
			return last.Healthy && last.Journal == nil && last.Active == to && last.RunningVersion == to
		})
		if !ok {
			engineLog, _ := os.ReadFile(filepath.Join(b.host.Dir, "logs", "dockerd.log"))
			t.Fatalf("round %d (%s +%v): no healthy engine on %s within %v of the restart; status: %+v\ndaemon log:\n%s\nengine log (tail):\n%s",
				i, point, delay, to, roundTimeout, last, tail(logs.String(), 60), tail(string(engineLog), 40))
		}
		b.stopDaemon()
		st = b.status()
		if len(st.Failed) != 0 {
			t.Fatalf("round %d: a kill made a good version count as failed: %+v", i, st.Failed)
		}
		if got := b.containerPID("keep"); got != pid {
			t.Fatalf("round %d: container pid %d, want %d: it did not survive", i, got, pid)
		}
	}

	// Kills while a failed upgrade rolls back: the restarted agent finishes
	// the rollback, and the host is back on the version it came from.
	for i := 0; i < rollbackKills; i++ {
		rounds++
		from := b.status().Active
		delay := time.Duration(rng.IntN(300)) * time.Millisecond
		if b.killDuring(`msg="engine version failed; rolling back"`, delay, "engine", "upgrade", verC) {
			kills++
			hit["rolling back"]++
			if st := b.status(); st.Journal != nil {
				midSwitch[string(st.Journal.Step)]++
			}
		}
		b.writeConfig(from)
		b.startDaemon()
		waitFor(t, roundTimeout, fmt.Sprintf("rollback round %d (+%v): healthy on %s after restart", i, delay, from), func() bool {
			st := b.status()
			return st.Healthy && st.Journal == nil && st.Active == from && st.RunningVersion == from
		})
		b.stopDaemon()
		if got := b.containerPID("keep"); got != pid {
			t.Fatalf("rollback round %d: container pid %d, want %d: it did not survive", i, got, pid)
		}
	}
	t.Logf("kills per point over %d rounds: %v; journal steps left by kills: %v", rounds, hit, midSwitch)
	if kills < wantKills {
		t.Fatalf("only %d of %d rounds killed the agent mid-upgrade; want %d", kills, rounds, wantKills)
	}
}

// killDuring runs berth-agent with args and sends it SIGKILL delay after it
// logs a line containing point. It reports whether the kill landed before
// the agent finished on its own.
func (b *rig) killDuring(point string, delay time.Duration, args ...string) bool {
	b.t.Helper()
	return killAfter(b.t, b.agent(context.Background(), args...), point, delay)
}

// killAfter starts cmd and sends it SIGKILL delay after it logs a line
// containing point; it reports whether the kill landed before cmd ended
// on its own.
func killAfter(t testing.TB, cmd *exec.Cmd, point string, delay time.Duration) bool {
	t.Helper()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	seen := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		once := sync.Once{}
		for sc.Scan() {
			if strings.Contains(sc.Text(), point) {
				once.Do(func() { close(seen) })
			}
		}
	}()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case <-seen:
	case <-exited:
		return false
	}
	select {
	case <-time.After(delay):
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-exited
		return true
	case <-exited:
		return false
	}
}
