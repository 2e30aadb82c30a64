//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berthhq/berth/imagecache/imagetest"
	"github.com/berthhq/berth/internal/statedb"
	"github.com/berthhq/berth/internal/svc"
	"github.com/berthhq/berth/internal/testenv"
	"github.com/berthhq/berth/internal/testenv/dockerd"
	"github.com/berthhq/berth/internal/testenv/registry"
	"github.com/berthhq/berth/internal/testenv/secretlog"
	"github.com/berthhq/berth/provision"
	"github.com/berthhq/berth/provision/selfupdate"
)

// provisionRig is a host from zero: no engine, no agent service, signed
// engine packages in Azurite, an upstream registry with one image, and an
// agent.yaml with the cache (disk and an Azurite tier) and that image to
// prewarm.
type provisionRig struct {
	*rig
	reg   *registry.Server
	image string // the prewarm image's reference
}

func newProvisionRig(t testing.TB, versions ...string) *provisionRig {
	t.Helper()
	b := newRig(t, versions...)
	reg := registry.Start(t, registry.Options{})
	imagetest.SeedBusybox(t, reg.URL, "team/warm", "v1")
	p := &provisionRig{rig: b, reg: reg, image: reg.Addr + "/team/warm:v1"}
	b.cfg["cache"] = map[string]any{
		"enabled":   true,
		"listen":    testenv.FreePort(t),
		"local":     map[string]any{"maxSize": "2GiB"},
		"storage":   []any{map[string]any{"url": b.az.ContainerURL("cache"), "auth": "shared-key", "keyFile": b.keyFile}},
		"prewarm":   []any{p.image},
		"upstreams": map[string]any{reg.Addr: map[string]any{"endpoint": reg.URL}},
	}
	b.writeConfig(versions[0])
	t.Cleanup(p.stopService)
	return p
}

// provisionCmd is `berth-agent provision` as cloud-init starts it: no
// terminal, no HOME, a minimal PATH.
func (p *provisionRig) provisionCmd(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, os.Args[0], append([]string{"provision", "--config", p.config}, args...)...)
	cmd.Env = []string{asAgent + "=1", "PATH=/usr/bin:/bin"}
	return cmd
}

