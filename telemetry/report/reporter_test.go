package report

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/berthhq/berth/control/wire"
	"github.com/berthhq/berth/internal/statedb"
	"github.com/berthhq/berth/telemetry/outbox"
)

const agent = "test-agent-1"

func openDB(t *testing.T) *statedb.DB {
	t.Helper()
	db, err := statedb.Open(filepath.Join(t.TempDir(), "agent.db"))
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// fast are Options for tests: short waits everywhere.
func fast(ob *outbox.Outbox, c *Client) Options {
	return Options{
		Agent:          agent,
		Outbox:         ob,
		Client:         c,
		Interval:       50 * time.Millisecond,
		FirstHeartbeat: 10 * time.Millisecond,
		MinBackoff:     10 * time.Millisecond,
		MaxBackoff:     100 * time.Millisecond,
	}
}

func client(t *testing.T, url string, tokens TokenSource) *Client {
	t.Helper()
	c, err := NewClient(ClientOptions{URL: url, Tokens: tokens})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func heartbeat(context.Context) (wire.Heartbeat, error) {
	return wire.Heartbeat{
		State:        "Healthy",
		AgentVersion: "test",
		Checks:       []wire.Check{{Name: "cache-tier blob:acct/c", Status: "ok", Message: "fine", Time: time.Now()}},
		Labels:       map[string]string{"pool": "a"},
	}, nil
}

// start runs r until the returned stop is called; stop waits for Run to
// return and fails the test if it takes long.
func start(t *testing.T, r *Reporter) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Error("Run did not return within 5s of its context ending")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func queued(t *testing.T, ob *outbox.Outbox) int {
	t.Helper()
	st, err := ob.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st.Records
}

func emit(t *testing.T, r *Reporter, kinds ...string) {
	t.Helper()
	for _, k := range kinds {
		if err := r.Event(context.Background(), k, "message of "+k, map[string]string{"k": k}); err != nil {
			t.Fatal(err)
		}
	}
}

func kinds(prefix string, n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("%s%03d", prefix, i))
	}
	return out
}

// While the endpoint is down (503, then connections dropped), records
// queue; once it is back every one arrives exactly once, in order, gzip'd
// and decodable by wire.DecodeBatch.
func TestDeliveryAfterOutage(t *testing.T) {
	ctl := newControl(t)
	var mode string
	var mu sync.Mutex
	setMode := func(m string) { mu.Lock(); mode = m; mu.Unlock() }
	ctl.set(func(c *control) {
		c.before = func(w http.ResponseWriter, r *http.Request) bool {
			mu.Lock()
			defer mu.Unlock()
			switch mode {
			case "503":
				w.Header().Set("Retry-After", "0")
				http.Error(w, `{"code":"unavailable","message":"restarting"}`, http.StatusServiceUnavailable)
				return true
			case "drop":
				conn, _, _ := w.(http.Hijacker).Hijack()
				conn.Close()
				return true
			}
			return false
		}
	})
	setMode("503")
	ob := outbox.New(openDB(t), outbox.Options{})
	reg := prometheus.NewRegistry()
	o := fast(ob, client(t, ctl.URL(), NoToken{}))
	o.Heartbeat, o.Metrics = heartbeat, reg
	r, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	start(t, r)
	want := kinds("ev.", 30)
	emit(t, r, want[:10]...)
	time.Sleep(200 * time.Millisecond)
	setMode("drop")
	emit(t, r, want[10:20]...)
	time.Sleep(200 * time.Millisecond)
	if got := ctl.events(); len(got) != 0 {
		t.Fatalf("events stored while the endpoint was down: %v", got)
	}
	if st := r.Status(); st.FailingSince.IsZero() || st.LastError == "" || st.Queued < 20 {
		t.Errorf("Status while down = %+v; want failing with 20+ queued", st)
	}
	setMode("")
	emit(t, r, want[20:]...)
	eventually(t, "every event stored", func() bool { return len(ctl.events()) == len(want) })
	eventually(t, "the outbox to empty", func() bool { return queued(t, ob) == 0 })
	if diff := cmp.Diff(want, ctl.events()); diff != "" {
		t.Errorf("stored events (-want +got):\n%s", diff)
	}
	if !ctl.inOrder() {
		t.Error("records were stored out of order")
	}
	if _, dups := ctl.snapshot(); dups != 0 {
		t.Errorf("%d duplicates without a crash", dups)
	}
	recs, _ := ctl.snapshot()
	var beats int
	for _, rec := range recs {
		if hb := rec.Heartbeat; hb != nil {
			beats++
			if hb.Checks[0].Name != "cache-tier-blob-acct-c" {
				t.Errorf("check name sent as %q; want it made wire-safe", hb.Checks[0].Name)
			}
		}
	}
	if beats == 0 {
		t.Error("no heartbeat stored")
	}
	if st := r.Status(); !st.FailingSince.IsZero() || st.LastSent.IsZero() {
		t.Errorf("Status after recovery = %+v", st)
	}
	if n := testutil.ToFloat64(r.m.sent); int(n) != len(recs) {
		t.Errorf("berth_reports_sent_total = %v, want %d", n, len(recs))
	}
	if n, err := testutil.GatherAndCount(reg, "berth_reports_send_errors_total", "berth_reports_queued"); err != nil || n < 2 {
		t.Errorf("metrics: %d series, %v", n, err)
	}
}

