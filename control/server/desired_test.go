package server_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/berthhq/berth/control/auth"
	"github.com/berthhq/berth/control/server"
	"github.com/berthhq/berth/control/wire"
	"github.com/berthhq/berth/internal/testenv/postgres"
)

// desired GETs host's desired state with token and the given
// If-None-Match ("" for none) and query.
func (f *fixture) desired(t testing.TB, token, host, inm, query string) response {
	t.Helper()
	h := map[string]string{}
	if inm != "" {
		h["If-None-Match"] = inm
	}
	return f.do(t, request{Path: wire.DesiredPath(host) + query, Token: token, Header: h})
}

// pin pins host's engine to version as the operator.
func (f *fixture) pin(t testing.TB, host, version string) {
	t.Helper()
	r := f.do(t, request{Method: http.MethodPut, Path: "/v1/hosts/" + host + "/pin", Token: f.Operator,
		Header: map[string]string{"Content-Type": "application/json"}, Body: strings.NewReader(`{"engine": "` + version + `"}`)})
	if r.Status != http.StatusOK {
		t.Fatalf("pin %s: status %d: %s", host, r.Status, r.Body)
	}
}

// TestDesiredOnlyTheHost: only the host's own identity reads its desired
// state; a host reading another's, an operator, and nobody are refused.
func TestDesiredOnlyTheHost(t *testing.T) {
	f, e := entraFixture(t, "")
	f.ack(t, f.AgentA, "vm-a", heartbeat(1, "Healthy", nil))
	first := e.Mint(e.Claims(entraAudience, "11111111-1111-4111-8111-111111111111"))
	second := e.Mint(e.Claims(entraAudience, "22222222-2222-4222-8222-222222222222"))
	f.ack(t, first, "vm-e", heartbeat(1, "Healthy", nil))
	for _, c := range []struct {
		name, token, host string
		status            int
		says              string
	}{
		{"its own agent token", f.AgentA, "vm-a", 200, ""},
		{"another host's agent token", f.AgentB, "vm-a", 403, "token for host vm-b cannot read the desired state of host vm-a"},
		{"an operator", f.Operator, "vm-a", 403, "only the host's own identity"},
		{"no token", "", "vm-a", 401, ""},
		{"a bad token", "not-a-token", "vm-a", 401, ""},
		{"its bound Entra identity", first, "vm-e", 200, ""},
		{"the bound Entra identity as another host", first, "vm-a", 403, "vm-a"},
		{"another Entra identity as the bound host", second, "vm-e", 403, "vm-e"},
		{"a malformed host id", f.AgentA, "vm%20a", 400, "host id in the path"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := f.desired(t, c.token, c.host, "", "")
			if r.Status != c.status {
				t.Fatalf("status %d, want %d: %s", r.Status, c.status, r.Body)
			}
			if c.status != 200 {
				if e := r.wireError(t); !contains(e.Message, c.says) {
					t.Errorf("message %q does not say %q", e.Message, c.says)
				}
			}
		})
	}
	// A refused Entra read bound nothing: the second identity may still
	// take a fresh host.
	if r := f.desired(t, second, "vm-g", "", ""); r.Status != 200 {
		t.Errorf("second identity on a fresh host: %d %s", r.Status, r.Body)
	}
}

