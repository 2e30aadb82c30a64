package selfupdate

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthhq/berth/control/wire"
	"github.com/berthhq/berth/internal/statedb"
	"github.com/berthhq/berth/telemetry"
	"github.com/berthhq/berth/telemetry/outbox"
)

// The gate: /healthz's answer, then control's acknowledgement of a report
// queued since the agent started; a version is not blamed for a control
// endpoint that was down before it started.
func TestGate(t *testing.T) {
	healthy := func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(telemetry.Health{State: telemetry.Degraded})
	}
	unhealthy := func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		_ = json.NewEncoder(w).Encode(telemetry.Health{State: telemetry.Unhealthy,
			Checks: []telemetry.Check{{Name: "engine", Status: telemetry.Fail, Message: "engine API does not answer"}}})
	}
	garbage := func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("<html>")) }
	now := time.Now()
	for _, tc := range []struct {
		name    string
		healthz http.HandlerFunc
		control bool
		backlog time.Duration // age of a record queued before the start; 0 for none
		ackNew  bool          // a record queued after the start is acknowledged
		want    string        // "" passes
		blamed  bool
	}{
		{name: "no control: a 200 passes (Degraded too)", healthz: healthy},
		{name: "503 names the failing check", healthz: unhealthy, want: "Unhealthy; engine fail: engine API does not answer", blamed: true},
		{name: "not JSON", healthz: garbage, want: "no health in it", blamed: true},
		{name: "control: nothing queued since the start", healthz: healthy, control: true, want: "no report queued", blamed: true},
		{name: "control: acknowledged since the start", healthz: healthy, control: true, backlog: time.Second, ackNew: true},
		{name: "control: not acknowledged, was fine before", healthz: healthy, control: true, backlog: time.Second, want: "not acknowledged", blamed: true},
		{name: "control: not acknowledged, was down before", healthz: healthy, control: true, backlog: time.Hour, want: "not acknowledged", blamed: false},
		{name: "control down before, but unhealthy", healthz: unhealthy, control: true, backlog: time.Hour, want: "Unhealthy", blamed: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			srv := httptest.NewServer(tc.healthz)
			defer srv.Close()
			g := &gate{url: srv.URL + "/healthz", client: srv.Client()}
			if tc.control {
				db, err := statedb.Open(filepath.Join(t.TempDir(), "agent.db"))
				if err != nil {
					t.Fatal(err)
				}
				g.outbox = outbox.New(db, outbox.Options{Now: func() time.Time { return now.Add(-tc.backlog) }})
				if tc.backlog > 0 {
					if _, err := g.outbox.Append(ctx, wire.KindEvent, wire.Event{Kind: "agent.started"}); err != nil {
						t.Fatal(err)
					}
				}
			}
			g.start(ctx, now)
			if tc.control && tc.backlog > 0 {
				seq, err := g.outbox.Append(ctx, wire.KindEvent, wire.Event{Kind: "agent.started"})
				if err != nil {
					t.Fatal(err)
				}
				if tc.ackNew {
					if err := g.outbox.Ack(ctx, seq); err != nil {
						t.Fatal(err)
					}
				}
			}
			err := g.probe(ctx)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("probe: %v; want a pass", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("probe: %v; want one saying %q", err, tc.want)
			case err != nil && g.blames(err) != tc.blamed:
				t.Fatalf("blames(%v) = %v, want %v", err, !tc.blamed, tc.blamed)
			}
			if err != nil && errors.Is(err, errNotAcked) != strings.Contains(tc.want, "not acknowledged") {
				t.Fatalf("probe: %v: errNotAcked mismatch", err)
			}
		})
	}
}
