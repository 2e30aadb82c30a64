//go:build linux

package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthhq/berth/provision/extension/waagenttest"

	"github.com/berthhq/berth/internal/testenv/secretlog"
)

// TestExtensionEndToEnd runs the handler as WALinuxAgent does on a host
// with no engine and no service manager: install + enable start the
// detached agent, the status goes transitioning then success with the
// engine healthy and the prewarm image present; the same sequence again
// restarts nothing; new settings restart the agent, not the engine; an
// update to a new handler version in the guest agent's order keeps the
// agent's config and the engine; disable leaves containers running;
// uninstall keeps the engine's data.
func TestExtensionEndToEnd(t *testing.T) {
	p := newProvisionRig(t, verA)
	p.cfg["engine"].(map[string]any)["version"] = verA
	g := waagenttest.New(t, waagenttest.Options{Env: []string{asAgent + "=1", "BERTH_CONFIG=" + p.config}})
	const v1 = "1.0.0"
	g.Unpack(v1, os.Args[0])
	g.WriteSettings(v1, 0, p.cfg, map[string]any{"control": map[string]any{"token": "e2e-secret-token"}})
	secretlog.For(t).Secret("protected control token", "e2e-secret-token")
	secretlog.For(t).Logs(g.Handler(v1).LogFolder)
	ctx := context.Background()
	install, enable := g.Install(ctx, v1, os.Args[0], 0)
	if install.ExitCode != 0 || enable.ExitCode != 0 {
		t.Fatalf("install %d enable %d:\n%s\n%s", install.ExitCode, enable.ExitCode, install.Output, enable.Output)
	}
	h := g.Handler(v1)
	st, err := waagenttest.ReadStatus(h.StatusFolder, 0)
	if err != nil || st.Status != "transitioning" || !strings.Contains(st.Message, "detached") {
		t.Fatalf("status after enable (%s): want transitioning saying the agent runs detached, got %+v %v", enable.Elapsed, st, err)
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	st, err = waagenttest.WaitStatus(wctx, h.StatusFolder, 0, func(s waagenttest.Status) bool { return s.Status != "transitioning" })
	if err != nil || st.Status != "success" {
		t.Fatalf("final status: %+v %v\nagent log:\n%s", st, err, readTail(filepath.Join(p.host.Dir, "logs", "agent.out")))
	}
	wantHealthyOn(t, p.status(), verA)
	settings, _ := os.ReadFile(filepath.Join(h.ConfigFolder, "0.settings"))
	if strings.Contains(string(settings), "protectedSettings\":\"M") {
		t.Errorf("protected settings not scrubbed: %s", settings)
	}
	if out, err := p.host.Docker(ctx, "image", "inspect", p.image); err != nil {
		t.Fatalf("prewarm image not in the engine: %v %s", err, out)
	}
	enginePid, agentPid := p.status().PID, p.servicePid()
	if enginePid == 0 || agentPid == 0 {
		e, _ := os.ReadDir(p.host.Dir)
		t.Fatalf("engine pid %d agent pid %d; %v\n%s", enginePid, agentPid, e, readTail(filepath.Join(p.host.Dir, "logs", "agent.out")))
	}
	fresh := func() {
		t.Helper()
		if s, ok, err := waagenttest.Heartbeat(h.HeartbeatFile, time.Now()); err != nil || !ok {
			t.Fatalf("heartbeat: %q fresh=%v %v", s, ok, err)
		}
	}
	fresh()

	// 2. enable again, same sequence: nothing restarts.
	if r := g.Run(ctx, v1, "enable", 0, nil); r.ExitCode != 0 {
		t.Fatalf("enable again: %d %s", r.ExitCode, r.Output)
	}
	time.Sleep(2 * time.Second)
	if e, a := p.status().PID, p.servicePid(); e != enginePid || a != agentPid {
		t.Fatalf("enable of an applied sequence restarted something: engine %d->%d agent %d->%d", enginePid, e, agentPid, a)
	}

	// 3. new settings (a label): the agent restarts, the engine does not.
	p.cfg["agent"].(map[string]any)["labels"] = map[string]any{"ring": "e2e"}
	g.WriteSettings(v1, 1, p.cfg, map[string]any{"control": map[string]any{"token": "e2e-secret-token"}})
	if r := g.Run(ctx, v1, "enable", 1, nil); r.ExitCode != 0 {
		t.Fatalf("enable 1: %d %s", r.ExitCode, r.Output)
	}
	st, err = waagenttest.WaitStatus(wctx, h.StatusFolder, 1, func(s waagenttest.Status) bool { return s.Status != "transitioning" })
	if err != nil || st.Status != "success" {
		t.Fatalf("status of seq 1: %+v %v", st, err)
	}
	if e, a := p.status().PID, p.servicePid(); e != enginePid || a == agentPid || a == 0 {
		t.Fatalf("new label: want the agent restarted and the engine kept: engine %d->%d agent %d->%d", enginePid, e, agentPid, a)
	}
	if cfg, _ := os.ReadFile(p.config); !strings.Contains(string(cfg), "e2e") {
		t.Fatalf("label not in the agent config:\n%s", cfg)
	}
	fresh()

	// 4. update to a new version of the handler in the guest agent's order
	// (disable old, update new, uninstall old, install new, enable new):
	// the old version's uninstall keeps the agent's config and state, the
	// engine is not restarted, and the new version reports success.
	const v2 = "1.1.0"
	raw, err := os.ReadFile(filepath.Join(h.ConfigFolder, "1.settings"))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range g.Update(ctx, v1, v2, os.Args[0], 1, raw) {
		if r.ExitCode != 0 {
			t.Fatalf("update %s→%s: %s exited %d:\n%s", v1, v2, r.Command, r.ExitCode, r.Output)
		}
	}
	h = g.Handler(v2)
	st, err = waagenttest.WaitStatus(wctx, h.StatusFolder, 1, func(s waagenttest.Status) bool { return s.Status != "transitioning" })
	if err != nil || st.Status != "success" {
		t.Fatalf("status of seq 1 after the update: %+v %v", st, err)
	}
	if e, a := p.status().PID, p.servicePid(); e != enginePid || a == 0 {
		t.Fatalf("after the update: want the engine kept and the agent running: engine %d->%d agent %d", enginePid, e, a)
	}
	if _, err := os.Stat(p.config); err != nil {
		t.Fatalf("the old version's uninstall removed the agent config: %v", err)
	}
	fresh()

	// 5. disable: the agent stops, a container keeps running.
	cpid := p.startContainer("kept")
	if r := g.Run(ctx, v2, "disable", 1, nil); r.ExitCode != 0 {
		t.Fatalf("disable: %d %s", r.ExitCode, r.Output)
	}
	if a := p.servicePid(); a != 0 {
		t.Fatalf("agent %d still runs after disable", a)
	}
	if p.containerPID("kept") != cpid {
		t.Fatal("container stopped by disable")
	}

	// 6. uninstall: the agent is gone, the engine's data stays.
	if r := g.Run(ctx, v2, "uninstall", 1, nil); r.ExitCode != 0 {
		t.Fatalf("uninstall: %d %s", r.ExitCode, r.Output)
	}
	if a := agentsOf(p.config); len(a) != 0 {
		t.Fatalf("agents after uninstall: %v", a)
	}
	if p.containerPID("kept") != cpid {
		t.Fatal("container stopped by uninstall")
	}
	if _, err := os.Stat(filepath.Join(p.host.Dir, "data", "containers")); err != nil {
		t.Fatalf("uninstall removed the engine's data root: %v", err)
	}
	logs, _ := os.ReadFile(filepath.Join(p.host.Dir, "logs", "agent.out"))
	if strings.Contains(string(logs)+install.Output+enable.Output, "e2e-secret-token") {
		t.Fatal("the protected control token is in the logs")
	}
}

func readTail(path string) string {
	b, _ := os.ReadFile(path)
	return tail(string(b), 40)
}
