package agent

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/berthhq/berth/agent/config"
	"github.com/berthhq/berth/control/wire"
	"github.com/berthhq/berth/internal/azstore"
	"github.com/berthhq/berth/internal/hostid"
	"github.com/berthhq/berth/internal/units"
	"github.com/berthhq/berth/packaging/tufrepo"
	"github.com/berthhq/berth/provision/desired/desiredtest"
	"github.com/berthhq/berth/telemetry/report"
)

func TestTidyRejected(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	at := func(m int) time.Time { return now.Add(time.Duration(-m) * time.Minute) }
	var many []wire.Rejected
	for i := range wire.MaxRejected + 4 {
		many = append(many, wire.Rejected{Kind: "engine", Version: "1.0." + strconv.Itoa(i), Reason: "rolled-back", Time: at(i)})
	}
	for _, tc := range []struct {
		name string
		in   []wire.Rejected
		want []wire.Rejected
	}{
		{"none", nil, nil},
		{"newest first", []wire.Rejected{
			{Kind: "engine", Version: "1.0.0", Reason: "rolled-back", Time: at(5)},
			{Kind: "agent", Version: "2.0.0", Reason: "not-signed", Time: at(1)},
		}, []wire.Rejected{
			{Kind: "agent", Version: "2.0.0", Reason: "not-signed", Time: at(1)},
			{Kind: "engine", Version: "1.0.0", Reason: "rolled-back", Time: at(5)},
		}},
		{"a version the endpoint refuses is left out", []wire.Rejected{
			{Kind: "agent", Version: "../x", Reason: "blacklisted", Time: at(1)},
			{Kind: "agent", Version: "", Reason: "blacklisted", Time: at(1)},
		}, nil},
		{"a clock ahead is brought back to now", []wire.Rejected{
			{Kind: "engine", Version: "1.0.0", Reason: "rolled-back", Time: now.Add(time.Hour)},
		}, []wire.Rejected{
			{Kind: "engine", Version: "1.0.0", Reason: "rolled-back", Time: now},
		}},
		{"at most MaxRejected, the newest", many, many[:wire.MaxRejected]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, tidyRejected(tc.in, now)); diff != "" {
				t.Errorf("tidyRejected (-want +got):\n%s", diff)
			}
		})
	}
	long := tidyRejected([]wire.Rejected{{Kind: "engine", Version: "1.0.0", Reason: "rolled-back", Message: strings.Repeat("é", wire.MaxMessageLen), Time: now}}, now)
	if len(long[0].Message) > wire.MaxMessageLen {
		t.Errorf("a message of %d bytes is sent; the endpoint takes %d", len(long[0].Message), wire.MaxMessageLen)
	}
}

// desiredPeer is a control endpoint for the agent's tests: the desired
// state from desiredtest, and report batches stored.
type desiredPeer struct {
	*desiredtest.Peer
	srv *httptest.Server

	mu      sync.Mutex
	records []wire.Record
}

func newDesiredPeer(t *testing.T) *desiredPeer {
	p := &desiredPeer{Peer: desiredtest.New()}
	p.Other = reportsHandler(func(b wire.Batch) {
		p.mu.Lock()
		p.records = append(p.records, b.Records...)
		p.mu.Unlock()
	})
	p.srv = httptest.NewServer(p.Peer)
	t.Cleanup(p.srv.Close)
	return p
}

// lastHeartbeat and events read what the agent reported.
func (p *desiredPeer) lastHeartbeat() *wire.Heartbeat {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := len(p.records) - 1; i >= 0; i-- {
		if hb := p.records[i].Heartbeat; hb != nil {
			return hb
		}
	}
	return nil
}

func (p *desiredPeer) events(kind string) []wire.Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []wire.Event
	for _, r := range p.records {
		if r.Event != nil && r.Event.Kind == kind {
			out = append(out, *r.Event)
		}
	}
	return out
}