// TestDesiredLongPoll: the ETag, If-None-Match in its forms, a wait that
// ends 304, and a change that ends the wait at once.
func TestDesiredLongPoll(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	f.ack(t, f.AgentA, "vm-a", heartbeat(1, "Healthy", nil))
	f.ack(t, f.AgentB, "vm-b", heartbeat(1, "Healthy", nil))
	r := f.desired(t, f.AgentA, "vm-a", "", "")
	etag := r.Header.Get("ETag")
	if r.Status != 200 || len(etag) < 3 || etag[0] != '"' || etag[len(etag)-1] != '"' {
		t.Fatalf("status %d, ETag %q: want 200 and a quoted ETag", r.Status, etag)
	}
	if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q", cc)
	}
	if got := strings.TrimSpace(string(r.Body)); got != `{"rollouts":[]}` {
		t.Errorf("no opinion: body %s", got)
	}
	bare := strings.Trim(etag, `"`)
	for _, c := range []struct {
		name, inm, query string
		status           int
		atLeast          time.Duration
	}{
		{"same tag, no wait", etag, "?wait=0s", 304, 0},
		{"weak form", "W/" + etag, "?wait=0s", 304, 0},
		{"unquoted", bare, "?wait=0s", 304, 0},
		{"in a list", `"x", ` + etag, "?wait=0s", 304, 0},
		{"any", "*", "?wait=0s", 304, 0},
		{"another tag answers at once", `"other"`, "?wait=5m", 200, 0},
		{"a tag too long to be ours", `"` + strings.Repeat("a", 200) + `"`, "?wait=5m", 200, 0},
		{"same tag waits, then 304", etag, "?wait=300ms", 304, 300 * time.Millisecond},
	} {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			r := f.desired(t, f.AgentA, "vm-a", c.inm, c.query)
			took := time.Since(start)
			if r.Status != c.status {
				t.Fatalf("status %d, want %d: %s", r.Status, c.status, r.Body)
			}
			if took < c.atLeast || took > c.atLeast+2*time.Second {
				t.Errorf("answered after %s, want %s", took, c.atLeast)
			}
			if got := r.Header.Get("ETag"); got != etag {
				t.Errorf("ETag %q, want %q", got, etag)
			}
			if c.status == 304 && len(r.Body) != 0 {
				t.Errorf("304 with a body: %s", r.Body)
			}
		})
	}

	// A change ends the wait at once; a change of another host does not.
	got := make(chan response, 1)
	go func() { got <- f.desired(t, f.AgentA, "vm-a", etag, "?wait=1m") }()
	time.Sleep(200 * time.Millisecond)
	f.pin(t, "vm-b", "26.0.0")
	select {
	case r := <-got:
		t.Fatalf("another host's change answered vm-a's poll: %d %s", r.Status, r.Body)
	case <-time.After(300 * time.Millisecond):
	}
	start := time.Now()
	f.pin(t, "vm-a", "25.0.1")
	r = <-got
	if took := time.Since(start); took > time.Second {
		t.Errorf("the change reached the poll after %s", took)
	}
	var d wire.Desired
	if r.Status != 200 || json.Unmarshal(r.Body, &d) != nil || d.Engine == nil || d.Engine.Version != "25.0.1" {
		t.Fatalf("after the pin: %d %s", r.Status, r.Body)
	}
	if r.Header.Get("ETag") == etag {
		t.Errorf("the ETag did not change: %s", etag)
	}
}

func TestDesiredBadQuery(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	for _, c := range []struct{ query, says string }{
		{"?wait=abc", `wait="abc": want a duration`},
		{"?wait=-1s", `wait="-1s"`},
		{"?wait=1s&wait=2s", "wait given 2 times"},
		{"?timeout=1s", `unknown query parameter "timeout"`},
	} {
		r := f.desired(t, f.AgentA, "vm-a", `"x"`, c.query)
		if r.Status != 400 || !contains(r.wireError(t).Message, c.says) {
			t.Errorf("%s: %d %s, want 400 saying %q", c.query, r.Status, r.Body, c.says)
		}
	}
	for _, c := range []struct {
		query       string
		conditional bool
		want        time.Duration
	}{
		{"", true, wire.DefaultWait},
		{"", false, 0},
		{"wait=0", true, 0},
		{"wait=90s", true, 90 * time.Second},
		{"wait=1h", true, wire.MaxWait},
	} {
		q, _ := url.ParseQuery(c.query)
		if got, err := server.ParseWait(q, c.conditional); err != nil || got != c.want {
			t.Errorf("parseWait(%q, %v) = %s, %v; want %s", c.query, c.conditional, got, err, c.want)
		}
	}
}

// TestDesiredPollsPerIdentity: one identity holds a few polls, not
// thousands; a poll past the bound ends the identity's oldest (an agent
// restarted while its old poll still waits is not refused), and other
// identities are not affected.
func TestDesiredPollsPerIdentity(t *testing.T) {
	f := newFixture(t, fixtureOptions{Options: func(o *server.Options) { o.PollsPerIdentity = 2 }})
	f.ack(t, f.AgentA, "vm-a", heartbeat(1, "Healthy", nil))
	f.ack(t, f.AgentB, "vm-b", heartbeat(1, "Healthy", nil))
	etag := f.desired(t, f.AgentA, "vm-a", "", "").Header.Get("ETag")
	answers := make([]chan response, 3)
	for i := range answers {
		answers[i] = make(chan response, 1)
		go func() { answers[i] <- f.desired(t, f.AgentA, "vm-a", etag, "?wait=1m") }()
		time.Sleep(200 * time.Millisecond)
	}
	other := make(chan response, 1)
	go func() { other <- f.desired(t, f.AgentB, "vm-b", etag, "?wait=1m") }()
	select {
	case r := <-answers[0]:
		if r.Status != http.StatusNotModified {
			t.Errorf("the oldest poll, ended by the third: %d %s", r.Status, r.Body)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the third poll of one identity did not end its oldest")
	}
	f.pin(t, "vm-a", "25.0.1")
	for _, ch := range answers[1:] {
		if r := <-ch; r.Status != 200 {
			t.Errorf("a held poll answered %d after the change: %s", r.Status, r.Body)
		}
	}
	select {
	case r := <-other:
		t.Errorf("another identity's poll ended: %d %s", r.Status, r.Body)
	default:
	}
	f.pin(t, "vm-b", "25.0.1")
	if r := <-other; r.Status != 200 {
		t.Errorf("vm-b after its change: %d", r.Status)
	}
}

// serveOn serves f's server with Serve, as berth-control serve does, and
// returns its URL and the stop.
func serveOn(t *testing.T, f *fixture) (*fixture, func() error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Server.Serve(ctx, ln) }()
	g := *f
	g.URL = "http://" + ln.Addr().String()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		return <-done
	}
	t.Cleanup(func() { stop() })
	return &g, stop
}

