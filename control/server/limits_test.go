package server_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/berthhq/berth/control/auth"
	"github.com/berthhq/berth/control/server"
	"github.com/berthhq/berth/control/wire"
)

// slowBody opens a connection to the fixture's server and starts a report
// as agent token whose body announces length bytes and sends one: a
// client that trickles, or a hostile one that holds what it can.
func slowBody(t testing.TB, f *fixture, token string, length int) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(f.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: control\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{", wire.ReportsPath, token, length)
	return c
}

// TestSlowBodiesDoNotStarveOthers is issue 9's attack on ingest: host A
// opens 256 reports whose bodies announce 100,000 bytes and send one;
// host B's report must still be taken at once (it used to wait 2 s for a
// report slot and be told 429).
func TestSlowBodiesDoNotStarveOthers(t *testing.T) {
	const bodyTimeout = 3 * time.Second
	f := newFixture(t, fixtureOptions{Quiet: true, Options: func(o *server.Options) { o.BodyTimeout = bodyTimeout }})
	conns := make([]net.Conn, 256)
	for i := range conns {
		conns[i] = slowBody(t, f, f.AgentA, 100_000)
	}
	// Let every one of them reach the handler.
	time.Sleep(1500 * time.Millisecond)
	start := time.Now()
	r := f.post(t, f.AgentB, batchJSON(t, "vm-b", heartbeat(1, "Healthy", nil)), nil)
	took := time.Since(start)
	if r.Status != http.StatusOK {
		t.Fatalf("host B's report during host A's slow bodies: status %d after %v: %s", r.Status, took.Round(time.Millisecond), r.Body)
	}
	if took > time.Second {
		t.Errorf("host B's report took %v during host A's slow bodies, want it prompt", took.Round(time.Millisecond))
	}
	// Host A has a few reports in progress, and was told 429 for the rest
	// at once; the few are answered 408 once their deadline passes.
	statuses := map[int]int{}
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(bodyTimeout + 5*time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			statuses[0]++ // the connection dropped
			continue
		}
		resp.Body.Close()
		statuses[resp.StatusCode]++
		if resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") == "" {
			t.Errorf("429 without Retry-After")
		}
	}
	want := map[int]int{http.StatusTooManyRequests: 256 - server.DefaultPerIdentity, http.StatusRequestTimeout: server.DefaultPerIdentity}
	if diff := cmp.Diff(want, statuses); diff != "" {
		t.Errorf("host A's slow reports, by status (-want +got):\n%s", diff)
	}
	f.stillUp(t, 1)
}

// TestQuotaRefusesFlood is issue 9's attack on the database: one agent
// token sends 20 batches of 1,000 events with 4 KB messages (80 MB). Past
// the agent's quota of a minute they must be refused with 429 and a
// Retry-After, and not stored.
func TestQuotaRefusesFlood(t *testing.T) {
	f := newFixture(t, fixtureOptions{Quiet: true})
	msg := strings.Repeat("x", 4000)
	seq := uint64(time.Now().UnixMicro())
	var stored, refused int
	for range 20 {
		recs := make([]wire.Record, 1000)
		for i := range recs {
			seq++
			recs[i] = wire.Record{Seq: seq, Kind: wire.KindEvent, Time: time.Now().UTC(), Event: &wire.Event{Kind: "flood", Message: msg}}
		}
		r := f.post(t, f.AgentA, gzipped(t, batchJSON(t, "vm-a", recs...)), map[string]string{"Content-Encoding": "gzip"})
		switch r.Status {
		case http.StatusOK:
			stored++
		case http.StatusTooManyRequests:
			refused++
			if r.Header.Get("Retry-After") == "" {
				t.Errorf("429 without Retry-After")
			}
			if e := r.wireError(t); e.Code != wire.CodeRateLimited {
				t.Errorf("429 with code %q, want %q", e.Code, wire.CodeRateLimited)
			}
		default:
			t.Fatalf("batch: status %d: %s", r.Status, fmtBody(r.Body))
		}
	}
	// The quota is 600 records and 4 MiB a minute: the first batch fits a
	// full allowance (and overdraws it), no other.
	if stored > 1 || refused < 19 {
		t.Errorf("%d of 20 batches of 1,000 4 KB events stored, %d refused; want at most 1 stored", stored, refused)
	}
	var d wire.HostDetail
	f.getJSON(t, "/v1/hosts/vm-a?history=500", &d)
	if len(d.Events) > 500 {
		t.Errorf("host holds %d events", len(d.Events))
	}
	// Another agent is not held back by it.
	f.ack(t, f.AgentB, "vm-b", heartbeat(1, "Healthy", nil))
}

