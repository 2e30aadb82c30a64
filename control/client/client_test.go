package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthhq/berth/control/auth"
	"github.com/berthhq/berth/control/client"
	"github.com/berthhq/berth/control/rollout"
	"github.com/berthhq/berth/control/server"
	"github.com/berthhq/berth/control/store"
	"github.com/berthhq/berth/control/wire"
	"github.com/berthhq/berth/internal/secret"
)

// start runs a real server (with its rollout service, whose controller
// does not run) on a real SQLite store with five hosts and
// returns its URL, an operator token and an agent token.
func start(t *testing.T) (url, operator, agent string) {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, "sqlite://"+filepath.Join(t.TempDir(), "c.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	a, err := auth.New(ctx, auth.Options{Methods: []auth.Method{auth.MethodToken}, Tokens: st})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(server.New(server.Options{Store: st, Auth: a, Rollouts: rollout.New(rollout.Options{Store: st})}))
	t.Cleanup(hs.Close)
	_, operator, _ = st.IssueToken(ctx, store.RoleOperator, "alice", time.Now())
	_, agent, _ = st.IssueToken(ctx, store.RoleAgent, "vm-0", time.Now())
	now := time.Now().UTC()
	for i := range 5 {
		pool := "blue"
		if i%2 == 1 {
			pool = "green"
		}
		b := wire.Batch{Agent: fmt.Sprintf("vm-%d", i), Records: []wire.Record{
			{Seq: 1, Kind: wire.KindHeartbeat, Time: now, Heartbeat: &wire.Heartbeat{
				State: "Healthy", Engine: wire.Engine{Flavor: "docker", Version: "24.0.7", Active: true, Healthy: true},
				AgentVersion: "1.0.0", Labels: map[string]string{"pool": pool}, IntervalSeconds: 60,
				Checks: []wire.Check{{Name: "engine.api", Status: "ok", Message: "fine", Time: now}},
			}},
			{Seq: 2, Kind: wire.KindEvent, Time: now, Event: &wire.Event{Kind: "engine.installed", Message: "docker 24.0.7"}},
		}}
		if _, err := st.Ingest(ctx, b, now); err != nil {
			t.Fatal(err)
		}
	}
	return hs.URL, operator, agent
}

func TestClient(t *testing.T) {
	url, operator, agent := start(t)
	ctx := context.Background()
	c, err := client.New(client.Options{Server: url + "/", Token: secret.Value(operator)})
	if err != nil {
		t.Fatal(err)
	}
	page, err := c.Hosts(ctx, wire.HostFilter{Labels: map[string]string{"pool": "green"}})
	if err != nil || page.Total != 2 || len(page.Hosts) != 2 {
		t.Fatalf("Hosts: %+v %v", page, err)
	}
	all, err := c.AllHosts(ctx, wire.HostFilter{Limit: 2, Sort: "-id"}, 0)
	if err != nil || len(all.Hosts) != 5 || all.Hosts[0].ID != "vm-4" || all.Next != "" {
		t.Fatalf("AllHosts: %+v %v", all, err)
	}
	d, err := c.Host(ctx, "vm-3", 10)
	if err != nil || d.ID != "vm-3" || len(d.Events) != 1 {
		t.Fatalf("Host: %+v %v", d, err)
	}
	counts, err := c.Counts(ctx)
	if err != nil || counts.Total != 5 {
		t.Fatalf("Counts: %+v %v", counts, err)
	}

	f, err := c.Forget(ctx, "vm-3", true)
	if err != nil || f != (wire.Forgotten{ID: "vm-3", HistoryDropped: true, Heartbeats: 1, Events: 1}) {
		t.Fatalf("Forget: %+v %v", f, err)
	}
	if _, err := c.Host(ctx, "vm-3", 0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Host after Forget: %v, want not found", err)
	}
	if _, err := c.Forget(ctx, "vm-3", false); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Forget again: %v, want not found", err)
	}

	_, err = c.Host(ctx, "vm-nobody", 0)
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != 404 || ae.Code != wire.CodeNotFound || !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown host: %v", err)
	}
	_, err = c.Hosts(ctx, wire.HostFilter{State: "Sleepy"})
	if !errors.As(err, &ae) || ae.Status != 400 || !strings.Contains(err.Error(), "Sleepy") {
		t.Errorf("bad state: %v", err)
	}
	for _, tt := range []struct {
		token  string
		status int
		hint   string
	}{{"", 401, "--token-file"}, {"berth_wrong", 401, "BERTH_TOKEN"}, {agent, 403, "--operator"}} {
		c, _ := client.New(client.Options{Server: url, Token: secret.Value(tt.token)})
		_, err := c.Counts(ctx)
		if !errors.As(err, &ae) || ae.Status != tt.status || !strings.Contains(err.Error(), fmt.Sprint(tt.status)) || !strings.Contains(err.Error(), tt.hint) {
			t.Errorf("token %q: %v, want %d with a hint %q", tt.token, err, tt.status, tt.hint)
		}
		if tt.token != "" && strings.Contains(err.Error(), tt.token) {
			t.Errorf("the token is in the error: %v", err)
		}
	}
}

