package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthhq/berth/engine/release"
	"github.com/berthhq/berth/internal/azstore"
	"github.com/berthhq/berth/internal/statedb"
	"github.com/berthhq/berth/packaging/tufrepo"
	"github.com/berthhq/berth/telemetry"
)

func TestBackoffWait(t *testing.T) {
	top := func(n int64) int64 { return n - 1 } // the largest draw
	zero := func(int64) int64 { return 0 }
	for _, tc := range []struct {
		failures int
		jitter   func(int64) int64
		want     time.Duration
	}{
		{1, top, backoffBase - 1},
		{2, top, 2*backoffBase - 1},
		{4, top, 8*backoffBase - 1},
		{7, top, backoffMax - 1}, // 5 s · 2^6 = 320 s, capped at 5 min
		{100, top, backoffMax - 1},
		{1, zero, time.Second}, // never a busy loop
	} {
		if got := backoffWait(tc.failures, tc.jitter); got != tc.want {
			t.Errorf("backoffWait(%d) = %v, want %v", tc.failures, got, tc.want)
		}
	}
}

// A resolution that fails is tried again only after its backoff, logged
// once when it starts failing and once when it works again, and shown in
// the engine check meanwhile.
func TestDesiredBacksOffAndLogsChangesOnly(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	// No pin and no release source: every resolution fails.
	m := &Manager{o: Options{}, log: log}
	d := m.Desired("")
	d.jitter = func(n int64) int64 { return n - 1 }
	ctx := context.Background()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tries := 0
	for s := 0; s < 600; s++ { // ten minutes, asked every second
		now := t0.Add(time.Duration(s) * time.Second)
		before := d.failures
		if v := d.Version(ctx, now); v != "" {
			t.Fatalf("Version = %q with nothing to resolve from", v)
		}
		if d.failures != before {
			tries++
		}
	}
	// Waits of 5, 10, 20, 40, 80, 160 s then 300 s: 7 tries in 600 s, not 120.
	if tries > 8 {
		t.Errorf("%d resolutions in 10 minutes of failure; want the backoff to keep it under 9", tries)
	}
	if n := strings.Count(logs.String(), "cannot resolve"); n != 1 {
		t.Errorf("the failure was logged %d times, want once:\n%s", n, logs.String())
	}
	err, since, _ := d.failure()
	if err == nil || !since.Equal(t0) {
		t.Fatalf("failure() = %v since %v; want the error since %v", err, since, t0)
	}
	// It works again (a pin now resolves): one line says so, and the
	// failure is gone.
	d.pin = "1.2.3"
	d.next = time.Time{}
	if v := d.Version(ctx, t0.Add(time.Hour)); v != "1.2.3" {
		t.Fatalf("Version = %q, want 1.2.3", v)
	}
	if !strings.Contains(logs.String(), "resolved again") {
		t.Errorf("the recovery was not logged:\n%s", logs.String())
	}
	if err, _, _ := d.failure(); err != nil {
		t.Errorf("failure() = %v after a success", err)
	}
}

func TestStatusCheck(t *testing.T) {
	api := &APIStatus{Version: "24.0.7", APIVersion: "1.43"}
	for _, tc := range []struct {
		name   string
		st     Status
		err    error
		pin    string
		status telemetry.Status
		msg    string
	}{
		{"healthy", Status{Flavor: "docker", Managed: true, Running: true, Healthy: true, API: api, Active: "24.0.7"}, nil, "", telemetry.OK, "docker 24.0.7 answers"},
		{"status error", Status{}, errors.New("boom"), "", telemetry.Fail, "boom"},
		{"api down", Status{APIError: "refused"}, nil, "", telemetry.Fail, "does not answer: refused"},
		{"service stopped", Status{Managed: true, API: api}, nil, "", telemetry.Fail, "not running"},
		{"behind the pin", Status{Managed: true, Running: true, Healthy: true, API: api, Active: "24.0.6"}, nil, "24.0.7", telemetry.Warn, "runs 24.0.6, desired 24.0.7"},
		{"pin failed", Status{Managed: true, Running: true, Healthy: true, API: api, Active: "24.0.6", Failed: map[string]Failure{"24.0.7": {}}}, nil, "24.0.7", telemetry.Warn, "rolled back"},
		{"host check fails", Status{Running: true, Healthy: true, API: api, Host: []HostCheck{{Name: "hns", Status: "fail", Message: "down"}}}, nil, "", telemetry.Fail, "hns: down"},
	} {
		c := statusCheck(tc.st, tc.err, tc.pin)
		if c.Status != tc.status || !strings.Contains(c.Message, tc.msg) {
			t.Errorf("%s: %s %q; want %s containing %q", tc.name, c.Status, c.Message, tc.status, tc.msg)
		}
	}
}

