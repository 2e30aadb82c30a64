package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/berthhq/berth/control/wire"
	"github.com/berthhq/berth/internal/paths"
	"github.com/berthhq/berth/internal/testenv"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"berth-control": main,
	})
}

// TestScripts runs the CLI contracts in testdata/script. Each script gets
// a free loopback address in $LISTEN for a server it starts with
// "exec berth-control serve … &", and these commands:
//
//	waitserver URL                 wait until URL/healthz answers 200
//	report URL TOKENFILE AGENT SEQ STATE [KEY=VALUE…]
//	                               post one heartbeat with those labels, of
//	                               linux/amd64 running docker $REPORT_ENGINE
//	                               (default 24.0.7); its status and answer
//	                               go to stdout
//	envjson VAR FILE FIELD         set $VAR to a string field of a JSON file
//	status N PROGRAM [ARGS…]       run PROGRAM like exec and want exit status N
//	                               (exec and ! exec tell only 0 from not 0)
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(env *testscript.Env) error {
			env.Setenv("LISTEN", testenv.FreePort(t))
			return nil
		},
		// controldb: the default store exists on this machine, so a test
		// that it is not created cannot run.
		Condition: func(cond string) (bool, error) {
			if cond != "controldb" {
				return false, fmt.Errorf("unknown condition %q", cond)
			}
			_, err := os.Stat(paths.ControlDB())
			return err == nil, nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"waitserver": cmdWaitServer,
			"report":     cmdReport,
			"envjson":    cmdEnvJSON,
			"status":     testenv.StatusCmd,
		},
	})
}

func cmdWaitServer(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 || neg {
		ts.Fatalf("usage: waitserver URL")
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(args[0] + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			ts.Fatalf("%s/healthz did not answer 200 in 15s: %v", args[0], err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func cmdReport(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 5 {
		ts.Fatalf("usage: report URL TOKENFILE AGENT SEQ STATE [KEY=VALUE…]")
	}
	seq, err := strconv.ParseUint(args[3], 10, 64)
	ts.Check(err)
	labels := map[string]string{}
	for _, kv := range args[5:] {
		k, v, _ := strings.Cut(kv, "=")
		labels[k] = v
	}
	engine := ts.Getenv("REPORT_ENGINE")
	if engine == "" {
		engine = "24.0.7"
	}
	now := time.Now().UTC()
	body, err := json.Marshal(wire.Batch{Agent: args[2], Records: []wire.Record{{
		Seq: seq, Kind: wire.KindHeartbeat, Time: now, Heartbeat: &wire.Heartbeat{
			State: args[4], Engine: wire.Engine{Flavor: "docker", Version: engine, Active: true, Healthy: true},
			OS: "linux", Arch: "amd64",
			AgentVersion: "1.0.0", Labels: labels, IntervalSeconds: 60,
			Checks: []wire.Check{{Name: "engine.api", Status: "ok", Message: "docker answers", Time: now}},
		}}}})
	ts.Check(err)
	req, err := http.NewRequest(http.MethodPost, args[0]+wire.ReportsPath, bytes.NewReader(body))
	ts.Check(err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(ts.ReadFile(args[1])))
	resp, err := http.DefaultClient.Do(req)
	ts.Check(err)
	defer resp.Body.Close()
	// The status and the answer go to stdout, for the script to match.
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	ts.Check(err)
	var we wire.Error
	if json.Unmarshal(answer, &we) == nil && we.Code != "" {
		fmt.Fprintf(ts.Stdout(), "%d %s: %s\n", resp.StatusCode, we.Code, we.Message)
	} else {
		fmt.Fprintf(ts.Stdout(), "%d %s\n", resp.StatusCode, bytes.TrimSpace(answer))
	}
	if ok := resp.StatusCode == http.StatusOK; ok == neg {
		ts.Fatalf("report of %s: status %d: %s", args[2], resp.StatusCode, answer)
	}
}

func cmdEnvJSON(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 3 || neg {
		ts.Fatalf("usage: envjson VAR FILE FIELD")
	}
	var m map[string]any
	ts.Check(json.Unmarshal([]byte(ts.ReadFile(args[1])), &m))
	v, ok := m[args[2]].(string)
	if !ok {
		ts.Fatalf("%s has no string field %q", args[1], args[2])
	}
	ts.Setenv(args[0], v)
}