// provision runs `berth-agent provision --output json` to its end.
func (p *provisionRig) provision(args ...string) (int, provision.Result, string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), roundTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := p.provisionCmd(ctx, append([]string{"--output", "json"}, args...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	secretlog.For(p.t).Output(fmt.Sprintf("berth-agent provision %v's output", args), func() string { return stdout.String() + stderr.String() })
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		p.t.Fatalf("berth-agent provision: %v", err)
	}
	var res provision.Result
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		p.t.Fatalf("provision --output json: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	return code, res, stderr.String()
}

// servicePid is the detached agent's pid (no service manager here), 0
// when none runs.
func (p *provisionRig) servicePid() int {
	pid, running := svc.DetachedPid(filepath.Join(p.host.Dir, "agent.pid"))
	if !running {
		return 0
	}
	return pid
}

// stopService stops the detached agent as a service manager would
// (SIGTERM), and any agent of this config a kill left without a pid file.
func (p *provisionRig) stopService() {
	for _, pid := range agentsOf(p.config) {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	poll(30*time.Second, func() bool { return len(agentsOf(p.config)) == 0 })
	for _, pid := range agentsOf(p.config) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	poll(5*time.Second, func() bool { return len(agentsOf(p.config)) == 0 })
	os.Remove(filepath.Join(p.host.Dir, "agent.pid"))
}

// agentsOf lists the `berth-agent run` processes of a config file that
// the service or the detached start made: the launchers. The agent each
// launcher supervises runs `run` too, marked by selfupdate.ChildEnv, and
// is not counted: it lives and dies with its launcher.
func agentsOf(config string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		args := strings.Split(string(cmdline), "\x00")
		if err != nil || len(args) < 4 || args[1] != "run" || !strings.Contains(string(cmdline), "\x00"+config+"\x00") {
			continue
		}
		if env, err := os.ReadFile("/proc/" + e.Name() + "/environ"); err == nil && bytes.Contains(append([]byte{0}, env...), []byte("\x00"+selfupdate.ChildEnv+"=")) {
			continue
		}
		if st, err := os.ReadFile("/proc/" + e.Name() + "/stat"); err == nil {
			if i := bytes.LastIndexByte(st, ')'); i > 0 && i+2 < len(st) && st[i+2] == 'Z' {
				continue
			}
		}
		pids = append(pids, pid)
	}
	return pids
}

// wantReady checks a host provision called ready: every step done, the
// engine healthy on version v and wired to the cache, the prewarm image in
// the engine, the agent service running, the plan's journal empty.
func (p *provisionRig) wantReady(res provision.Result, v string) {
	p.t.Helper()
	if !res.Ready || res.Failed != "" || len(res.Steps) != 6 {
		p.t.Fatalf("provision result: %+v", res)
	}
	for _, s := range res.Steps {
		if s.State != provision.Done {
			p.t.Fatalf("step %s is %s: %+v", s.Name, s.State, s)
		}
	}
	wantHealthyOn(p.t, p.status(), v)
	conf, err := os.ReadFile(filepath.Join(p.host.Dir, "engines", "docker", "config", "daemon.json"))
	listen := p.cfg["cache"].(map[string]any)["listen"].(string)
	if err != nil || !strings.Contains(string(conf), `"http://`+listen+`"`) {
		p.t.Fatalf("daemon.json does not name the cache as registry mirror (%v):\n%s", err, conf)
	}
	if out, err := p.host.Docker(context.Background(), "image", "inspect", "-f", "{{.Id}}", p.image); err != nil {
		p.t.Fatalf("the prewarm image %s is not in the engine: %v: %s", p.image, err, out)
	}
	if p.servicePid() == 0 {
		p.t.Fatal("the agent service (detached: no service manager here) does not run")
	}
	if n := len(agentsOf(p.config)); n != 1 {
		p.t.Fatalf("%d agents run for this host, want 1", n)
	}
}

// TestProvisionFromZeroToReady: on a host with no engine, `provision`
// started as cloud-init would installs the engine from Azurite, wires it to
// the cache, starts the agent detached (there is no service manager),
// prewarms the image through the cache and ends ready, exit 0; run again
// it changes nothing (engine pid and agent pid unchanged).
func TestProvisionFromZeroToReady(t *testing.T) {
	p := newProvisionRig(t, verA)
	code, res, stderr := p.provision()
	if code != 0 {
		t.Fatalf("provision: exit %d\n%s", code, stderr)
	}
	p.wantReady(res, verA)
	// Without a terminal, progress is in the log, one line per step.
	for _, step := range []string{"prerequisites", "engine", "cache-wiring", "service", "prewarm", "health"} {
		if !strings.Contains(stderr, `msg="provision step" step=`+step+" state=done") {
			t.Errorf("the log has no progress line of step %s:\n%s", step, stderr)
		}
	}
	if res.Steps[1].Seconds <= 0 {
		t.Errorf("the engine step took no time: %+v", res.Steps[1])
	}
	enginePid, agentPid := p.status().PID, p.servicePid()

	code, res, stderr = p.provision()
	if code != 0 {
		t.Fatalf("provision again: exit %d\n%s", code, stderr)
	}
	p.wantReady(res, verA)
	if strings.Contains(stderr, "state=running") {
		t.Errorf("provision on a ready host acted:\n%s", stderr)
	}
	if got := p.status().PID; got != enginePid {
		t.Errorf("engine pid %d, was %d: provision on a ready host restarted it", got, enginePid)
	}
	if got := p.servicePid(); got != agentPid {
		t.Errorf("agent pid %d, was %d: provision on a ready host restarted it", got, agentPid)
	}
}

// TestProvisionNamesTheFailedStep: a pin on a version that is not signed
// fails the engine step; provision exits 1 naming it within its timeout.
func TestProvisionNamesTheFailedStep(t *testing.T) {
	p := newProvisionRig(t, verA)
	p.writeConfig("99.0.0")
	start := time.Now()
	code, res, stderr := p.provision("--timeout", "15s")
	if code != 1 || res.Ready || res.Failed != "engine" {
		t.Fatalf("provision with an unsigned pin: exit %d, %+v\n%s", code, res, stderr)
	}
	if !strings.Contains(stderr, "step engine failed") || !strings.Contains(stderr, "99.0.0") {
		t.Errorf("stderr does not name the failed step and the version:\n%s", stderr)
	}
	if s, _ := res.Step("prewarm"); s.State != provision.Pending {
		t.Errorf("prewarm ran after the engine failed: %+v", s)
	}
	if d := time.Since(start); d > 60*time.Second {
		t.Errorf("provision --timeout 15s took %v", d)
	}
}

// provisionKillPoints are lines `provision` logs as its steps act; the
// fault test kills it a random moment after one of them.
var provisionKillPoints = []string{
	"step=engine state=running",
	`msg="downloading engine package"`,
	`msg="engine daemon stopped"`,
	`msg="engine daemon started"`,
	"step=cache-wiring state=",
	"step=service state=running",
	"step=prewarm state=running",
	`msg="prewarming images"`,
	"step=health state=",
}

// TestProvisionSurvivesSIGKILL kills `berth-agent provision` with SIGKILL
// at random moments of its steps, 3 rounds ($BERTH_SOAK_ROUNDS under
// `make soak`), and checks that `provision` run again always ends with a
// ready host. Before each round the host is made unready where every step
// has work: the other engine version pinned, the agent service stopped,
// the prewarm image removed; every third round from zero (no engine, no
// agent.db).
func TestProvisionSurvivesSIGKILL(t *testing.T) {
	p := newProvisionRig(t, verA, verB)
	rounds := testenv.SoakRounds(t, 3)
	seed := uint64(time.Now().UnixNano())
	t.Logf("kill-point seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	hit, kills := map[string]int{}, 0
	for i := range rounds {
		pin := verA
		if i%2 == 1 {
			pin = verB
		}
		p.unready(i%3 == 0, pin)
		point := provisionKillPoints[rng.IntN(len(provisionKillPoints))]
		delay := time.Duration(rng.IntN(300)) * time.Millisecond
		if p.killProvisionAt(point, delay) {
			kills++
			hit[point]++
		}
		code, res, stderr := p.provision()
		if code != 0 {
			t.Fatalf("round %d (kill after %s +%v): provision after the kill: exit %d, %+v\n%s", i, point, delay, code, res, tail(stderr, 60))
		}
		p.wantReady(res, pin)
	}
	t.Logf("%d kills in %d rounds; kills per point: %v", kills, rounds, hit)
	if kills < rounds/2 {
		t.Fatalf("only %d of %d rounds killed provision before it finished", kills, rounds)
	}
}

// unready undoes what provision did, so that each step has work: the agent
// service stopped, the prewarm image gone and forgotten, pin as the
// engine's version; with zero, the engine stopped and its folders and
// agent.db removed too.
func (p *provisionRig) unready(zero bool, pin string) {
	p.t.Helper()
	p.stopService()
	ctx := context.Background()
	_, _ = p.host.Docker(ctx, "rmi", "-f", p.image)
	if zero {
		dockerd.KillUnder(filepath.Join(p.host.Dir, "engines"), syscall.SIGTERM, 20*time.Second)
		dockerd.KillUnder(filepath.Join(p.host.Dir, "engines"), syscall.SIGKILL, 5*time.Second)
		for _, name := range []string{"engines", "agent.db", "cache"} {
			if err := os.RemoveAll(filepath.Join(p.host.Dir, name)); err != nil {
				p.t.Fatal(err)
			}
		}
	} else {
		db, err := statedb.Open(filepath.Join(p.host.Dir, "agent.db"))
		if err == nil {
			err = db.Delete(ctx, "prewarm", "images")
		}
		if err != nil {
			p.t.Fatalf("forget the prewarm: %v", err)
		}
	}
	p.writeConfig(pin)
}

// killProvisionAt runs `provision` and sends it SIGKILL delay after it
// logs a line containing point; it says whether the kill landed before
// provision ended on its own.
func (p *provisionRig) killProvisionAt(point string, delay time.Duration) bool {
	p.t.Helper()
	return killAfter(p.t, p.provisionCmd(context.Background()), point, delay)
}

// TestWiringRepairedAfterAKillBetweenWriteAndRestart: an agent killed after
// it wrote a new cache address into daemon.json and before it restarted the
// engine leaves a file that matches what Berth renders and an engine that
// still uses the old mirror. The daemon (the plan's cache-wiring step) must
// see that the engine started with an older configuration and restart it.
func TestWiringRepairedAfterAKillBetweenWriteAndRestart(t *testing.T) {
	b := newRig(t, verA)
	ctx := context.Background()
	oldListen, newListen := testenv.FreePort(t), testenv.FreePort(t)
	b.cfg["cache"] = map[string]any{"enabled": true, "listen": oldListen}
	b.writeConfig(verA)
	b.mustRun("engine", "install", verA)
	mirrors := func() string {
		out, err := b.host.Docker(ctx, "info", "--format", "{{json .RegistryConfig.Mirrors}}")
		if err != nil {
			return "docker info: " + err.Error()
		}
		return string(out)
	}
	if got := mirrors(); !strings.Contains(got, oldListen) {
		t.Fatalf("engine mirrors %s, want %s", got, oldListen)
	}
	// The crash: the config moved to newListen and daemon.json was
	// rewritten for it, byte for byte, but the engine was not restarted.
	conf := filepath.Join(b.host.Dir, "engines", "docker", "config", "daemon.json")
	data, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, bytes.ReplaceAll(data, []byte(oldListen), []byte(newListen)), 0o644); err != nil {
		t.Fatal(err)
	}
	b.cfg["cache"] = map[string]any{"enabled": true, "listen": newListen}
	b.writeConfig(verA)
	logs := b.startDaemon()
	waitFor(t, 90*time.Second, "the daemon to restart the engine with the mirror at "+newListen, func() bool {
		return strings.Contains(mirrors(), newListen)
	})
	if !strings.Contains(logs.String(), "older configuration") {
		t.Errorf("the daemon did not say why it restarted the engine:\n%s", logs.String())
	}
}
