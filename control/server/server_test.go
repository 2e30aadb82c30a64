package server_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/berthhq/berth/control/server"
	"github.com/berthhq/berth/control/wire"
	"github.com/berthhq/berth/internal/testenv/postgres"
)

// gzipBomb is a gzip body that decompresses to a batch opening followed
// by size bytes of spaces, made of repeated gzip members so that building
// it costs little.
func gzipBomb(t testing.TB, size int) []byte {
	t.Helper()
	member := func(data []byte) []byte {
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		zw.Write(data)
		zw.Close()
		return buf.Bytes()
	}
	const chunk = 1 << 20
	spaces := member(bytes.Repeat([]byte(" "), chunk))
	out := member([]byte(`{"agent":"vm-a","records":[`))
	for range size / chunk {
		out = append(out, spaces...)
	}
	return out
}

func zerosBomb(t testing.TB, size int) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	zero := make([]byte, 1<<20)
	for range size / len(zero) {
		zw.Write(zero)
	}
	zw.Close()
	return buf.Bytes()
}

// TestHostileInput sends what a broken or hostile client might and checks
// the status, the code and that the message says what was wrong, then
// that the server still serves.
func TestHostileInput(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	big := make([]byte, 0, 5<<20)
	big = append(big, `{"agent":"vm-a","records":[`...)
	big = append(big, bytes.Repeat([]byte(" "), 5<<20)...)
	big = append(big, "]}"...)
	// Stored, not compressed: over the limit on the wire, while what it
	// decompresses to is a valid start of a batch.
	var stored bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&stored, gzip.NoCompression)
	zw.Write(big)
	zw.Close()
	incompressible := stored.Bytes()
	f.ack(t, f.AgentA, "vm-a", heartbeat(10, "Healthy", nil), heartbeat(11, "Healthy", nil))

	json := map[string]string{"Content-Type": "application/json"}
	gz := map[string]string{"Content-Type": "application/json", "Content-Encoding": "gzip"}
	good := func() []byte { return batchJSON(t, "vm-a", heartbeat(20, "Healthy", nil)) }
	tests := []struct {
		name   string
		rq     request
		status int
		code   string
		msg    string
	}{
		{"malformed JSON", request{Token: f.AgentA, Header: json, Body: strings.NewReader(`{"agent":"vm-a","records":[{`)}, 400, wire.CodeBadRequest, "JSON ends early"},
		{"syntax error", request{Token: f.AgentA, Header: json, Body: strings.NewReader(`{"agent":"vm-a",,}`)}, 400, wire.CodeBadRequest, "malformed JSON"},
		{"empty body", request{Token: f.AgentA, Header: json, Body: strings.NewReader(``)}, 400, wire.CodeBadRequest, "empty body"},
		{"wrong type", request{Token: f.AgentA, Header: json, Body: strings.NewReader(`{"agent":5,"records":[]}`)}, 400, wire.CodeBadRequest, "agent"},
		{"wrong type in record", request{Token: f.AgentA, Header: json, Body: strings.NewReader(`{"agent":"vm-a","records":[{"seq":"one"}]}`)}, 400, wire.CodeBadRequest, "seq"},
		{"unknown field", request{Token: f.AgentA, Header: json, Body: strings.NewReader(`{"agent":"vm-a","records":[],"extra":1}`)}, 400, wire.CodeBadRequest, "unknown field"},
		{"no records", request{Token: f.AgentA, Header: json, Body: strings.NewReader(`{"agent":"vm-a","records":[]}`)}, 400, wire.CodeBadRequest, "no records"},
		{"trailing data", request{Token: f.AgentA, Header: json, Body: bytes.NewReader(append(good(), []byte(` {}`)...))}, 400, wire.CodeBadRequest, "data after"},
		{"seq backwards in one batch", request{Token: f.AgentA, Header: json, Body: bytes.NewReader(batchJSON(t, "vm-a", heartbeat(30, "Healthy", nil), heartbeat(29, "Healthy", nil)))}, 400, wire.CodeBadRequest, "records[1].seq"},
		{"seq backwards across batches", request{Token: f.AgentA, Header: json, Body: bytes.NewReader(batchJSON(t, "vm-a", heartbeat(5, "Healthy", nil)))}, 409, wire.CodeConflict, "backwards"},
		{"oversized raw", request{Token: f.AgentA, Header: json, Body: bytes.NewReader(big)}, 413, wire.CodeTooLarge, "limit"},
		{"oversized raw chunked", request{Token: f.AgentA, Header: json, Body: bytes.NewReader(big), NoLength: true}, 413, wire.CodeTooLarge, "limit"},
		{"oversized gzip compressed", request{Token: f.AgentA, Header: gz, Body: bytes.NewReader(incompressible)}, 413, wire.CodeTooLarge, "limit"},
		{"oversized gzip compressed chunked", request{Token: f.AgentA, Header: gz, Body: bytes.NewReader(incompressible), NoLength: true}, 413, wire.CodeTooLarge, "limit"},
		{"oversized gzip decompressed", request{Token: f.AgentA, Header: gz, Body: bytes.NewReader(gzipped(t, big))}, 413, wire.CodeTooLarge, "decompresses to more than"},
		{"gzip of zeros", request{Token: f.AgentA, Header: gz, Body: bytes.NewReader(zerosBomb(t, 64<<20))}, 400, wire.CodeBadRequest, "JSON"},
		{"not gzip", request{Token: f.AgentA, Header: gz, Body: bytes.NewReader(good())}, 400, wire.CodeBadRequest, "not gzip"},
		{"corrupt gzip", request{Token: f.AgentA, Header: gz, Body: bytes.NewReader(gzipped(t, good())[:40])}, 400, wire.CodeBadRequest, "gzip"},
		{"bad encoding", request{Token: f.AgentA, Header: map[string]string{"Content-Type": "application/json", "Content-Encoding": "br"}, Body: bytes.NewReader(good())}, 415, wire.CodeUnsupported, `Content-Encoding "br"`},
		{"stacked encodings", request{Token: f.AgentA, Header: map[string]string{"Content-Type": "application/json", "Content-Encoding": "gzip, gzip"}, Body: bytes.NewReader(good())}, 415, wire.CodeUnsupported, "Content-Encoding"},
		{"bad content type", request{Token: f.AgentA, Header: map[string]string{"Content-Type": "text/plain"}, Body: bytes.NewReader(good())}, 415, wire.CodeUnsupported, "application/json"},
		{"no content type", request{Token: f.AgentA, Body: bytes.NewReader(good())}, 415, wire.CodeUnsupported, "Content-Type"},
		{"no token", request{Header: json, Body: bytes.NewReader(good())}, 401, wire.CodeUnauthorized, ""},
		{"garbage token", request{Token: "berth_garbage", Header: json, Body: bytes.NewReader(good())}, 401, wire.CodeUnauthorized, ""},
		{"not a bearer", request{Header: map[string]string{"Content-Type": "application/json", "Authorization": "Basic YTpi"}, Body: bytes.NewReader(good())}, 401, wire.CodeUnauthorized, ""},
		{"token of another host", request{Token: f.AgentB, Header: json, Body: bytes.NewReader(good())}, 403, wire.CodeForbidden, "token for host vm-b cannot write reports of host vm-a"},
		{"operator writes reports", request{Token: f.Operator, Header: json, Body: bytes.NewReader(good())}, 403, wire.CodeForbidden, "agent token"},
		{"agent lists hosts", request{Method: "GET", Path: "/v1/hosts", Token: f.AgentA}, 403, wire.CodeForbidden, "operator token"},
		{"agent reads a host", request{Method: "GET", Path: "/v1/hosts/vm-a", Token: f.AgentA}, 403, wire.CodeForbidden, "operator token"},
		{"agent reads counts", request{Method: "GET", Path: "/v1/counts", Token: f.AgentA}, 403, wire.CodeForbidden, "operator token"},
		{"no token lists hosts", request{Method: "GET", Path: "/v1/hosts"}, 401, wire.CodeUnauthorized, ""},
		{"unknown host", request{Method: "GET", Path: "/v1/hosts/vm-nobody", Token: f.Operator}, 404, wire.CodeNotFound, `no host "vm-nobody"`},
		{"bad state", request{Method: "GET", Path: "/v1/hosts?state=Sleepy", Token: f.Operator}, 400, wire.CodeBadRequest, "Sleepy"},
		{"bad sort", request{Method: "GET", Path: "/v1/hosts?sort=colour", Token: f.Operator}, 400, wire.CodeBadRequest, "colour"},
		{"bad limit", request{Method: "GET", Path: "/v1/hosts?limit=many", Token: f.Operator}, 400, wire.CodeBadRequest, "limit"},
		{"limit too high", request{Method: "GET", Path: "/v1/hosts?limit=100000", Token: f.Operator}, 400, wire.CodeBadRequest, "limit"},
		{"bad label", request{Method: "GET", Path: "/v1/hosts?label=pool", Token: f.Operator}, 400, wire.CodeBadRequest, "KEY=VALUE"},
		{"bad cursor", request{Method: "GET", Path: "/v1/hosts?cursor=forged", Token: f.Operator}, 400, wire.CodeBadRequest, "cursor"},
		{"unknown parameter", request{Method: "GET", Path: "/v1/hosts?colour=red", Token: f.Operator}, 400, wire.CodeBadRequest, `"colour"`},
		{"bad history", request{Method: "GET", Path: "/v1/hosts/vm-a?history=lots", Token: f.Operator}, 400, wire.CodeBadRequest, "history"},
		{"history too long", request{Method: "GET", Path: "/v1/hosts/vm-a?history=501", Token: f.Operator}, 400, wire.CodeBadRequest, "500"},
		{"wrong method on reports", request{Method: "GET", Path: "/v1/reports", Token: f.AgentA}, 405, wire.CodeMethodNotAllowed, "use POST"},
		{"wrong method on hosts", request{Method: "PATCH", Path: "/v1/hosts/vm-a", Token: f.Operator}, 405, wire.CodeMethodNotAllowed, "PATCH"},
		{"unknown endpoint", request{Method: "GET", Path: "/v1/nothing", Token: f.Operator}, 404, wire.CodeNotFound, "/v1/nothing"},
		{"no web page", request{Method: "GET", Path: "/", Token: f.Operator}, 404, wire.CodeNotFound, "web page"},
	}
	seq := uint64(100)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.rq.Method == "" {
				tt.rq.Method = http.MethodPost
			}
			if tt.rq.Path == "" {
				tt.rq.Path = wire.ReportsPath
			}
			r := f.do(t, tt.rq)
			if r.Status != tt.status {
				t.Fatalf("status %d, want %d; body %s", r.Status, tt.status, fmtBody(r.Body))
			}
			if ct := r.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q, want application/json", ct)
			}
			e := r.wireError(t)
			t.Logf("%d %s: %s", r.Status, e.Code, e.Message)
			if e.Code != tt.code {
				t.Errorf("code %q, want %q (message %q)", e.Code, tt.code, e.Message)
			}
			if !contains(e.Message, tt.msg) || e.Message == "" {
				t.Errorf("message %q does not say %q", e.Message, tt.msg)
			}
			if tt.status == 401 && !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("WWW-Authenticate %q, want a Bearer challenge", r.Header.Get("WWW-Authenticate"))
			}
			if tt.status == 405 && r.Header.Get("Allow") == "" {
				t.Errorf("405 without Allow")
			}
			seq++
			f.stillUp(t, seq)
		})
	}
}

