package server_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/berthhq/berth/control/wire"
)

const jsonType = "application/json"

// send sends body (JSON) with method to path as token.
func (f *fixture) send(t testing.TB, method, path, token, body string) response {
	t.Helper()
	rq := request{Method: method, Path: path, Token: token, Header: map[string]string{"Content-Type": jsonType}}
	if body != "" {
		rq.Body = strings.NewReader(body)
	}
	return f.do(t, rq)
}

// createRollout creates a rollout of the engine to version on the hosts
// labelled pool=web and returns it.
func (f *fixture) createRollout(t testing.TB, version string) wire.Rollout {
	t.Helper()
	r := f.send(t, http.MethodPost, wire.RolloutsPath, f.Operator,
		`{"selector": {"pool": "web"}, "kind": "engine", "flavor": "docker", "version": "`+version+`", "waves": [50, 100], "bake": "1s"}`)
	if r.Status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	var ro wire.Rollout
	if err := json.Unmarshal(r.Body, &ro); err != nil || ro.ID == "" {
		t.Fatalf("create: %v: %s", err, r.Body)
	}
	if loc := r.Header.Get("Location"); loc != wire.RolloutsPath+"/"+ro.ID {
		t.Errorf("Location %q", loc)
	}
	return ro
}

// TestRolloutsOperatorOnly: an agent token (or none) can neither read nor
// change rollouts and pins.
func TestRolloutsOperatorOnly(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	f.ack(t, f.AgentA, "vm-a", heartbeat(1, "Healthy", map[string]string{"pool": "web"}))
	ro := f.createRollout(t, "25.0.1")
	calls := []struct{ method, path, body string }{
		{http.MethodPost, wire.RolloutsPath, `{"selector": {"pool": "web"}, "kind": "agent", "version": "2.0.0"}`},
		{http.MethodGet, wire.RolloutsPath, ""},
		{http.MethodGet, wire.RolloutsPath + "/" + ro.ID, ""},
		{http.MethodPost, wire.RolloutsPath + "/" + ro.ID + "/pause", ""},
		{http.MethodPost, wire.RolloutsPath + "/" + ro.ID + "/resume", ""},
		{http.MethodPost, wire.RolloutsPath + "/" + ro.ID + "/abort", `{"reason": "mine now"}`},
		{http.MethodPut, "/v1/hosts/vm-a/pin", `{"engine": "1.0.0"}`},
		{http.MethodDelete, "/v1/hosts/vm-a/pin", ""},
	}
	for _, c := range calls {
		for _, who := range []struct {
			name, token string
			status      int
		}{{"agent", f.AgentA, 403}, {"nobody", "", 401}} {
			r := f.send(t, c.method, c.path, who.token, c.body)
			if r.Status != who.status {
				t.Errorf("%s %s as %s: %d, want %d: %s", c.method, c.path, who.name, r.Status, who.status, r.Body)
			}
		}
	}
	// Nothing the agent sent took effect.
	var got wire.Rollout
	f.getJSON(t, wire.RolloutsPath+"/"+ro.ID, &got)
	if got.State != wire.RolloutRunning {
		t.Errorf("after the agent's calls the rollout is %s", got.State)
	}
}