// TestUnreachableSeq is issue 9's wedge: a record numbered 2^63-1 used to
// be stored, after which the real agent's numbers were below it and
// refused with 409 for ever. No agent's clock-seeded numbering reaches it:
// it is refused with 400, and the agent's next report is taken.
func TestUnreachableSeq(t *testing.T) {
	f := newFixture(t, fixtureOptions{Quiet: true})
	for _, seq := range []uint64{1<<63 - 1, 1 << 62, uint64(time.Now().Add(wire.MaxClockSkewAhead + time.Hour).UnixMicro())} {
		r := f.post(t, f.AgentA, batchJSON(t, "vm-a", heartbeat(seq, "Healthy", nil)), nil)
		if r.Status != http.StatusBadRequest {
			t.Fatalf("seq %d: status %d, want 400: %s", seq, r.Status, r.Body)
		}
		if e := r.wireError(t); !strings.Contains(e.Message, "records[0].seq") {
			t.Errorf("seq %d: message %q does not name the field", seq, e.Message)
		}
	}
	f.ack(t, f.AgentA, "vm-a", heartbeat(uint64(time.Now().UnixMicro()), "Healthy", nil))
}

// TestForgetHost: an agent whose numbering went back gets 409 until an
// operator forgets its host; then its reports are taken again.
func TestForgetHost(t *testing.T) {
	f := newFixture(t, fixtureOptions{Quiet: true})
	f.ack(t, f.AgentA, "vm-a", heartbeat(1000, "Healthy", nil), event(1001, "engine.installed"))
	if r := f.post(t, f.AgentA, batchJSON(t, "vm-a", heartbeat(5, "Healthy", nil)), nil); r.Status != http.StatusConflict {
		t.Fatalf("seq 5 below 1001: status %d, want 409", r.Status)
	}
	del := func(token, path string) response {
		return f.do(t, request{Method: http.MethodDelete, Path: path, Token: token})
	}
	for _, c := range []struct {
		token, path string
		status      int
		msg         string
	}{
		{f.AgentA, "/v1/hosts/vm-a", http.StatusForbidden, "needs an operator token"},
		{"", "/v1/hosts/vm-a", http.StatusUnauthorized, ""},
		{f.Operator, "/v1/hosts/vm-z", http.StatusNotFound, `no host "vm-z" to forget`},
		{f.Operator, "/v1/hosts/vm-a?dropHistory=yes", http.StatusBadRequest, `dropHistory="yes"`},
		{f.Operator, "/v1/hosts/vm-a?history=drop", http.StatusBadRequest, `unknown query parameter "history"`},
	} {
		r := del(c.token, c.path)
		if r.Status != c.status || !contains(r.wireError(t).Message, c.msg) {
			t.Errorf("DELETE %s: status %d %s, want %d saying %q", c.path, r.Status, fmtBody(r.Body), c.status, c.msg)
		}
	}
	r := del(f.Operator, "/v1/hosts/vm-a")
	var got wire.Forgotten
	if r.Status != http.StatusOK || json.Unmarshal(r.Body, &got) != nil || got != (wire.Forgotten{ID: "vm-a"}) {
		t.Fatalf("DELETE /v1/hosts/vm-a: status %d %s", r.Status, fmtBody(r.Body))
	}
	if ack := f.ack(t, f.AgentA, "vm-a", heartbeat(5, "Degraded", nil)); ack.UpTo != 5 || ack.Stored != 1 {
		t.Errorf("first report after forget: %+v", ack)
	}
	var d wire.HostDetail
	f.getJSON(t, "/v1/hosts/vm-a", &d)
	if d.LastSeq != 5 || len(d.History) != 2 || len(d.Events) != 1 {
		t.Errorf("after forget (history kept) and a report: lastSeq %d, %d heartbeats, %d events; want 5, 2, 1", d.LastSeq, len(d.History), len(d.Events))
	}
	r = del(f.Operator, "/v1/hosts/vm-a?dropHistory=true")
	if r.Status != http.StatusOK || json.Unmarshal(r.Body, &got) != nil || got != (wire.Forgotten{ID: "vm-a", HistoryDropped: true, Heartbeats: 2, Events: 1}) {
		t.Fatalf("DELETE ?dropHistory=true: status %d %s", r.Status, fmtBody(r.Body))
	}
	if r := f.do(t, request{Path: "/v1/hosts/vm-a", Token: f.Operator}); r.Status != http.StatusNotFound {
		t.Errorf("GET after forget: status %d, want 404", r.Status)
	}
	if r := f.do(t, request{Method: http.MethodPut, Path: "/v1/hosts/vm-a", Token: f.Operator}); r.Status != http.StatusMethodNotAllowed || !strings.Contains(r.Header.Get("Allow"), "DELETE") {
		t.Errorf("PUT /v1/hosts/vm-a: status %d Allow %q", r.Status, r.Header.Get("Allow"))
	}
	if !strings.Contains(f.Logs.String(), `"msg":"host forgotten"`) {
		t.Errorf("forgetting a host is not logged")
	}
}

