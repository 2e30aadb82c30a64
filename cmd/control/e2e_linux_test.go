//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/testenv"
	"github.com/berthhq/berth/internal/testenv/secretlog"
)

// The end-to-end tests of issue 4 run the real binaries: berth-control
// serve on SQLite or PostgreSQL, and berth-agent run reporting to it, each
// in its own process so that either can be stopped or killed.

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binary returns the path of berth-agent or berth-control built from this
// tree, once per test process.
func binary(t testing.TB, name string) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "berth-e2e-bin-")
		if buildErr != nil {
			return
		}
		gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
		for _, b := range []struct{ name, pkg string }{
			{"berth-agent", "github.com/berthhq/berth/cmd/agent"},
			{"berth-control", "github.com/berthhq/berth/cmd/control"},
		} {
			out, err := exec.Command(gobin, "build", "-o", filepath.Join(binDir, b.name), b.pkg).CombinedOutput()
			if err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", b.pkg, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, name)
}

// lockedBuffer collects a process's output for the test to read while it
// runs.
// proc is a started child process.
type proc struct {
	cmd  *exec.Cmd
	logs *testenv.Buffer
	done chan struct{}
	err  error
}

func startProc(t testing.TB, env []string, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{logs: &testenv.Buffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	// Registered before the cleanups that stop the process, so read after.
	secretlog.For(t).Output(fmt.Sprintf("%s %s's output", filepath.Base(bin), args[0]), p.logs.String)
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	return p
}

// stop ends the process with SIGTERM, as a service manager does, and says
// whether it exited cleanly within the timeout (it is killed otherwise).
func (p *proc) stop(timeout time.Duration) error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("did not exit within %v of SIGTERM", timeout)
	}
}

// kill ends the process with SIGKILL and waits for it.
func (p *proc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// controlServer is a berth-control serve process and its command line.
type controlServer struct {
	t    testing.TB
	bin  string
	db   string
	addr string
	URL  string
	args []string
	p    *proc
}

// startControl starts berth-control serve on a free loopback port with
// the store db and the extra flags, and waits until it answers.
func startControl(t testing.TB, db string, args ...string) *controlServer {
	t.Helper()
	addr := testenv.FreePort(t)
	c := &controlServer{t: t, bin: binary(t, "berth-control"), db: db, addr: addr, URL: "http://" + addr, args: args}
	c.start()
	t.Cleanup(func() {
		if c.p != nil && !c.p.exited() {
			if err := c.p.stop(30 * time.Second); err != nil {
				t.Errorf("berth-control serve: %v\n%s", err, c.p.logs)
			}
		}
	})
	return c
}

func (c *controlServer) start() {
	c.t.Helper()
	c.p = startProc(c.t, nil, c.bin, append([]string{"serve", "--listen", c.addr, "--db", c.db}, c.args...)...)
	waitFor(c.t, 30*time.Second, "berth-control serve to answer", func() bool {
		if c.p.exited() {
			c.t.Fatalf("berth-control serve exited: %v\n%s", c.p.err, c.p.logs)
		}
		resp, err := http.Get(c.URL + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

func (c *controlServer) stop() {
	c.t.Helper()
	if err := c.p.stop(30 * time.Second); err != nil {
		c.t.Fatalf("berth-control serve did not stop cleanly: %v\n%s", err, c.p.logs)
	}
}

// cli runs a berth-control command with env and returns its stdout; any
// failure fails the test.
func (c *controlServer) cli(env []string, args ...string) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	// token issue prints its secret on stdout on purpose; nothing else may.
	printsSecret := len(args) > 1 && args[0] == "token" && args[1] == "issue"
	secretlog.For(c.t).Output("berth-control "+strings.Join(args, " ")+"'s output", func() string {
		if printsSecret {
			return stderr.String()
		}
		return stdout.String() + stderr.String()
	})
	if err != nil {
		c.t.Fatalf("berth-control %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// issue returns a new token for --agent or --operator name.
func (c *controlServer) issue(role, name string) string {
	c.t.Helper()
	secret := strings.TrimSpace(c.cli(nil, "token", "issue", "--db", c.db, "--"+role, name))
	secretlog.For(c.t).Secret(role+" token of "+name, secret)
	return secret
}

// agentHost is one berth-agent run process with its state folder and
// config.
type agentHost struct {
	t      testing.TB
	bin    string
	config string
	health string
	env    []string
	p      *proc
	starts int
}

// newAgent writes agent.yaml (as JSON) from cfg, with its state folder and
// health listener filled in.
func newAgent(t testing.TB, cfg map[string]any, env ...string) *agentHost {
	t.Helper()
	dir := t.TempDir()
	a := &agentHost{t: t, bin: binary(t, "berth-agent"), config: filepath.Join(dir, "agent.yaml"), health: testenv.FreePort(t), env: env}
	agent, _ := cfg["agent"].(map[string]any)
	if agent == nil {
		agent = map[string]any{}
		cfg["agent"] = agent
	}
	agent["stateDir"] = filepath.Join(dir, "state")
	secretlog.For(t).Logs(filepath.Join(dir, "state", "logs"))
	cfg["health"] = map[string]any{"listen": a.health}
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(a.config, data, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if a.p != nil && !a.p.exited() {
			a.p.kill()
		}
	})
	return a
}

func (a *agentHost) stateDir() string {
	var cfg struct{ Agent struct{ StateDir string } }
	data, err := os.ReadFile(a.config)
	if err == nil {
		err = json.Unmarshal(data, &cfg)
	}
	if err != nil {
		a.t.Fatal(err)
	}
	return cfg.Agent.StateDir
}

// setStateDir rewrites agent.yaml with agent.stateDir = dir.
func (a *agentHost) setStateDir(t testing.TB, dir string) {
	t.Helper()
	var cfg map[string]any
	data, err := os.ReadFile(a.config)
	if err == nil {
		err = json.Unmarshal(data, &cfg)
	}
	if err != nil {
		t.Fatal(err)
	}
	cfg["agent"].(map[string]any)["stateDir"] = dir
	if data, err = json.MarshalIndent(cfg, "", "  "); err == nil {
		err = os.WriteFile(a.config, data, 0o644)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// start starts berth-agent run and waits until it says it runs.
func (a *agentHost) start() {
	a.t.Helper()
	a.p = startProc(a.t, a.env, a.bin, "run", "--config", a.config)
	a.starts++
	waitFor(a.t, 30*time.Second, "berth-agent run to start", func() bool {
		if a.p.exited() {
			a.t.Fatalf("berth-agent run exited: %v\n%s", a.p.err, a.p.logs)
		}
		return strings.Contains(a.p.logs.String(), "agent running")
	})
}

// healthz returns /healthz's status code and state.
func (a *agentHost) healthz() (int, string) {
	resp, err := http.Get("http://" + a.health + "/healthz")
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	var h struct{ State string }
	body, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(body, &h)
	return resp.StatusCode, h.State
}

func waitFor(t testing.TB, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