func TestWithResolveFailure(t *testing.T) {
	since := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	next := since.Add(time.Minute)
	boom := errors.New("blob storage: 503")
	ok := telemetry.Check{Name: "engine", Status: telemetry.OK, Message: "docker 24.0.7 answers"}
	down := telemetry.Check{Name: "engine", Status: telemetry.Fail, Message: "engine unhealthy"}
	for _, tc := range []struct {
		name   string
		in     telemetry.Check
		err    error
		status telemetry.Status
		msg    string
	}{
		{"resolves", ok, nil, telemetry.OK, "docker 24.0.7 answers"},
		{"fails to resolve", ok, boom, telemetry.Warn, "cannot resolve the desired engine version since 2026-01-01T00:00:00Z: blob storage: 503 (next try 2026-01-01T00:01:00Z); docker 24.0.7 answers"},
		{"engine down wins", down, boom, telemetry.Fail, "engine unhealthy"},
	} {
		got := withResolveFailure(tc.in, tc.err, since, next)
		if got.Status != tc.status || got.Message != tc.msg {
			t.Errorf("%s: %s %q; want %s %q", tc.name, got.Status, got.Message, tc.status, tc.msg)
		}
	}
}

func TestWithRefusal(t *testing.T) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r := Refusal{Version: "9.9.9", Reason: "docker 9.9.9 is not signed for linux/amd64", At: at}
	ok := telemetry.Check{Name: "engine", Status: telemetry.OK, Message: "docker 24.0.7 answers"}
	down := telemetry.Check{Name: "engine", Status: telemetry.Fail, Message: "engine unhealthy"}
	for _, tc := range []struct {
		name    string
		in      telemetry.Check
		refused bool
		status  telemetry.Status
		msg     string
	}{
		{"nothing refused", ok, false, telemetry.OK, "docker 24.0.7 answers"},
		{"refused", ok, true, telemetry.Warn, "control's desired engine 9.9.9 is refused since 2026-01-01T00:00:00Z: docker 9.9.9 is not signed for linux/amd64; docker 24.0.7 answers"},
		{"engine down wins", down, true, telemetry.Fail, "engine unhealthy"},
	} {
		got := withRefusal(tc.in, r, tc.refused)
		if got.Status != tc.status || got.Message != tc.msg {
			t.Errorf("%s: %s %q; want %s %q", tc.name, got.Status, got.Message, tc.status, tc.msg)
		}
	}
}

// dockerStub is stubFlavor named docker, so that release packages signed
// for docker match it.
type dockerStub struct{ stubFlavor }

func (dockerStub) Name() string { return "docker" }