// A crash between the POST and the acknowledgement: the endpoint stored the
// batch, the agent never deleted it. The next run on the same agent.db
// sends it again, the endpoint counts duplicates, and nothing is lost.
func TestCrashBetweenPostAndAck(t *testing.T) {
	ctl := newControl(t)
	stored := make(chan struct{}, 1)
	release := make(chan struct{})
	ctl.set(func(c *control) {
		c.after = func(r *http.Request) {
			select {
			case stored <- struct{}{}:
			default:
			}
			c.mu.Unlock() // let the test look while this answer hangs
			select {
			case <-release:
			case <-r.Context().Done():
			}
			c.mu.Lock()
		}
	})
	db := openDB(t)
	first, err := New(fast(outbox.New(db, outbox.Options{}), client(t, ctl.URL(), NoToken{})))
	if err != nil {
		t.Fatal(err)
	}
	emit(t, first, kinds("a.", 5)...)
	stop := start(t, first)
	<-stored
	stop() // the "crash": the answer never arrives
	if n := queued(t, outbox.New(db, outbox.Options{})); n != 5 {
		t.Fatalf("%d records left after the crash, want 5", n)
	}
	ctl.set(func(c *control) { c.after = nil })
	close(release)

	ob := outbox.New(db, outbox.Options{})
	second, err := New(fast(ob, client(t, ctl.URL(), NoToken{})))
	if err != nil {
		t.Fatal(err)
	}
	emit(t, second, kinds("b.", 5)...)
	start(t, second)
	eventually(t, "the outbox to empty", func() bool { return queued(t, ob) == 0 })
	want := append(kinds("a.", 5), kinds("b.", 5)...)
	if diff := cmp.Diff(want, ctl.events()); diff != "" {
		t.Errorf("stored events (-want +got):\n%s", diff)
	}
	if _, dups := ctl.snapshot(); dups != 5 {
		t.Errorf("duplicates = %d, want the 5 records sent again", dups)
	}
}