// agentRepo signs agent packages of the versions given for this host's
// platform into a release repository in a folder, and returns its URL and
// root file.
func agentRepo(t *testing.T, versions ...string) (string, string) {
	t.Helper()
	work := t.TempDir()
	repo, pub := filepath.Join(work, "repo"), filepath.Join(work, "pub")
	if err := tufrepo.Init(repo); err != nil {
		t.Fatal(err)
	}
	for _, v := range versions {
		f := filepath.Join(work, "berth-agent-"+v+".tar.gz")
		if err := os.WriteFile(f, []byte("agent "+v), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := tufrepo.Add(repo, tufrepo.Package{Kind: "agent", Version: v, OS: runtime.GOOS, Arch: runtime.GOARCH}, f); err != nil {
			t.Fatal(err)
		}
	}
	if err := tufrepo.Publish(context.Background(), repo, pub, azstore.Credential{Auth: "none"}); err != nil {
		t.Fatal(err)
	}
	return pub, filepath.Join(repo, "metadata", "root.json")
}

// The daemon follows control's desired agent version: a version signed for
// this host is offered to self-update; one that is not is refused (an
// event, a not-signed entry in the heartbeats, never offered) until
// control names a signed one again. Heartbeats carry the platform.
func TestDesiredAgentVersion(t *testing.T) {
	if runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64" {
		t.Skip("release packages are signed for amd64 and arm64 only")
	}
	t.Setenv(hostid.IMDSEnv, "http://127.0.0.1:1") // no IMDS: the machine id
	peer := newDesiredPeer(t)
	url, root := agentRepo(t, "1.2.0")
	cfg := config.Default()
	cfg.Agent.StateDir = t.TempDir()
	cfg.Agent.ID = "host-1"
	cfg.Control = report.Config{URL: peer.srv.URL, Auth: "none", ReportInterval: units.Duration(200 * time.Millisecond)}
	cfg.Engine.Managed = false
	cfg.Engine.Endpoint = "unix://" + t.TempDir() + "/no-engine.sock"
	cfg.Engine.Releases.URL, cfg.Engine.Releases.RootFile = url, root
	cfg.Engine.Releases.Auth = "none"
	cfg.Cache.Enabled = false
	cfg.Health.Listen = "127.0.0.1:0"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, err := New(ctx, cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	a.agentRejected = func(context.Context) []wire.Rejected {
		return []wire.Rejected{{Kind: "agent", Version: "1.1.0", Reason: wire.RejectedBlacklisted, Time: time.Now().Add(-time.Hour)}}
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer stopRun(t, cancel, done)

	peer.Set("host-1", wire.Desired{Agent: &wire.DesiredAgent{Version: "9.9.9"}, Rollouts: []string{"r1"}})
	waitUntil(t, "the unsigned agent version refused and reported", func() bool {
		hb := peer.lastHeartbeat()
		return hb != nil && len(peer.events("agent.rejected")) == 1 && hasRejected(hb, "agent", "9.9.9", wire.RejectedNotSigned)
	})
	hb := peer.lastHeartbeat()
	if hb.OS != runtime.GOOS || hb.Arch != runtime.GOARCH {
		t.Errorf("heartbeat platform %s/%s, want %s/%s", hb.OS, hb.Arch, runtime.GOOS, runtime.GOARCH)
	}
	if !hasRejected(hb, "agent", "1.1.0", wire.RejectedBlacklisted) {
		t.Errorf("heartbeat rejected %+v lacks the self-update blacklist's entry", hb.Rejected)
	}
	if v, ok := a.desiredAgent(); ok {
		t.Errorf("desiredAgent = %q, offered while refused", v)
	}
	peer.Set("host-1", wire.Desired{Agent: &wire.DesiredAgent{Version: "1.2.0"}, Rollouts: []string{"r2"}})
	waitUntil(t, "the signed agent version offered", func() bool {
		v, ok := a.desiredAgent()
		hb := peer.lastHeartbeat()
		return ok && v == "1.2.0" && !hasRejected(hb, "agent", "9.9.9", wire.RejectedNotSigned)
	})
	if n := len(peer.events("agent.rejected")); n != 1 {
		t.Errorf("%d agent.rejected events, want 1", n)
	}
}

func hasRejected(hb *wire.Heartbeat, kind, version, reason string) bool {
	for _, r := range hb.Rejected {
		if r.Kind == kind && r.Version == version && r.Reason == reason {
			return true
		}
	}
	return false
}

func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