func TestClientErrors(t *testing.T) {
	for _, bad := range []string{"127.0.0.1:8080", "ftp://x", "http://user:pw@host", "http://host?x=1"} {
		if _, err := client.New(client.Options{Server: bad}); err == nil || strings.Contains(err.Error(), "pw") {
			t.Errorf("New(%q): %v", bad, err)
		}
	}
	// A proxy's error page is not a wire.Error: the status still shows.
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "<html>bad gateway</html>", http.StatusBadRequest)
	}))
	defer hs.Close()
	c, _ := client.New(client.Options{Server: hs.URL})
	if _, err := c.Counts(context.Background()); err == nil || !strings.Contains(err.Error(), "400") || !strings.Contains(err.Error(), "bad gateway") {
		t.Errorf("non-JSON error: %v", err)
	}
	// Nobody listening: the error says where it tried.
	c, _ = client.New(client.Options{Server: "http://127.0.0.1:1", RetryMax: 1})
	if _, err := c.Counts(context.Background()); err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("no server: %v", err)
	}
}

func TestLoadToken(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(data), 0o600)
		return p
	}
	if tok, err := client.LoadToken(write("ok", "berth_abc\n"), "env"); err != nil || tok.Reveal() != "berth_abc" {
		t.Errorf("file: %q %v", tok.Reveal(), err)
	}
	if tok, err := client.LoadToken("", " berth_env "); err != nil || tok.Reveal() != "berth_env" {
		t.Errorf("env: %q %v", tok.Reveal(), err)
	}
	for _, p := range []string{write("empty", "\n"), write("two", "a\nb\n"), filepath.Join(dir, "missing")} {
		if _, err := client.LoadToken(p, ""); err == nil {
			t.Errorf("LoadToken(%s) accepted", p)
		}
	}
}

func TestRender(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	h := wire.Host{ID: "vm-1", State: "Stale", ReportedState: "Healthy", Engine: wire.Engine{Flavor: "docker", Version: "24.0.7"},
		AgentVersion: "1.0.0", Labels: map[string]string{"pool": "blue", "az": "1"}, LastReport: now.Add(-5 * time.Minute)}
	var buf bytes.Buffer
	client.WriteHosts(&buf, []wire.Host{h}, now)
	want := "ID    STATE  ENGINE         AGENT  LAST REPORT  LABELS\nvm-1  Stale  docker 24.0.7  1.0.0  5m ago       az=1,pool=blue\n"
	if buf.String() != want {
		t.Errorf("WriteHosts:\n%s\nwant:\n%s", buf.String(), want)
	}
	buf.Reset()
	d := wire.HostDetail{Host: h,
		History: []wire.HealthPoint{{Seq: 3, Time: now, State: "Healthy"}},
		Events:  []wire.EventRecord{{Seq: 2, Time: now, Event: wire.Event{Kind: "engine.installed", Message: "docker\n24.0.7"}}}}
	d.Checks = []wire.Check{{Name: "engine.api", Status: "fail", Message: "no answer", Time: now}}
	client.WriteHost(&buf, d, now)
	for _, s := range []string{"State:           Stale (last reported Healthy)", "CHECKS (1)", "engine.api  fail", "EVENTS (1 newest)", "engine.installed  docker 24.0.7", "HEALTH HISTORY (1 newest)", "Last report:     2026-01-02T02:59:05Z (5m ago)"} {
		if !strings.Contains(buf.String(), s) {
			t.Errorf("WriteHost lacks %q:\n%s", s, buf.String())
		}
	}
	for _, tt := range []struct {
		d    time.Duration
		want string
	}{{30 * time.Second, "30s ago"}, {90 * time.Minute, "1h ago"}, {72 * time.Hour, "3d ago"}} {
		if got := client.Age(now.Add(-tt.d), now); got != tt.want {
			t.Errorf("Age(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
	if client.Age(time.Time{}, now) != "never" {
		t.Error("zero time is not never")
	}
}