// TestGzipBomb sends 1 GiB of JSON whitespace compressed to about a MiB:
// the server must refuse it quickly, without inflating it.
func TestGzipBomb(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	bomb := gzipBomb(t, 1<<30)
	if len(bomb) > wire.MaxBatchBytes {
		t.Fatalf("the bomb is %d bytes compressed; it should fit the compressed limit to test the decompressed one", len(bomb))
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	r := f.post(t, f.AgentA, bomb, map[string]string{"Content-Encoding": "gzip"})
	took := time.Since(start)
	runtime.ReadMemStats(&after)
	if r.Status != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413; body %s", r.Status, fmtBody(r.Body))
	}
	if e := r.wireError(t); e.Code != wire.CodeTooLarge || !contains(e.Message, "decompresses") {
		t.Errorf("error %+v, want too_large that names decompression", e)
	}
	if took > 5*time.Second {
		t.Errorf("took %v to refuse the bomb", took)
	}
	// The server, the client and the test share this process: all of them
	// together must stay far below the bomb's gigabyte.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 128<<20 {
		t.Errorf("refusing the bomb allocated %d MiB", alloc>>20)
	}
	f.stillUp(t, 1)
}

// TestReportsAndReads posts reports through HTTP and reads them back.
func TestReportsAndReads(t *testing.T) {
	testReportsAndReads(t, newFixture(t, fixtureOptions{}))
}