// TestLongPollOutlivesConnTimeouts: a poll waits past the connections'
// read and write timeouts (a minute in production; here 300 ms).
func TestLongPollOutlivesConnTimeouts(t *testing.T) {
	defer server.SetConnTimeout(300 * time.Millisecond)()
	f, _ := serveOn(t, newFixture(t, fixtureOptions{}))
	f.ack(t, f.AgentA, "vm-a", heartbeat(1, "Healthy", nil))
	etag := f.desired(t, f.AgentA, "vm-a", "", "").Header.Get("ETag")
	start := time.Now()
	r := f.desired(t, f.AgentA, "vm-a", etag, "?wait=1200ms")
	if r.Status != 304 || time.Since(start) < 1200*time.Millisecond {
		t.Fatalf("poll past the timeouts: %d after %s: %s", r.Status, time.Since(start), r.Body)
	}
	got := make(chan response, 1)
	go func() { got <- f.desired(t, f.AgentA, "vm-a", etag, "?wait=5s") }()
	time.Sleep(900 * time.Millisecond)
	f.pin(t, "vm-a", "25.0.1")
	if r := <-got; r.Status != 200 {
		t.Fatalf("change after the timeouts: %d %s", r.Status, r.Body)
	}
}

// TestShutdownAnswersLongPolls: a server shutting down answers its open
// polls 304 at once instead of holding the shutdown for their wait.
func TestShutdownAnswersLongPolls(t *testing.T) {
	f, stop := serveOn(t, newFixture(t, fixtureOptions{Methods: []auth.Method{auth.MethodNone}}))
	etag := f.desired(t, "", "vm-a", "", "").Header.Get("ETag")
	const n = 20
	got := make(chan response, n)
	for i := range n {
		go func() {
			host := "vm-" + string(rune('a'+i))
			got <- f.desired(t, "", host, etag, "?wait=5m")
		}()
	}
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	if err := stop(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("shutdown took %s with polls open", took)
	}
	for range n {
		r := <-got
		if r.Status != 304 || !r.Close {
			t.Errorf("a poll at shutdown: %d, connection closed %v", r.Status, r.Close)
		}
	}
}

// TestLongPollAcrossReplicas: two servers on one PostgreSQL, each with its
// controller; a poll held by one is answered when the other pins the
// host, and when a rollout created on the other starts the host's wave.
func TestLongPollAcrossReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: no PostgreSQL")
	}
	dsn := postgres.Start(t).NewDatabase(t)
	a := newFixture(t, fixtureOptions{DSN: dsn})
	b := newFixture(t, fixtureOptions{DSN: dsn})
	a.ack(t, a.AgentA, "vm-a", heartbeat(1, "Healthy", map[string]string{"pool": "web"}))
	for _, c := range []struct {
		name   string
		change func()
		check  func(wire.Desired) bool
	}{
		{"a pin on the other replica", func() { b.pin(t, "vm-a", "25.0.1") },
			func(d wire.Desired) bool { return d.Engine != nil && d.Engine.Version == "25.0.1" }},
		{"a rollout created on the other replica", func() {
			r := b.send(t, http.MethodPost, wire.RolloutsPath, b.Operator, `{"selector": {"pool": "web"}, "kind": "agent", "version": "2.0.0", "waves": [100], "bake": "1s"}`)
			if r.Status != http.StatusCreated {
				t.Errorf("create on b: %d %s", r.Status, r.Body)
			}
		}, func(d wire.Desired) bool { return d.Agent != nil && d.Agent.Version == "2.0.0" && len(d.Rollouts) == 1 }},
	} {
		t.Run(c.name, func(t *testing.T) {
			etag := a.desired(t, a.AgentA, "vm-a", "", "").Header.Get("ETag")
			got := make(chan response, 1)
			go func() { got <- a.desired(t, a.AgentA, "vm-a", etag, "?wait=1m") }()
			time.Sleep(300 * time.Millisecond)
			start := time.Now()
			c.change()
			select {
			case r := <-got:
				var d wire.Desired
				if r.Status != 200 || json.Unmarshal(r.Body, &d) != nil || !c.check(d) {
					t.Fatalf("poll on a: %d %s", r.Status, r.Body)
				}
				t.Logf("answered %s after the change on the other replica", time.Since(start).Round(time.Millisecond))
				if took := time.Since(start); took > 3*time.Second {
					t.Errorf("answered %s after the change; the feed is read every 250 ms", took)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("the poll on a never saw the change made on b")
			}
		})
	}
}