// A record the endpoint refuses (its time is 8 days ahead of the
// endpoint's clock, which DecodeBatch refuses) is isolated from the records
// around it, refused RejectAfter times alone, then skipped; the others all
// arrive.
func TestPoisonedRecordIsSkipped(t *testing.T) {
	ctl := newControl(t)
	db := openDB(t)
	ob := outbox.New(db, outbox.Options{})
	reg := prometheus.NewRegistry()
	o := fast(ob, client(t, ctl.URL(), NoToken{}))
	o.Metrics = reg
	r, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	emit(t, r, kinds("before.", 7)...)
	ahead := outbox.New(db, outbox.Options{Now: func() time.Time { return time.Now().Add(8 * 24 * time.Hour) }})
	if _, err := ahead.Append(context.Background(), wire.KindEvent, wire.Event{Kind: "poison"}); err != nil {
		t.Fatal(err)
	}
	emit(t, r, kinds("after.", 12)...)
	start(t, r)
	eventually(t, "the outbox to empty", func() bool { return queued(t, ob) == 0 })
	want := append(kinds("before.", 7), kinds("after.", 12)...)
	if diff := cmp.Diff(want, ctl.events()); diff != "" {
		t.Errorf("stored events (-want +got):\n%s", diff)
	}
	if n := testutil.ToFloat64(r.m.rejected); n != 1 {
		t.Errorf("berth_reports_rejected_total = %v, want 1", n)
	}
	ctl.mu.Lock()
	refused, requests := ctl.refused[http.StatusBadRequest], ctl.requests
	ctl.mu.Unlock()
	// Bisection of 20 records: a handful of halvings, then the lone
	// record three times.
	if refused < DefaultRejectAfter || requests > 20 {
		t.Errorf("%d refusals in %d requests; want at least %d refusals and a bounded number of requests", refused, requests, DefaultRejectAfter)
	}
}

// Batches are cut to fit: by the reporter's own byte budget, and after a
// 413 from an endpoint with a lower limit than wire.MaxBatchBytes.
func TestBatchCutting(t *testing.T) {
	big := strings.Repeat("x", 900)
	tests := []struct {
		name        string
		batchBytes  int
		serverLimit int64
		want413     bool
		maxSize     int
	}{
		{"own budget", 8 << 10, 0, false, 8 << 10},
		{"endpoint limit", 0, 6 << 10, true, 6 << 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctl := newControl(t)
			ctl.set(func(c *control) { c.maxBytes = tt.serverLimit })
			ob := outbox.New(openDB(t), outbox.Options{})
			o := fast(ob, client(t, ctl.URL(), NoToken{}))
			o.BatchBytes = tt.batchBytes
			r, err := New(o)
			if err != nil {
				t.Fatal(err)
			}
			want := kinds("big.", 40)
			for _, k := range want {
				if err := r.Event(context.Background(), k, big, map[string]string{"v": big}); err != nil {
					t.Fatal(err)
				}
			}
			start(t, r)
			eventually(t, "the outbox to empty", func() bool { return queued(t, ob) == 0 })
			if diff := cmp.Diff(want, ctl.events()); diff != "" {
				t.Errorf("stored events (-want +got):\n%s", diff)
			}
			ctl.mu.Lock()
			defer ctl.mu.Unlock()
			if got := ctl.refused[http.StatusRequestEntityTooLarge] > 0; got != tt.want413 {
				t.Errorf("413 seen = %v, want %v", got, tt.want413)
			}
			for _, n := range ctl.sizes {
				if n > tt.maxSize {
					t.Errorf("a batch of %d bytes was accepted; the limit is %d", n, tt.maxSize)
				}
			}
			if len(ctl.sizes) < 5 {
				t.Errorf("%d batches for 40 records of ~1.8 KiB; want them cut", len(ctl.sizes))
			}
		})
	}
}

// Retry-After is honoured, and capped at MaxBackoff.
func TestRetryAfter(t *testing.T) {
	tests := []struct {
		name       string
		header     string
		maxBackoff time.Duration
		min, max   time.Duration // the gap between the 429 and the retry
	}{
		{"honoured", "1", 5 * time.Second, 900 * time.Millisecond, 3 * time.Second},
		{"capped", "3600", 150 * time.Millisecond, 0, 2 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctl := newControl(t)
			var mu sync.Mutex
			var times []time.Time
			ctl.set(func(c *control) {
				c.before = func(w http.ResponseWriter, r *http.Request) bool {
					mu.Lock()
					defer mu.Unlock()
					times = append(times, time.Now())
					if len(times) == 1 {
						w.Header().Set("Retry-After", tt.header)
						w.WriteHeader(http.StatusTooManyRequests)
						return true
					}
					return false
				}
			})
			ob := outbox.New(openDB(t), outbox.Options{})
			o := fast(ob, client(t, ctl.URL(), NoToken{}))
			o.MaxBackoff = tt.maxBackoff
			r, err := New(o)
			if err != nil {
				t.Fatal(err)
			}
			emit(t, r, "one")
			start(t, r)
			eventually(t, "the outbox to empty", func() bool { return queued(t, ob) == 0 })
			mu.Lock()
			defer mu.Unlock()
			if gap := times[1].Sub(times[0]); gap < tt.min || gap > tt.max {
				t.Errorf("retried after %s; want between %s and %s", gap, tt.min, tt.max)
			}
		})
	}
}