// TestPostgres runs the store-backed paths on PostgreSQL: reads, dedupe,
// a numbering that went back (409) and identities (403, Entra binding
// aside).
func TestPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: no PostgreSQL")
	}
	pg := postgres.Start(t)
	t.Run("reads", func(t *testing.T) {
		testReportsAndReads(t, newFixture(t, fixtureOptions{DSN: pg.NewDatabase(t)}))
	})
	t.Run("conflicts", func(t *testing.T) {
		f := newFixture(t, fixtureOptions{DSN: pg.NewDatabase(t)})
		f.ack(t, f.AgentA, "vm-a", heartbeat(10, "Healthy", nil))
		r := f.post(t, f.AgentA, batchJSON(t, "vm-a", heartbeat(5, "Healthy", nil)), nil)
		if e := r.wireError(t); r.Status != 409 || e.Code != wire.CodeConflict {
			t.Errorf("backwards: %d %+v", r.Status, e)
		}
		r = f.post(t, f.AgentB, batchJSON(t, "vm-a", heartbeat(11, "Healthy", nil)), nil)
		if e := r.wireError(t); r.Status != 403 || e.Code != wire.CodeForbidden {
			t.Errorf("another host: %d %+v", r.Status, e)
		}
		f.stillUp(t, 12)
	})
}

