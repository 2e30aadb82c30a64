//go:build linux

package main

import (
	"context"
	"database/sql"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/berthhq/berth/control/wire"
	"github.com/berthhq/berth/internal/paths"
	"github.com/berthhq/berth/internal/statedb"
	"github.com/berthhq/berth/internal/testenv"
	"github.com/berthhq/berth/telemetry/outbox"
)

// Issue 4's delivery guarantees, with the real binaries: a control
// endpoint down for ten minutes loses nothing, and an agent killed with
// SIGKILL while it sends loses nothing and stores nothing twice.

// outageLength is how long control stays down: ten minutes, as the issue
// asks; BERTH_E2E_OUTAGE shortens it for a quick local run (never in CI).
func outageLength(t *testing.T) time.Duration {
	if v := os.Getenv("BERTH_E2E_OUTAGE"); v != "" && !testenv.InCI() {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("BERTH_E2E_OUTAGE: %v", err)
		}
		return d
	}
	return 10 * time.Minute
}

// storedRecord is one record as the control store holds it.
type storedRecord struct {
	seq      uint64
	received int64
	kind     string // "heartbeat" or the event's kind
}

// stored reads every record of agent from the control store's SQLite file,
// in sequence order.
func stored(t *testing.T, dbPath, agent string) []storedRecord {
	t.Helper()
	db, err := sql.Open("sqlite", dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT seq, received_ms, 'heartbeat' FROM history WHERE host_id = ?
		UNION ALL SELECT seq, received_ms, kind FROM events WHERE host_id = ? ORDER BY 1`, agent, agent)
	if err != nil {
		t.Fatalf("read the control store: %v", err)
	}
	defer rows.Close()
	var out []storedRecord
	for rows.Next() {
		var r storedRecord
		if err := rows.Scan(&r.seq, &r.received, &r.kind); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// reliabilityRig is control on SQLite with an issued agent token, and one
// agent reporting every second with no engine to watch (its health is
// Unhealthy, which changes nothing for delivery).
type reliabilityRig struct {
	control *controlServer
	dbPath  string
	agent   *agentHost
	id      string
}

func newReliabilityRig(t *testing.T, id string, controlURL func(real string) string) *reliabilityRig {
	t.Helper()
	dbPath := filepath.Join(t.TempDir(), "control.db")
	control := startControl(t, "sqlite://"+dbPath, "--auth", "token")
	tokenFile := filepath.Join(t.TempDir(), "agent.token")
	if err := os.WriteFile(tokenFile, []byte(control.issue("agent", id)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	u := control.URL
	if controlURL != nil {
		u = controlURL(u)
	}
	agent := newAgent(t, map[string]any{
		"agent":   map[string]any{"id": id},
		"control": map[string]any{"url": u, "auth": "token", "tokenFile": tokenFile, "reportInterval": "1s"},
		"engine":  map[string]any{"managed": false, "endpoint": "unix://" + filepath.Join(t.TempDir(), "no-engine.sock")},
		"cache":   map[string]any{"enabled": false},
	})
	return &reliabilityRig{control: control, dbPath: dbPath, agent: agent, id: id}
}

// outboxNow returns the agent's outbox figures and the records still in it.
func (r *reliabilityRig) outboxNow(t *testing.T) (outbox.Stats, []wire.Record) {
	t.Helper()
	db, err := statedb.Open(filepath.Join(r.agent.stateDir(), paths.DBFile))
	if err != nil {
		t.Fatal(err)
	}
	ob := outbox.New(db, outbox.Options{})
	st, err := ob.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	recs, err := ob.Peek(context.Background(), st.Records+1)
	if err != nil {
		t.Fatal(err)
	}
	return st, recs
}

// drainAndCheck lets the running agent deliver what it holds, stops it,
// and checks the guarantees: every number the agent gave out is stored or
// still queued (nothing lost; at most the last second's records queued),
// stored once, stored in the order of its numbers, with one agent.started
// event per start and nothing dropped.
func (r *reliabilityRig) drainAndCheck(t *testing.T) []storedRecord {
	t.Helper()
	waitFor(t, 2*time.Minute, "the agent's outbox to drain", func() bool {
		st, _ := r.outboxNow(t)
		return st.Records <= 1
	})
	if err := r.agent.p.stop(30 * time.Second); err != nil {
		t.Errorf("berth-agent run: %v", err)
	}
	st, queued := r.outboxNow(t)
	recs := stored(t, r.dbPath, r.id)
	if len(recs) == 0 {
		t.Fatal("control stored nothing")
	}
	if st.Dropped.Heartbeats != 0 || st.Dropped.Events != 0 {
		t.Errorf("the outbox dropped %+v; the test's outage should fit", st.Dropped)
	}
	times := map[uint64]int{}
	for _, rec := range recs {
		times[rec.seq]++
	}
	starts := 0
	inOutbox := map[uint64]bool{}
	for _, rec := range queued {
		inOutbox[rec.Seq] = true
		// Sent but not yet acknowledged records are stored and queued.
		if times[rec.Seq] == 0 && rec.Event != nil && rec.Event.Kind == "agent.started" {
			starts++
		}
	}
	first, last := recs[0].seq, st.NextSeq-1
	if recs[0].kind != "agent.started" {
		t.Errorf("the first stored record is %q, want the first start's agent.started", recs[0].kind)
	}
	lost := 0
	for s := first; s <= last; s++ {
		if times[s] == 0 && !inOutbox[s] {
			if lost++; lost <= 5 {
				t.Errorf("record %d (of %d..%d) is neither stored nor queued: lost", s, first, last)
			}
		}
	}
	for s, n := range times {
		if n > 1 {
			t.Errorf("record %d stored %d times", s, n)
		}
	}
	for i := 1; i < len(recs); i++ {
		if recs[i].received < recs[i-1].received {
			t.Errorf("record %d was stored before record %d: out of order", recs[i].seq, recs[i-1].seq)
			break
		}
	}
	for _, rec := range recs {
		if rec.kind == "agent.started" {
			starts++
		}
	}
	if starts != r.agent.starts {
		t.Errorf("control stored (or the outbox holds) %d agent.started events for %d starts", starts, r.agent.starts)
	}
	t.Logf("%d records %d..%d: %d stored once each, %d still queued, in order; %d starts; lost %d", last-first+1, first, last, len(recs), len(queued), r.agent.starts, lost)
	return recs
}

// TestReportsSurviveControlOutage stops control for ten minutes while the
// agent reports every second, then brings it back.
func TestReportsSurviveControlOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for ten minutes")
	}
	t.Parallel() // mostly waiting: overlaps the package's other tests
	r := newReliabilityRig(t, "outage-host", nil)
	r.agent.start()
	waitFor(t, 30*time.Second, "the first records at control", func() bool { return len(stored(t, r.dbPath, r.id)) >= 2 })

	down := outageLength(t)
	r.control.stop()
	t.Logf("control down for %v", down)
	time.Sleep(down)
	st, _ := r.outboxNow(t)
	if want := int(down/time.Second) * 8 / 10; st.Records < want {
		t.Errorf("after %v down the outbox holds %d records, want about one a second (>= %d)", down, st.Records, want)
	}
	r.control.start()
	recs := r.drainAndCheck(t)
	// About one heartbeat a second, before, during and after the outage
	// (a heartbeat's checks take a little of each second).
	if n, want := len(recs), int(down/time.Second)*9/10; n < want {
		t.Errorf("control stored %d records over an outage of %v at a 1s interval, want >= %d", n, down, want)
	}
}

// TestReportsSurviveSIGKILL kills the agent with SIGKILL 24 times
// ($BERTH_SOAK_ROUNDS under `make soak`), restarting it each time: every
// other kill lands while a batch is in flight — stored by control, its
// answer held back by a proxy — and the others at random moments.
func TestReportsSurviveSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the binaries many times")
	}
	kills := testenv.SoakRounds(t, 24)
	inFlight := make(chan struct{}, 1)
	var cut atomic.Int32 // answers the agent did not live to read
	r := newReliabilityRig(t, "killed-host", func(real string) string {
		u, err := url.Parse(real)
		if err != nil {
			t.Fatal(err)
		}
		proxy := httputil.NewSingleHostReverseProxy(u)
		slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			rec := httptest.NewRecorder()
			proxy.ServeHTTP(rec, req)
			// The batch is stored; its answer comes late.
			select {
			case inFlight <- struct{}{}:
			default:
			}
			select {
			case <-time.After(time.Duration(200+rand.IntN(300)) * time.Millisecond):
			case <-req.Context().Done():
				cut.Add(1)
				return
			}
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			_, _ = w.Write(rec.Body.Bytes())
		}))
		t.Cleanup(slow.Close)
		return slow.URL
	})
	for i := range kills {
		r.agent.start()
		if i%2 == 0 {
			select {
			case <-inFlight: // drop a signal from before this start
			default:
			}
			select {
			case <-inFlight:
				time.Sleep(time.Duration(rand.IntN(150)) * time.Millisecond)
			case <-time.After(10 * time.Second):
				t.Fatal("the agent sent nothing for 10s")
			}
		} else {
			time.Sleep(time.Duration(300+rand.IntN(2500)) * time.Millisecond)
		}
		r.agent.p.kill()
	}
	r.agent.start()
	recs := r.drainAndCheck(t)
	t.Logf("%d kills, %d of them with a stored batch's answer unread; %d records stored", kills, cut.Load(), len(recs))
	if int(cut.Load()) < kills/4 {
		t.Errorf("only %d kills landed between a batch being stored and its answer; the test means to land about half there", cut.Load())
	}
}