func TestParseDropHistory(t *testing.T) {
	for _, c := range []struct {
		q    string
		want bool
		err  string
	}{
		{"", false, ""},
		{"dropHistory=false", false, ""},
		{"dropHistory=true", true, ""},
		{"dropHistory=TRUE", false, "want true or false"},
		{"dropHistory=1", false, "want true or false"},
		{"dropHistory=true&dropHistory=true", false, "given 2 times"},
		{"drop=true", false, `unknown query parameter "drop"`},
	} {
		q, _ := url.ParseQuery(c.q)
		got, err := server.ParseDropHistory(q)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: %v, want an error saying %q", c.q, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%q: %v, %v; want %v", c.q, got, err, c.want)
		}
	}
}

// TestGCRA is the quota's decision for one measure: an allowance of 600 a
// minute, so 100 ms each.
func TestGCRA(t *testing.T) {
	const limit, window = 600, time.Minute
	now := int64(1_000_000 * time.Second)
	for _, c := range []struct {
		name    string
		due     int64
		cost    int64
		limit   int64
		wantDue int64
		wait    time.Duration
		ok      bool
	}{
		{"fresh: whole allowance", 0, 1, limit, now + int64(100*time.Millisecond), 0, true},
		{"due in the past is whole", now - int64(time.Hour), 10, limit, now + int64(time.Second), 0, true},
		{"a batch larger than the allowance overdraws it once", 0, 1000, limit, now + int64(100*time.Second), 0, true},
		{"some left", now + int64(59*time.Second), 600, limit, now + int64(119*time.Second), 0, true},
		{"none left: wait until some is", now + int64(100*time.Second), 1, limit, now + int64(100*time.Second), 40*time.Second + 1, false},
		{"exactly none left", now + int64(window), 1, limit, now + int64(window), 1, false},
		{"no limit", now + int64(time.Hour), 1 << 40, 0, now + int64(time.Hour), 0, true},
	} {
		due, wait, ok := server.GCRA(c.due, now, c.cost, c.limit, window)
		if due != c.wantDue || wait != c.wait || ok != c.ok {
			t.Errorf("%s: gcra = %v, %v, %v; want %v, %v, %v", c.name, time.Duration(due-now), wait, ok, time.Duration(c.wantDue-now), c.wait, c.ok)
		}
	}
}

// TestIdentityOf: what the per-identity bound counts a report against.
func TestIdentityOf(t *testing.T) {
	for _, c := range []struct {
		p    auth.Principal
		want string
	}{
		{auth.Principal{Method: auth.MethodToken, Role: "agent", Subject: "vm-1", Agent: "vm-1"}, "agent vm-1"},
		{auth.Principal{Method: auth.MethodEntra, Role: "agent", Subject: "oid-1"}, "entra oid-1"},
		// Two Entra principals binding to one agent id are two identities.
		{auth.Principal{Method: auth.MethodEntra, Role: "agent", Subject: "oid-2"}, "entra oid-2"},
		{auth.Anonymous, ""},
	} {
		if got := server.IdentityOf(c.p); got != c.want {
			t.Errorf("identityOf(%+v) = %q, want %q", c.p, got, c.want)
		}
	}
}