func testReportsAndReads(t *testing.T, f *fixture) {
	recs := []wire.Record{heartbeat(1, "Healthy", map[string]string{"pool": "blue"}), event(2, "engine.installed"), heartbeat(3, "Degraded", map[string]string{"pool": "blue"})}
	a := f.ack(t, f.AgentA, "vm-a", recs...)
	if diff := cmp.Diff(wire.Ack{Agent: "vm-a", UpTo: 3, Stored: 3}, a); diff != "" {
		t.Errorf("first ack (-want +got):\n%s", diff)
	}
	// The same batch again, as an agent that missed the answer would
	// send it: nothing is stored twice.
	a = f.ack(t, f.AgentA, "vm-a", recs...)
	if diff := cmp.Diff(wire.Ack{Agent: "vm-a", UpTo: 3, Duplicates: 3}, a); diff != "" {
		t.Errorf("repeated ack (-want +got):\n%s", diff)
	}
	// Gzip works the same; charset parameters are fine.
	r := f.post(t, f.AgentB, gzipped(t, batchJSON(t, "vm-b", heartbeat(1, "Healthy", map[string]string{"pool": "green"}))), map[string]string{"Content-Encoding": "gzip", "Content-Type": "application/json; charset=utf-8"})
	if r.Status != http.StatusOK {
		t.Fatalf("gzip post: %d %s", r.Status, r.Body)
	}

	var page wire.HostPage
	f.getJSON(t, "/v1/hosts", &page)
	if page.Total != 2 || len(page.Hosts) != 2 || page.Hosts[0].ID != "vm-a" {
		t.Fatalf("hosts: %+v", page)
	}
	f.getJSON(t, "/v1/hosts?label=pool=green", &page)
	if page.Total != 1 || page.Hosts[0].ID != "vm-b" {
		t.Errorf("label filter: %+v", page)
	}
	f.getJSON(t, "/v1/hosts?state=Degraded&engineVersion=24.0.7", &page)
	if page.Total != 1 || page.Hosts[0].ID != "vm-a" {
		t.Errorf("state filter: %+v", page)
	}
	f.getJSON(t, "/v1/hosts?sort=-id&limit=1", &page)
	if len(page.Hosts) != 1 || page.Hosts[0].ID != "vm-b" || page.Next == "" {
		t.Errorf("sorted page: %+v", page)
	}
	f.getJSON(t, "/v1/hosts?sort=-id&limit=1&cursor="+page.Next, &page)
	if len(page.Hosts) != 1 || page.Hosts[0].ID != "vm-a" {
		t.Errorf("second page: %+v", page)
	}

	var d wire.HostDetail
	f.getJSON(t, "/v1/hosts/vm-a", &d)
	if d.State != "Degraded" || len(d.History) != 2 || len(d.Events) != 1 || d.Events[0].Kind != "engine.installed" {
		t.Errorf("host: %+v", d)
	}
	f.getJSON(t, "/v1/hosts/vm-a?history=1", &d)
	if len(d.History) != 1 {
		t.Errorf("history=1 gave %d points", len(d.History))
	}
	var c wire.Counts
	f.getJSON(t, "/v1/counts", &c)
	if c.Total != 2 || c.ByState["Degraded"] != 1 || c.ByState["Healthy"] != 1 {
		t.Errorf("counts: %+v", c)
	}
	var hz map[string]string
	if r := f.do(t, request{Path: "/healthz"}); r.Status != 200 || json.Unmarshal(r.Body, &hz) != nil || hz["status"] != "ok" {
		t.Errorf("healthz: %d %s", r.Status, r.Body)
	}
}