// Without a control endpoint, heartbeats and events stay queued, bounded
// by the outbox, and the next heartbeat says what was dropped.
func TestNoEndpointQueuesBounded(t *testing.T) {
	ob := outbox.New(openDB(t), outbox.Options{MaxRecords: 5})
	o := fast(ob, nil)
	o.Heartbeat = heartbeat
	o.FirstHeartbeat, o.Interval = time.Millisecond, 5*time.Millisecond
	r, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	emit(t, r, "kept")
	start(t, r)
	eventually(t, "heartbeats to be dropped", func() bool {
		d, _ := ob.Dropped(context.Background())
		return d.Heartbeats >= 3
	})
	recs, err := ob.Peek(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) > 5 || recs[0].Event == nil || recs[0].Event.Kind != "kept" {
		t.Fatalf("outbox holds %d records, first %+v; want at most 5 with the event kept", len(recs), recs[0])
	}
	last := recs[len(recs)-1].Heartbeat
	if last == nil || last.Dropped.Heartbeats == 0 {
		t.Errorf("the newest heartbeat does not report the drops: %+v", last)
	}
	if st := r.Status(); st.Queued == 0 {
		t.Errorf("Status.Queued = 0")
	}
}

// A 401 makes the client fetch the token again, once: a token file
// rotated meanwhile gets the batch through; a token still refused is
// returned as a permanent StatusError after exactly two tries.
func TestUnauthorizedRefetchesToken(t *testing.T) {
	for _, rotate := range []bool{true, false} {
		t.Run(fmt.Sprintf("rotated=%v", rotate), func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "token")
			if err := os.WriteFile(file, []byte("old\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			ctl := newControl(t)
			ctl.set(func(c *control) {
				c.before = func(w http.ResponseWriter, r *http.Request) bool {
					if r.Header.Get("Authorization") == "Bearer new" {
						return false
					}
					if rotate {
						os.WriteFile(file, []byte("  new  \n"), 0o600)
					}
					http.Error(w, `{"code":"unauthorized","message":"token expired"}`, http.StatusUnauthorized)
					return true
				}
			})
			c := client(t, ctl.URL(), FileToken{Path: file})
			b := wire.Batch{Agent: agent, Records: []wire.Record{{Seq: 1, Kind: wire.KindEvent, Time: time.Now(), Event: &wire.Event{Kind: "x"}}}}
			ack, err := c.Send(context.Background(), b)
			ctl.mu.Lock()
			tokens := ctl.tokens
			ctl.mu.Unlock()
			if rotate {
				if err != nil || ack.UpTo != 1 {
					t.Fatalf("Send = %+v, %v", ack, err)
				}
				if diff := cmp.Diff([]string{"Bearer old", "Bearer new"}, tokens); diff != "" {
					t.Errorf("tokens sent (-want +got):\n%s", diff)
				}
				return
			}
			var se *StatusError
			if !errorsAs(err, &se) || se.Status != http.StatusUnauthorized || !se.Permanent() || se.Code != wire.CodeUnauthorized {
				t.Fatalf("Send error = %v; want a permanent 401 StatusError", err)
			}
			if len(tokens) != 2 {
				t.Errorf("%d requests, want 2 (one refetch, no loop)", len(tokens))
			}
			if strings.Contains(err.Error(), "old") {
				t.Errorf("the error shows the token: %v", err)
			}
		})
	}
}