// signedRepo publishes a release repository to a folder with docker
// packages of the versions given for linux/amd64, and 3.0.0 for arm64
// only, and returns a client that trusts it.
func signedRepo(t *testing.T, state string, versions ...string) *release.Client {
	t.Helper()
	ctx := context.Background()
	work := t.TempDir()
	repo, pub := filepath.Join(work, "repo"), filepath.Join(work, "pub")
	if err := tufrepo.Init(repo); err != nil {
		t.Fatal(err)
	}
	add := func(v, arch string) {
		f := filepath.Join(work, "docker-"+v+"-"+arch+".tgz")
		if err := os.WriteFile(f, []byte("package "+v), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := tufrepo.Add(repo, tufrepo.Package{Kind: "engine", Flavor: "docker", Version: v, OS: "linux", Arch: arch}, f); err != nil {
			t.Fatal(err)
		}
	}
	for _, v := range versions {
		add(v, "amd64")
	}
	add("3.0.0", "arm64")
	if err := tufrepo.Publish(ctx, repo, pub, azstore.Credential{Auth: "none"}); err != nil {
		t.Fatal(err)
	}
	rel, err := release.Open(ctx, release.Options{URL: pub, Credential: azstore.Credential{Auth: "none"}, RootFile: filepath.Join(repo, "metadata", "root.json"), StateDir: state})
	if err != nil {
		t.Fatal(err)
	}
	return rel
}

// SPEC "Which engine version", step by step on one host: the pin wins;
// with control, only control's version moves an engine that runs; a host
// with no engine takes control's version, else the channel's newest once
// control had its chance; a version not signed for this host is refused,
// reported once, and changes nothing.
func TestDesiredWithControl(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	type step struct {
		name    string
		pin     string
		noCtl   bool // the host has no control endpoint
		active  string
		control Control
		after   time.Duration // since the resolver's first call
		want    string
		wantErr string
		refused string // the version Refused reports, "" for none
		target  string // what the engine check compares with
	}
	ans := func(v string) Control { return Control{Answered: true, Flavor: "docker", Version: v} }
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"the pin wins over control", []step{
			{pin: "9.9.9", active: "1.0.0", control: ans("2.0.0"), want: "9.9.9", target: "9.9.9"},
		}},
		{"without control, the channel's newest", []step{
			{noCtl: true, active: "1.0.0", want: "2.0.0"},
		}},
		{"control moves a running engine, down as well as up", []step{
			{active: "2.0.0", control: ans("1.0.0"), want: "1.0.0", target: "1.0.0"},
		}},
		{"without control's opinion the engine stays, whatever runs", []step{
			{active: "1.0.0", control: Control{Answered: true}, want: "1.0.0"},
			{name: "an operator's upgrade by hand is not undone", active: "2.0.0", control: Control{Answered: true}, want: "2.0.0"},
		}},
		{"a new host waits for control's first answer, then takes the newest", []step{
			{control: Control{}, want: "", wantErr: "waiting up to 1m0s for the control endpoint"},
			{name: "grace passed", control: Control{}, after: 61 * time.Second, want: "2.0.0"},
		}},
		{"a new host that control answered without opinion takes the newest", []step{
			{control: Control{Answered: true}, want: "2.0.0"},
		}},
		{"a new host takes control's version", []step{
			{control: ans("1.0.0"), want: "1.0.0", target: "1.0.0"},
		}},
		{"a version signed for another architecture only is refused", []step{
			{active: "1.0.0", control: ans("3.0.0"), want: "1.0.0", refused: "3.0.0"},
			{name: "asked again", active: "1.0.0", control: ans("3.0.0"), after: time.Hour, want: "1.0.0", refused: "3.0.0"},
			{name: "control moves on", active: "1.0.0", control: ans("2.0.0"), after: time.Hour + time.Second, want: "2.0.0", target: "2.0.0"},
		}},
		{"an unsigned version on a host with no engine", []step{
			{control: ans("4.0.0"), want: "", wantErr: "not in the verified release metadata", refused: "4.0.0"},
		}},
		{"another flavor is refused", []step{
			{active: "1.0.0", control: Control{Answered: true, Flavor: "containerd", Version: "2.0.0"}, want: "1.0.0", refused: "2.0.0"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			state := t.TempDir()
			db, err := statedb.Open(filepath.Join(state, "agent.db"))
			if err != nil {
				t.Fatal(err)
			}
			var events []Event
			m, err := New(Options{Flavor: dockerStub{}, Runner: &stubRunner{}, StateDir: state, DB: db, Managed: true,
				Releases: signedRepo(t, state, "1.0.0", "2.0.0"), OS: "linux", Arch: "amd64",
				OnEvent: func(ev Event) { events = append(events, ev) }})
			if err != nil {
				t.Fatal(err)
			}
			var cur Control
			var d *Desired
			for i, s := range tc.steps {
				if d == nil {
					o := DesiredOptions{Pin: s.pin}
					if !s.noCtl {
						o.Control = func() Control { return cur }
					}
					d = m.DesiredWith(o)
				}
				cur = s.control
				if err := saveState(ctx, db, "docker", State{Active: s.active}); err != nil {
					t.Fatal(err)
				}
				got := d.Version(ctx, t0.Add(s.after))
				where := fmt.Sprintf("step %d %s", i, s.name)
				if got != s.want {
					t.Errorf("%s: Version = %q, want %q (err %v)", where, got, s.want, d.Err())
				}
				if err := d.Err(); (err == nil) != (s.wantErr == "") || err != nil && !strings.Contains(err.Error(), s.wantErr) {
					t.Errorf("%s: Err = %v, want %q", where, err, s.wantErr)
				}
				r, ok := d.Refused()
				if r.Version != s.refused || ok != (s.refused != "") {
					t.Errorf("%s: Refused = %+v %v, want %q", where, r, ok, s.refused)
				}
				if got := d.target(); got != s.target {
					t.Errorf("%s: target = %q, want %q", where, got, s.target)
				}
			}
			// A refusal is an event once per version, however often it is
			// resolved again.
			want := map[string]int{}
			for _, s := range tc.steps {
				if s.refused != "" {
					want[s.refused] = 1
				}
			}
			got := map[string]int{}
			for _, ev := range events {
				if ev.Kind == "rejected" {
					got[ev.To]++
				}
			}
			if !maps.Equal(got, want) {
				t.Errorf("rejected events by version %v, want %v", got, want)
			}
		})
	}
}
