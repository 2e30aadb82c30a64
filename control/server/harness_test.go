package server_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthhq/berth/control/auth"
	"github.com/berthhq/berth/control/rollout"
	"github.com/berthhq/berth/control/server"
	"github.com/berthhq/berth/control/store"
	"github.com/berthhq/berth/control/wire"
	"github.com/berthhq/berth/internal/testenv"
)

// fixture is a real server on a real SQLite store, with an agent token for
// vm-a and one for vm-b, and an operator token.
type fixture struct {
	t        testing.TB
	URL      string
	Store    *store.Store
	Server   *server.Server
	AgentA   string
	AgentB   string
	Operator string
	Logs     *testenv.Buffer
}

type fixtureOptions struct {
	Methods []auth.Method
	Entra   *auth.Entra
	DSN     string
	Wrap    func(server.Store) server.Store
	Options func(*server.Options)
	// Quiet logs at info, as a production server does, not debug.
	Quiet bool
}

func newFixture(t testing.TB, o fixtureOptions) *fixture {
	t.Helper()
	ctx := context.Background()
	if o.DSN == "" {
		o.DSN = "sqlite://" + filepath.Join(t.TempDir(), "control.db")
	}
	if o.Methods == nil {
		o.Methods = []auth.Method{auth.MethodToken}
	}
	logs := &testenv.Buffer{}
	level := slog.LevelDebug
	if o.Quiet {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: level}))
	st, err := store.Open(ctx, o.DSN, store.Options{Logger: log})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	a, err := auth.New(ctx, auth.Options{Methods: o.Methods, Entra: o.Entra, Tokens: st, Logger: log})
	if err != nil {
		t.Fatalf("auth: %v", err)
	}
	var s server.Store = st
	if o.Wrap != nil {
		s = o.Wrap(st)
	}
	opts := server.Options{Store: s, Auth: a, Logger: log, Rollouts: startRollouts(t, st, log)}
	if o.Options != nil {
		o.Options(&opts)
	}
	srv := server.New(opts)
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	f := &fixture{t: t, URL: hs.URL, Store: st, Server: srv, Logs: logs}
	issue := func(role store.Role, subject string) string {
		_, secret, err := st.IssueToken(ctx, role, subject, time.Now())
		if err != nil {
			t.Fatalf("issue token: %v", err)
		}
		return secret
	}
	f.AgentA = issue(store.RoleAgent, "vm-a")
	f.AgentB = issue(store.RoleAgent, "vm-b")
	f.Operator = issue(store.RoleOperator, "alice")
	return f
}

// startRollouts runs the rollout controller on st until the test ends,
// evaluating every 100 ms.
func startRollouts(t testing.TB, st *store.Store, log *slog.Logger) *rollout.Service {
	ro := rollout.New(rollout.Options{Store: st, Logger: log, Tick: 100 * time.Millisecond, Holder: "test"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ro.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("rollout controller: %v", err)
		}
	})
	return ro
}

// heartbeat returns a valid heartbeat record numbered seq.
func heartbeat(seq uint64, state string, labels map[string]string) wire.Record {
	now := time.Now().UTC().Truncate(time.Millisecond)
	return wire.Record{Seq: seq, Kind: wire.KindHeartbeat, Time: now, Heartbeat: &wire.Heartbeat{
		State:           state,
		Checks:          []wire.Check{{Name: "engine.api", Status: "ok", Message: "docker answers", Time: now}},
		Engine:          wire.Engine{Flavor: "docker", Version: "24.0.7", Active: true, Healthy: true},
		AgentVersion:    "1.2.3",
		Labels:          labels,
		IntervalSeconds: 60,
	}}
}

func event(seq uint64, kind string) wire.Record {
	return wire.Record{Seq: seq, Kind: wire.KindEvent, Time: time.Now().UTC(), Event: &wire.Event{Kind: kind, Message: "it happened"}}
}

func batchJSON(t testing.TB, agent string, records ...wire.Record) []byte {
	t.Helper()
	b, err := json.Marshal(wire.Batch{Agent: agent, Records: records})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func gzipped(t testing.TB, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(data)
	zw.Close()
	return buf.Bytes()
}

// request is one HTTP request of a test.
type request struct {
	Method   string
	Path     string
	Token    string
	Header   map[string]string
	Body     io.Reader
	NoLength bool // send chunked, without Content-Length
}

// response is what came back.
type response struct {
	Status int
	Header http.Header
	Body   []byte
	// Close: the server closes the connection after this answer (net/http
	// takes Connection: close out of Header).
	Close bool
}

func (r response) wireError(t testing.TB) wire.Error {
	t.Helper()
	var e wire.Error
	if err := json.Unmarshal(r.Body, &e); err != nil {
		t.Fatalf("status %d: body is not a wire.Error: %v: %q", r.Status, err, r.Body)
	}
	return e
}

func (f *fixture) do(t testing.TB, rq request) response {
	t.Helper()
	if rq.Method == "" {
		rq.Method = http.MethodGet
	}
	body := rq.Body
	if body != nil && rq.NoLength {
		body = io.MultiReader(body) // hides the length from net/http
	}
	req, err := http.NewRequest(rq.Method, f.URL+rq.Path, body)
	if err != nil {
		t.Fatal(err)
	}
	if rq.Token != "" {
		req.Header.Set("Authorization", "Bearer "+rq.Token)
	}
	for k, v := range rq.Header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", rq.Method, rq.Path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", rq.Method, rq.Path, err)
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: data, Close: resp.Close}
}

// post sends a batch body as JSON.
func (f *fixture) post(t testing.TB, token string, body []byte, header map[string]string) response {
	t.Helper()
	h := map[string]string{"Content-Type": "application/json"}
	for k, v := range header {
		h[k] = v
	}
	return f.do(t, request{Method: http.MethodPost, Path: wire.ReportsPath, Token: token, Header: h, Body: bytes.NewReader(body)})
}

// ack posts a batch that must be accepted.
func (f *fixture) ack(t testing.TB, token, agent string, records ...wire.Record) wire.Ack {
	t.Helper()
	r := f.post(t, token, batchJSON(t, agent, records...), nil)
	if r.Status != http.StatusOK {
		t.Fatalf("post reports of %s: status %d: %s", agent, r.Status, r.Body)
	}
	var a wire.Ack
	if err := json.Unmarshal(r.Body, &a); err != nil {
		t.Fatalf("ack: %v: %s", err, r.Body)
	}
	return a
}

// getJSON GETs path as the operator into v.
func (f *fixture) getJSON(t testing.TB, path string, v any) {
	t.Helper()
	r := f.do(t, request{Path: path, Token: f.Operator})
	if r.Status != http.StatusOK {
		t.Fatalf("GET %s: status %d: %s", path, r.Status, r.Body)
	}
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("GET %s: %v: %s", path, err, r.Body)
	}
}

// stillUp checks that the server still takes a good report and a good
// operator request.
func (f *fixture) stillUp(t testing.TB, seq uint64) {
	t.Helper()
	f.ack(t, f.AgentA, "vm-a", heartbeat(seq, "Healthy", nil))
	var c wire.Counts
	f.getJSON(t, "/v1/counts", &c)
}

func contains(s, sub string) bool { return strings.Contains(strings.ToLower(s), strings.ToLower(sub)) }

func fmtBody(b []byte) string {
	if len(b) > 300 {
		return fmt.Sprintf("%q…", b[:300])
	}
	return fmt.Sprintf("%q", b)
}
