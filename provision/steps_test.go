package provision

import (
	"errors"
	"strings"
	"testing"

	"github.com/berthhq/berth/engine"
	"github.com/berthhq/berth/telemetry"
)

func TestJudgeEngine(t *testing.T) {
	healthy := engine.Status{Flavor: "docker", Active: "1", Running: true, Healthy: true}
	down := errors.New("release storage down")
	tests := []struct {
		name       string
		st         engine.Status
		desired    string
		resolveErr error
		done       bool
		permanent  bool
		fail       bool
		say        string
	}{
		{name: "at desired, healthy", st: healthy, desired: "1", done: true, say: "docker 1 healthy"},
		{name: "fresh host", st: engine.Status{Flavor: "docker"}, desired: "1", say: "(none), desired 1"},
		{name: "older version", st: healthy, desired: "2", say: "docker 1, desired 2"},
		{name: "change under way", st: engine.Status{Flavor: "docker", Active: "1", Journal: &engine.Journal{Op: "upgrade", To: "2", Step: engine.StepStopped}}, desired: "2", say: "upgrade to 2 is under way"},
		{name: "desired failed before", st: engine.Status{Flavor: "docker", Active: "1", Healthy: true, Failed: map[string]engine.Failure{"2": {Reason: "exited"}}}, desired: "2", fail: true, permanent: true, say: "failed its health gate (exited)"},
		{name: "a failure no longer desired", st: engine.Status{Flavor: "docker", Active: "1", Running: true, Healthy: true, Failed: map[string]engine.Failure{"3": {Reason: "exited"}}}, desired: "1", say: "docker 3 failed before and is no longer desired (1 is); forget the failure"},
		{name: "not running", st: engine.Status{Flavor: "docker", Active: "1"}, desired: "1", say: "not running"},
		{name: "api down", st: engine.Status{Flavor: "docker", Active: "1", Running: true, APIError: "refused"}, desired: "1", say: "refused"},
		{name: "unresolved, healthy engine kept", st: healthy, resolveErr: down, done: true, say: "kept, since release storage down"},
		{name: "unresolved, no engine", st: engine.Status{Flavor: "docker"}, resolveErr: down, fail: true, say: "release storage down"},
		{name: "unresolved, change under way", st: engine.Status{Flavor: "docker", Journal: &engine.Journal{Op: "install", To: "1", Step: engine.StepStarted}}, resolveErr: down, say: "install to 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			done, msg, err := judgeEngine(tc.st, tc.desired, tc.resolveErr)
			if done != tc.done || (err != nil) != tc.fail || IsPermanent(err) != tc.permanent {
				t.Fatalf("judgeEngine = %v, %q, %v", done, msg, err)
			}
			if got := msg + errString(err); !strings.Contains(got, tc.say) {
				t.Fatalf("judgeEngine says %q, want %q", got, tc.say)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestJudgeWiring(t *testing.T) {
	tests := []struct {
		w    engine.Wiring
		done bool
		say  string
	}{
		{w: engine.Wiring{Mirror: "127.0.0.1:5050"}, done: true, say: "mirror is the cache at http://127.0.0.1:5050"},
		{w: engine.Wiring{Mirror: "127.0.0.1:5050", Drift: []string{"daemon.json"}}, say: "differs from what berth writes: daemon.json"},
		{w: engine.Wiring{Mirror: "127.0.0.1:5050", Stale: true}, say: "older configuration"},
		{w: engine.Wiring{}, done: true, say: "no cache mirror"},
	}
	for _, tc := range tests {
		done, msg := judgeWiring(tc.w)
		if done != tc.done || !strings.Contains(msg, tc.say) {
			t.Errorf("judgeWiring(%+v) = %v, %q; want %v, %q", tc.w, done, msg, tc.done, tc.say)
		}
	}
}

func TestJudgeHealth(t *testing.T) {
	c := func(name string, s telemetry.Status) telemetry.Check {
		return telemetry.Check{Name: name, Status: s, Message: string(s)}
	}
	tests := []struct {
		name    string
		checks  []telemetry.Check
		managed bool
		done    bool
		say     string
	}{
		{name: "not run yet", managed: true, say: "not run yet"},
		{name: "all ok", checks: []telemetry.Check{c("engine", telemetry.OK), c("disk", telemetry.OK)}, managed: true, done: true, say: "2 checks pass"},
		{name: "engine fails", checks: []telemetry.Check{c("engine", telemetry.Fail), c("disk", telemetry.OK)}, managed: true, say: "failing: engine"},
		{name: "unmanaged engine fails: not gating", checks: []telemetry.Check{c("engine", telemetry.Fail), c("disk", telemetry.OK)}, done: true, say: "1 checks pass; not ready-gating and not ok: engine"},
		{name: "unmanaged, disk fails", checks: []telemetry.Check{c("engine", telemetry.Fail), c("disk", telemetry.Fail)}, say: "failing: disk"},
		{name: "control down: reports wait", checks: []telemetry.Check{c("engine", telemetry.OK), c("control", telemetry.Fail)}, managed: true, done: true, say: "not ready-gating and not ok: control"},
		{name: "warning", checks: []telemetry.Check{c("cache-tier blob", telemetry.Warn)}, managed: true, done: true, say: "with warnings: cache-tier blob"},
		{name: "unknown verdict fails", checks: []telemetry.Check{c("state", "odd")}, managed: true, say: "failing: state"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			done, msg := judgeHealth(tc.checks, tc.managed)
			if done != tc.done || !strings.Contains(msg, tc.say) {
				t.Fatalf("judgeHealth = %v, %q; want %v, %q", done, msg, tc.done, tc.say)
			}
		})
	}
}

// TestEngineStepFailedVersionStillConverges: a desired version that failed
// before is not a reason to skip Converge (which restarts a dead engine
// and repairs its configuration without trying the version again); the
// check after it fails the step for good.
func TestEngineStepFailedVersionStillConverges(t *testing.T) {
	failed := engine.Status{Flavor: "docker", Active: "1", Running: true, Healthy: true, Failed: map[string]engine.Failure{"2": {Reason: "exited"}}}
	verdict := afterApply(judgeEngine(failed, "2", nil))
	if done, msg, err := verdict(false); done || err != nil || !strings.Contains(msg, "failed its health gate") {
		t.Fatalf("first check = %v, %q, %v; want not done, no error, so that Apply converges", done, msg, err)
	}
	if _, _, err := verdict(true); !IsPermanent(err) {
		t.Fatalf("check after Apply = %v; want a permanent failure", err)
	}
	// The desired version moves back to the one that runs: the failure
	// of 2 is to be forgotten (Apply's Converge does it), so that 2, asked
	// for again later, is tried again.
	if done, msg, err := afterApply(judgeEngine(failed, "1", nil))(false); done || err != nil || !strings.Contains(msg, "forget") {
		t.Fatalf("at desired with a stale failure = %v, %q, %v; want not done so that Apply forgets it", done, msg, err)
	}
	failed.Failed = nil
	if done, _, err := afterApply(judgeEngine(failed, "1", nil))(false); !done || err != nil {
		t.Fatalf("healthy at desired = %v, %v", done, err)
	}
}
