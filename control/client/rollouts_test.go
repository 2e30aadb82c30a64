package client_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berthhq/berth/control/client"
	"github.com/berthhq/berth/control/wire"
	"github.com/berthhq/berth/internal/secret"
)

func newClient(t *testing.T, url, token string) *client.Client {
	t.Helper()
	c, err := client.New(client.Options{Server: url, Token: secret.Value(token)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestRolloutCallsAreSentOnce: a server that answers 503 gets a POST that
// creates or changes a rollout once (a retry after a lost answer would be
// refused as a conflict with what the first did), and a read or a pin
// again, as other calls.
func TestRolloutCallsAreSentOnce(t *testing.T) {
	var n atomic.Int32
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(`{"code": "unavailable", "message": "busy"}`))
	}))
	defer hs.Close()
	c, err := client.New(client.Options{Server: hs.URL, RetryMax: 2, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	spec := wire.RolloutSpec{Selector: map[string]string{"pool": "web"}, Kind: wire.KindAgent, Version: "2.0.0"}
	for _, c := range []struct {
		name  string
		call  func() error
		sends int32
	}{
		{"create", func() error { _, err := c.CreateRollout(ctx, spec); return err }, 1},
		{"pause", func() error { _, err := c.PauseRollout(ctx, "r-1", "freeze"); return err }, 1},
		{"abort", func() error { _, err := c.AbortRollout(ctx, "r-1", ""); return err }, 1},
		{"show", func() error { _, err := c.Rollout(ctx, "r-1"); return err }, 3},
		{"pin", func() error { _, err := c.Pin(ctx, "vm-1", wire.Pin{Engine: "25.0.1"}); return err }, 3},
		{"unpin", func() error { _, err := c.Unpin(ctx, "vm-1", wire.KindEngine); return err }, 3},
	} {
		n.Store(0)
		err := c.call()
		var ae *client.APIError
		if !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable {
			t.Errorf("%s: %v, want the 503", c.name, err)
		}
		if got := n.Load(); got != c.sends {
			t.Errorf("%s: sent %d times, want %d", c.name, got, c.sends)
		}
	}
}

// TestRolloutsThroughTheClient: the client's rollout and pin calls against
// a real server, and what it says of an agent's token.
func TestRolloutsThroughTheClient(t *testing.T) {
	url, operator, agent := start(t)
	c := newClient(t, url, operator)
	ctx := context.Background()
	spec := wire.RolloutSpec{Selector: map[string]string{"pool": "blue"}, Kind: wire.KindEngine, Flavor: "docker", Version: "25.0.1"}.WithDefaults()
	ro, err := c.CreateRollout(ctx, spec)
	if err != nil || ro.ID == "" || ro.Hosts != 3 {
		t.Fatalf("create: %+v %v", ro, err)
	}
	if _, err := c.CreateRollout(ctx, spec); err == nil || !strings.Contains(err.Error(), "409 conflict") {
		t.Errorf("overlapping create: %v", err)
	}
	if l, err := c.Rollouts(ctx); err != nil || len(l.Rollouts) != 1 {
		t.Errorf("list: %+v %v", l, err)
	}
	if got, err := c.PauseRollout(ctx, ro.ID, "freeze"); err != nil || got.State != wire.RolloutPaused {
		t.Errorf("pause: %s %v", got.State, err)
	}
	if got, err := c.ResumeRollout(ctx, ro.ID, ""); err != nil || got.State != wire.RolloutRunning {
		t.Errorf("resume: %s %v", got.State, err)
	}
	if got, err := c.AbortRollout(ctx, ro.ID, "no"); err != nil || got.State != wire.RolloutAborted {
		t.Errorf("abort: %s %v", got.State, err)
	}
	if _, err := c.Rollout(ctx, "r-nope"); !errors.Is(err, wire.ErrNotFound) {
		t.Errorf("unknown rollout: %v, want ErrNotFound", err)
	}
	if p, err := c.Pin(ctx, "vm-1", wire.Pin{Agent: "1.1.0"}); err != nil || p.Agent != "1.1.0" {
		t.Errorf("pin: %+v %v", p, err)
	}
	if p, err := c.Unpin(ctx, "vm-1", ""); err != nil || p != (wire.Pin{}) {
		t.Errorf("unpin: %+v %v", p, err)
	}
	if _, err := newClient(t, url, agent).Rollouts(ctx); err == nil || !strings.Contains(err.Error(), "403 forbidden") {
		t.Errorf("agent token: %v", err)
	}
}