// TestRolloutsHostile: what a careless script or a hostile client sends
// to the rollout and pin endpoints is refused with a status and a message
// that says what to fix.
func TestRolloutsHostile(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	f.ack(t, f.AgentA, "vm-a", heartbeat(1, "Healthy", map[string]string{"pool": "web"}))
	ro := f.createRollout(t, "25.0.1")
	huge := `{"selector": {"pool": "` + strings.Repeat("w", wire.MaxSpecBytes) + `"}}`
	for _, c := range []struct {
		name, method, path, ctype, body string
		status                          int
		says                            string
	}{
		{"waves not increasing", "POST", wire.RolloutsPath, jsonType, `{"selector": {"pool": "web"}, "kind": "agent", "version": "2", "waves": [50, 10, 100]}`, 400, "strictly increasing"},
		{"wave over 100", "POST", wire.RolloutsPath, jsonType, `{"selector": {"pool": "web"}, "kind": "agent", "version": "2", "waves": [10, 200]}`, 400, "over 100"},
		{"bake too long", "POST", wire.RolloutsPath, jsonType, `{"selector": {"pool": "web"}, "kind": "agent", "version": "2", "bake": "48h"}`, 400, "outside 1s to 24h"},
		{"unknown field", "POST", wire.RolloutsPath, jsonType, `{"selector": {"pool": "web"}, "kind": "agent", "version": "2", "force": true}`, 400, `unknown field "force"`},
		{"kind and flavor", "POST", wire.RolloutsPath, jsonType, `{"selector": {"pool": "web"}, "kind": "agent", "flavor": "docker", "version": "2"}`, 400, "only engine rollouts have a flavor"},
		{"huge body", "POST", wire.RolloutsPath, jsonType, huge, 413, "over the limit"},
		{"not JSON", "POST", wire.RolloutsPath, "text/plain", `{}`, 415, "send application/json"},
		{"no content type", "POST", wire.RolloutsPath, "", `{}`, 415, "no Content-Type"},
		{"query on the list", "GET", wire.RolloutsPath + "?state=running", "", "", 400, "no query parameters"},
		{"unknown rollout", "GET", wire.RolloutsPath + "/nope", "", "", 404, `no rollout "nope"`},
		{"pause an unknown rollout", "POST", wire.RolloutsPath + "/nope/pause", "", "", 404, `no rollout "nope"`},
		{"unknown action", "POST", wire.RolloutsPath + "/" + ro.ID + "/restart", "", "", 404, "no API endpoint"},
		{"action with an unknown field", "POST", wire.RolloutsPath + "/" + ro.ID + "/pause", jsonType, `{"reason": "x", "force": true}`, 400, `unknown field "force"`},
		{"action with two objects", "POST", wire.RolloutsPath + "/" + ro.ID + "/pause", jsonType, `{}{}`, 400, "data after the JSON object"},
		{"reason too long", "POST", wire.RolloutsPath + "/" + ro.ID + "/pause", jsonType, `{"reason": "` + strings.Repeat("r", wire.MaxReasonLen+1) + `"}`, 400, "over the limit of 1024"},
		{"action body too large", "POST", wire.RolloutsPath + "/" + ro.ID + "/abort", jsonType, `{"reason": "` + strings.Repeat("r", 20<<10) + `"}`, 413, "over the limit"},
		{"wrong method", "DELETE", wire.RolloutsPath, "", "", 405, "use POST, GET, HEAD"},
		{"empty pin", "PUT", "/v1/hosts/vm-a/pin", jsonType, `{}`, 400, "a pin names a version"},
		{"pin without a body", "PUT", "/v1/hosts/vm-a/pin", jsonType, ``, 400, "empty body"},
		{"pin of a bad version", "PUT", "/v1/hosts/vm-a/pin", jsonType, `{"engine": "../../etc"}`, 400, "engine: "},
		{"pin of a flavor", "PUT", "/v1/hosts/vm-a/pin", jsonType, `{"engine": "25.0.1", "flavor": "containerd"}`, 400, `unknown field "flavor"`},
		{"pin of a bad host id", "PUT", "/v1/hosts/vm%20a/pin", jsonType, `{"engine": "25.0.1"}`, 400, "host id in the path"},
		{"unpin of a bad kind", "DELETE", "/v1/hosts/vm-a/pin?kind=kernel", "", "", 400, `kind="kernel": want engine or agent`},
		{"unpin with two kinds", "DELETE", "/v1/hosts/vm-a/pin?kind=engine&kind=agent", "", "", 400, "kind given 2 times"},
		{"unpin with another parameter", "DELETE", "/v1/hosts/vm-a/pin?all=true", "", "", 400, `unknown query parameter "all"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			rq := request{Method: c.method, Path: c.path, Token: f.Operator, Header: map[string]string{}}
			if c.ctype != "" {
				rq.Header["Content-Type"] = c.ctype
			}
			if c.body != "" {
				rq.Body = strings.NewReader(c.body)
			}
			r := f.do(t, rq)
			if r.Status != c.status {
				t.Fatalf("status %d, want %d: %s", r.Status, c.status, fmtBody(r.Body))
			}
			if e := r.wireError(t); !contains(e.Message, c.says) {
				t.Errorf("message %q does not say %q", e.Message, c.says)
			}
		})
	}
	f.stillUp(t, 2)
}

// TestPinsThroughTheAPI: a pin is set member by member, answered with
// the host's pins, and removed by kind or whole.
func TestPinsThroughTheAPI(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	f.ack(t, f.AgentA, "vm-a", heartbeat(1, "Healthy", map[string]string{"pool": "web"}))
	pin := func(method, path, body string) wire.Pin {
		t.Helper()
		r := f.send(t, method, path, f.Operator, body)
		var p wire.Pin
		if r.Status != 200 || json.Unmarshal(r.Body, &p) != nil {
			t.Fatalf("%s %s: %d %s", method, path, r.Status, r.Body)
		}
		return p
	}
	steps := []struct {
		method, path, body string
		want               wire.Pin
	}{
		{http.MethodPut, "/v1/hosts/vm-a/pin", `{"engine": "24.0.7"}`, wire.Pin{Engine: "24.0.7"}},
		{http.MethodPut, "/v1/hosts/vm-a/pin", `{"agent": "1.2.3"}`, wire.Pin{Engine: "24.0.7", Agent: "1.2.3"}},
		{http.MethodDelete, "/v1/hosts/vm-a/pin?kind=engine", "", wire.Pin{Agent: "1.2.3"}},
		{http.MethodPut, "/v1/hosts/vm-a/pin", `{"engine": "24.0.6", "agent": "1.2.4"}`, wire.Pin{Engine: "24.0.6", Agent: "1.2.4"}},
		{http.MethodDelete, "/v1/hosts/vm-a/pin", "", wire.Pin{}},
	}
	for _, s := range steps {
		if got := pin(s.method, s.path, s.body); got != s.want {
			t.Errorf("%s %s %s: %+v, want %+v", s.method, s.path, s.body, got, s.want)
		}
	}
}

// TestRolloutThroughTheAPI: a rollout created through the API tells its
// host at once (one wave of 100%), which the host's long poll sees; an
// overlapping rollout is 409; pause, resume and abort are kept in the
// history with who and why; abort sends the host back.
func TestRolloutThroughTheAPI(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	f.ack(t, f.AgentA, "vm-a", heartbeat(1, "Healthy", map[string]string{"pool": "web"}))
	etag := f.desired(t, f.AgentA, "vm-a", "", "").Header.Get("ETag")
	got := make(chan response, 1)
	go func() { got <- f.desired(t, f.AgentA, "vm-a", etag, "?wait=30s") }()
	time.Sleep(100 * time.Millisecond)

	r := f.send(t, http.MethodPost, wire.RolloutsPath, f.Operator,
		`{"selector": {"pool": "web"}, "kind": "engine", "flavor": "docker", "version": "25.0.1", "waves": [100], "bake": "1s"}`)
	var ro wire.Rollout
	if r.Status != http.StatusCreated || json.Unmarshal(r.Body, &ro) != nil {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	if ro.CreatedBy != "alice" || ro.Hosts != 1 || ro.State != wire.RolloutRunning {
		t.Errorf("created: by %q, %d hosts, %s", ro.CreatedBy, ro.Hosts, ro.State)
	}
	var d wire.Desired
	select {
	case r := <-got:
		if r.Status != 200 || json.Unmarshal(r.Body, &d) != nil || d.Engine == nil || d.Engine.Version != "25.0.1" ||
			len(d.Rollouts) != 1 || d.Rollouts[0] != ro.ID {
			t.Fatalf("the poll after the wave started: %d %s", r.Status, r.Body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the host's poll did not see its wave start")
	}

	for _, c := range []struct {
		name, body, says string
		status           int
	}{
		{"overlapping rollout of the same kind", `{"selector": {"pool": "web"}, "kind": "engine", "flavor": "docker", "version": "26.0.0"}`, ro.ID, 409},
		{"selector matching no host", `{"selector": {"pool": "db"}, "kind": "agent", "version": "2.0.0"}`, "selector", 400},
	} {
		r := f.send(t, http.MethodPost, wire.RolloutsPath, f.Operator, c.body)
		if r.Status != c.status || !contains(r.wireError(t).Message, c.says) {
			t.Errorf("%s: %d %s, want %d naming %q", c.name, r.Status, r.Body, c.status, c.says)
		}
	}

	act := func(action, reason string, status int) wire.Rollout {
		t.Helper()
		r := f.send(t, http.MethodPost, wire.RolloutsPath+"/"+ro.ID+"/"+action, f.Operator, `{"reason": "`+reason+`"}`)
		var v wire.Rollout
		if r.Status != status {
			t.Fatalf("%s: %d %s, want %d", action, r.Status, r.Body, status)
		}
		_ = json.Unmarshal(r.Body, &v)
		return v
	}
	if v := act("pause", "change freeze", 200); v.State != wire.RolloutPaused {
		t.Errorf("after pause: %s", v.State)
	}
	if v := act("resume", "freeze over", 200); v.State != wire.RolloutRunning {
		t.Errorf("after resume: %s", v.State)
	}
	if v := act("abort", "wrong version", 200); v.State != wire.RolloutAborted {
		t.Errorf("after abort: %s", v.State)
	}
	if r := f.send(t, http.MethodPost, wire.RolloutsPath+"/"+ro.ID+"/resume", f.Operator, ""); r.Status != 409 {
		t.Errorf("resume after abort: %d %s, want 409", r.Status, r.Body)
	}
	var final wire.Rollout
	f.getJSON(t, wire.RolloutsPath+"/"+ro.ID, &final)
	want := map[string]string{wire.ActionPause: "change freeze", wire.ActionResume: "freeze over", wire.ActionAbort: "wrong version"}
	for _, h := range final.History {
		if reason, ok := want[h.Action]; ok {
			if h.Who != "alice" || !strings.Contains(h.Reason, reason) {
				t.Errorf("history %s: by %q, reason %q", h.Action, h.Who, h.Reason)
			}
			delete(want, h.Action)
		}
	}
	if len(want) > 0 {
		t.Errorf("history lacks %v: %+v", want, final.History)
	}
	// Aborted, the host is sent back to what it ran before.
	r = f.desired(t, f.AgentA, "vm-a", "", "")
	if json.Unmarshal(r.Body, &d) != nil || d.Engine == nil || d.Engine.Version != "24.0.7" {
		t.Errorf("after abort the host should go back to 24.0.7: %s", r.Body)
	}
	var l wire.RolloutList
	f.getJSON(t, wire.RolloutsPath, &l)
	if len(l.Rollouts) != 1 || l.Rollouts[0].ID != ro.ID {
		t.Errorf("list: %+v", l)
	}
	if r := f.send(t, http.MethodPut, "/v1/hosts/vm-nowhere/pin", f.Operator, `{"engine": "25.0.1"}`); r.Status != 404 {
		t.Errorf("pin of a host that never reported: %d %s", r.Status, r.Body)
	}
}