// TestSecretsNotLogged checks that no token reaches the log, whatever
// the request.
func TestSecretsNotLogged(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	f.ack(t, f.AgentA, "vm-a", heartbeat(1, "Healthy", nil))
	f.post(t, f.AgentA, batchJSON(t, "vm-b", heartbeat(1, "Healthy", nil)), nil)
	f.do(t, request{Path: "/v1/hosts", Token: f.Operator})
	f.do(t, request{Path: "/v1/hosts", Token: f.AgentA})
	f.do(t, request{Path: "/v1/hosts", Token: "berth_not-a-real-token-123"})
	logs := f.Logs.String()
	for _, secret := range []string{f.AgentA, f.AgentB, f.Operator, "berth_not-a-real-token-123"} {
		if strings.Contains(logs, secret) {
			t.Errorf("a token is in the log:\n%s", logs)
		}
	}
	if !strings.Contains(logs, `"path":"/v1/reports"`) || !strings.Contains(logs, `"status":403`) {
		t.Errorf("access log lines missing:\n%s", logs)
	}
}

// panicky is a store whose Hosts panics and whose Counts fails.
type panicky struct{ server.Store }

func (panicky) Hosts(context.Context, wire.HostFilter, time.Time) (wire.HostPage, error) {
	panic("boom")
}

func (panicky) Counts(context.Context, time.Time) (wire.Counts, error) {
	return wire.Counts{}, errors.New("disk on fire")
}

func TestPanicAndInternalErrors(t *testing.T) {
	f := newFixture(t, fixtureOptions{Wrap: func(s server.Store) server.Store { return panicky{s} }})
	for _, path := range []string{"/v1/hosts", "/v1/counts"} {
		r := f.do(t, request{Path: path, Token: f.Operator})
		if r.Status != 500 {
			t.Fatalf("%s: status %d, want 500", path, r.Status)
		}
		e := r.wireError(t)
		if e.Code != wire.CodeInternal || !contains(e.Message, "request") || contains(e.Message, "fire") {
			t.Errorf("%s: error %+v: want internal, a request id, and no internals", path, e)
		}
	}
	logs := f.Logs.String()
	if !strings.Contains(logs, "boom") || !strings.Contains(logs, "disk on fire") {
		t.Errorf("the causes are not logged:\n%s", logs)
	}
	f.ack(t, f.AgentA, "vm-a", heartbeat(1, "Healthy", nil))
}

// slowStore holds Ingest until released.
type slowStore struct {
	server.Store
	entered chan struct{}
	release chan struct{}
}

func (s slowStore) Ingest(ctx context.Context, b wire.Batch, now time.Time) (wire.Ack, error) {
	s.entered <- struct{}{}
	<-s.release
	return s.Store.Ingest(ctx, b, now)
}

// TestBusy fills the report slots and checks the next report is told to
// come back later.
func TestBusy(t *testing.T) {
	defer server.SetSlotWait(50 * time.Millisecond)()
	slow := slowStore{entered: make(chan struct{}, 1), release: make(chan struct{})}
	f := newFixture(t, fixtureOptions{
		Wrap:    func(s server.Store) server.Store { slow.Store = s; return slow },
		Options: func(o *server.Options) { o.MaxInFlight = 1 },
	})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		f.ack(t, f.AgentA, "vm-a", heartbeat(1, "Healthy", nil))
	}()
	<-slow.entered
	r := f.post(t, f.AgentB, batchJSON(t, "vm-b", heartbeat(1, "Healthy", nil)), nil)
	close(slow.release)
	wg.Wait()
	if r.Status != http.StatusTooManyRequests || r.Header.Get("Retry-After") == "" {
		t.Fatalf("status %d Retry-After %q, want 429 with Retry-After", r.Status, r.Header.Get("Retry-After"))
	}
	if e := r.wireError(t); e.Code != wire.CodeRateLimited {
		t.Errorf("code %q", e.Code)
	}
	go func() {
		for range slow.entered {
		}
	}()
	f.ack(t, f.AgentB, "vm-b", heartbeat(1, "Healthy", nil))
	close(slow.entered)
}

func TestHealthzStoreDown(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	f.Store.Close()
	r := f.do(t, request{Path: "/healthz"})
	if r.Status != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", r.Status)
	}
	if e := r.wireError(t); e.Code != wire.CodeUnavailable {
		t.Errorf("code %q", e.Code)
	}
}

func TestListenAndServeShutsDown(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- f.Server.ListenAndServe(ctx, "127.0.0.1:0", func(a net.Addr) { addr <- a.String() })
	}()
	a := <-addr
	resp, err := http.Get("http://" + a + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz on %s: %v %v", a, err, resp)
	}
	resp.Body.Close()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("ListenAndServe: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ListenAndServe did not return after its context ended")
	}
	if _, err := http.Get("http://" + a + "/healthz"); err == nil {
		t.Error("still serving after shutdown")
	}
}