func TestFileToken(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	tests := []struct {
		content string // "-" for no file
		want    string
		wantErr string
	}{
		{"-", "", file},
		{"", "", "is empty"},
		{"abc", "abc", ""},
		{"\tdef \r\n", "def", ""},
		{"a\nb", "", "more than one line"},
	}
	for _, tt := range tests {
		os.Remove(file)
		if tt.content != "-" {
			if err := os.WriteFile(file, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		got, err := FileToken{Path: file}.Token(context.Background(), false)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), file) {
				t.Errorf("content %q: err = %v; want one naming the file and %q", tt.content, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("content %q: Token = %q, %v; want %q", tt.content, got, err, tt.want)
		}
	}
}

// The client's request: POST, gzip, JSON, bearer, user agent; the body
// decodes with wire.DecodeBatch (the control stand-in checks it).
func TestClientRequest(t *testing.T) {
	ctl := newControl(t)
	var got http.Header
	ctl.set(func(c *control) {
		c.before = func(w http.ResponseWriter, r *http.Request) bool { got = r.Header.Clone(); return false }
	})
	c, err := NewClient(ClientOptions{URL: ctl.URL() + "/", Tokens: FileToken{Path: writeFile(t, "tok")}, UserAgent: "loadgen/1"})
	if err != nil {
		t.Fatal(err)
	}
	ack, err := c.Send(context.Background(), wire.Batch{Agent: agent, Records: []wire.Record{{Seq: 7, Kind: wire.KindEvent, Time: time.Now(), Event: &wire.Event{Kind: "x"}}}})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wire.Ack{Agent: agent, UpTo: 7, Stored: 1}, ack); diff != "" {
		t.Errorf("ack (-want +got):\n%s", diff)
	}
	for k, v := range map[string]string{"Authorization": "Bearer tok", "User-Agent": "loadgen/1", "Content-Encoding": "gzip", "Content-Type": "application/json"} {
		if got.Get(k) != v {
			t.Errorf("%s = %q, want %q", k, got.Get(k), v)
		}
	}
	if _, err := NewClient(ClientOptions{URL: "ftp://x"}); err == nil {
		t.Error("NewClient took an ftp URL")
	}
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Nothing listens: the error is the network's, not a StatusError, and
// the reporter backs off rather than spinning.
func TestEndpointGone(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ob := outbox.New(openDB(t), outbox.Options{})
	hc := NewHTTPClient(nil)
	hc.RetryMax = 0 // count the reporter's tries, not the client's
	c, err := NewClient(ClientOptions{URL: "http://" + addr, HTTP: hc})
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(fast(ob, c))
	if err != nil {
		t.Fatal(err)
	}
	emit(t, r, "one")
	stop := start(t, r)
	time.Sleep(300 * time.Millisecond)
	stop()
	if n := testutil.ToFloat64(r.m.errors.WithLabelValues("transport")); n < 1 || n > 20 {
		t.Errorf("transport errors = %v in 300ms; want a backoff, not a spin", n)
	}
	if queued(t, ob) != 1 {
		t.Error("the record was lost")
	}
}

// An event asks for an early heartbeat: a host whose engine just switched
// shows its new version to a waiting rollout within seconds, not a whole
// interval later. Two heartbeats are never closer than soonGap.
func TestEventBringsAHeartbeatSooner(t *testing.T) {
	ob := outbox.New(openDB(t), outbox.Options{})
	o := fast(ob, nil)
	o.Interval = time.Hour
	var mu sync.Mutex
	var beats []time.Time
	o.Heartbeat = func(ctx context.Context) (wire.Heartbeat, error) {
		mu.Lock()
		beats = append(beats, time.Now())
		mu.Unlock()
		return heartbeat(ctx)
	}
	r, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	start(t, r)
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(beats) }
	eventually(t, "the first heartbeat", func() bool { return count() == 1 })
	emit(t, r, "engine.upgrade.succeeded", "engine.upgrade.succeeded")
	eventually(t, "a heartbeat soon after the event, not an hour later", func() bool { return count() == 2 })
	mu.Lock()
	gap := beats[1].Sub(beats[0])
	mu.Unlock()
	if gap < r.soonGap()-50*time.Millisecond {
		t.Errorf("early heartbeat %v after the last; want at least %v between heartbeats", gap, r.soonGap())
	}
	time.Sleep(200 * time.Millisecond)
	if n := count(); n != 2 {
		t.Errorf("%d heartbeats; two events in a row must bring one early heartbeat, not one each", n)
	}
}
