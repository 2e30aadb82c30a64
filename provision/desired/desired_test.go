package desired

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/berthhq/berth/control/wire"
	"github.com/berthhq/berth/internal/statedb"
	"github.com/berthhq/berth/provision/desired/desiredtest"
	"github.com/berthhq/berth/telemetry/report"
)

// peer is desiredtest's stand-in of the endpoint, served, with a token
// per host.
type peer struct {
	*desiredtest.Peer
	srv *httptest.Server
}

func newPeer(t *testing.T) *peer {
	p := &peer{Peer: desiredtest.New()}
	p.Tokens = map[string]string{"tok-a": "host-a", "tok-b": "host-b"}
	p.srv = httptest.NewServer(p.Peer)
	t.Cleanup(p.srv.Close)
	return p
}

func (p *peer) count() int { return len(p.Waits()) }

func testDB(t *testing.T) *statedb.DB {
	db, err := statedb.Open(filepath.Join(t.TempDir(), "agent.db"))
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func newTestClient(t *testing.T, url, token string) *Client {
	c, err := NewClient(ClientOptions{URL: url, Tokens: staticToken(token)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type staticToken string

func (s staticToken) Token(context.Context, bool) (string, error) { return string(s), nil }

func engineAt(v string) wire.Desired {
	return wire.Desired{Engine: &wire.DesiredEngine{Flavor: "docker", Version: v}, Rollouts: []string{"r1"}}
}

// The poller follows the endpoint: an answer at start, a change seen
// within a fraction of a second of it (the long poll), kept in agent.db
// for the next run, and few requests while nothing changes.
func TestPollerFollowsTheEndpoint(t *testing.T) {
	srv := newPeer(t)
	srv.Set("host-a", engineAt("1.0.0"))
	db := testDB(t)
	p, err := New(context.Background(), Options{Agent: "host-a", Client: newTestClient(t, srv.srv.URL, "tok-a"), DB: db, Wait: 2 * time.Second, Jitter: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := p.Current(); ok {
		t.Fatal("Current is known before any answer")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	waitChange(t, p, "1.0.0")
	// Nothing changes for 3 s: with 2 s long polls, two or three
	// requests, not one per jitter.
	before := srv.count()
	time.Sleep(3 * time.Second)
	if n := srv.count() - before; n > 3 {
		t.Errorf("%d requests in 3 s of no change with 2 s long polls; want at most 3", n)
	}
	start := time.Now()
	srv.Set("host-a", engineAt("1.1.0"))
	waitChange(t, p, "1.1.0")
	if d := time.Since(start); d > time.Second {
		t.Errorf("change seen %v after it was made; want well under a second with a long poll", d)
	}
	waits := srv.Waits()
	if waits[0] != "" || waits[len(waits)-1] != "2s" {
		t.Errorf("wait parameters %q: want none on the first poll, 2s once an ETag is known", waits)
	}
	// The next run starts from what agent.db kept.
	p2, err := New(context.Background(), Options{Agent: "host-a", Client: p.o.Client, DB: db})
	if err != nil {
		t.Fatal(err)
	}
	a, ok := p2.Current()
	if !ok || a.Desired.Engine.Version != "1.1.0" || a.ETag == "" {
		t.Errorf("a new poller on the same agent.db holds %+v (known %v); want 1.1.0 with its ETag", a, ok)
	}
}

func waitChange(t *testing.T, p *Poller, want string) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	changed := p.Changed()
	for {
		if a, ok := p.Current(); ok && a.Desired.Engine != nil && a.Desired.Engine.Version == want {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			a, _ := p.Current()
			t.Fatalf("desired engine never became %s; holds %+v", want, a.Desired.Engine)
		}
	}
}

// Hostile or broken answers are refused whole and the last good answer
// stays.
func TestHostileAnswers(t *testing.T) {
	big := `{"engine":{"flavor":"docker","version":"9.9.9"},"rollouts":["` + strings.Repeat("a", MaxAnswerBytes) + `"]}`
	for _, tc := range []struct {
		name   string
		status int
		etag   string
		body   string
		want   string
	}{
		{"over the size limit", 200, `"x"`, big, "over 65536 bytes"},
		{"not JSON", 200, `"x"`, `<html>hello</html>`, "not a desired state"},
		{"wrong types", 200, `"x"`, `{"engine":{"flavor":"docker","version":9}}`, "not a desired state"},
		{"trailing data", 200, `"x"`, `{"rollouts":[]}{"rollouts":[]}`, "data after"},
		{"a version with a slash", 200, `"x"`, `{"engine":{"flavor":"docker","version":"../../etc"}}`, "engine.version"},
		{"no flavor", 200, `"x"`, `{"engine":{"version":"1.0.0"}}`, "engine.flavor: missing"},
		{"bad agent version", 200, `"x"`, `{"agent":{"version":""}}`, "agent.version"},
		{"too many rollouts", 200, `"x"`, `{"rollouts":[` + strings.Repeat(`"r",`, MaxRollouts) + `"r"]}`, "rollouts: 65"},
		{"no ETag", 200, ``, `{"rollouts":[]}`, "not a quoted entity tag"},
		{"unquoted ETag", 200, `abc`, `{"rollouts":[]}`, "not a quoted entity tag"},
		{"server error", 500, ``, `{"code":"internal","message":"boom"}`, "500"},
		{"forbidden", 403, ``, `{"code":"forbidden","message":"not yours"}`, "not yours"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newPeer(t)
			srv.Set("host-a", engineAt("1.0.0"))
			p, err := New(context.Background(), Options{Agent: "host-a", Client: newTestClient(t, srv.srv.URL, "tok-a"), DB: testDB(t), Wait: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Poll(context.Background()); err != nil {
				t.Fatal(err)
			}
			good, _ := p.Current()
			srv.Set("host-a", engineAt("2.0.0")) // the change the hostile answer stands for
			srv.Misbehave(func(w http.ResponseWriter, r *http.Request) bool {
				if tc.etag != "" {
					w.Header().Set("ETag", tc.etag)
				}
				w.WriteHeader(tc.status)
				w.Write([]byte(tc.body))
				return true
			})
			err = p.Poll(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Poll = %v; want an error containing %q", err, tc.want)
			}
			if got, _ := p.Current(); !cmp.Equal(got, good) {
				t.Errorf("the answer changed to %+v after a refused one; want %+v kept", got, good)
			}
			if st := p.Status(); st.FailingSince.IsZero() || st.LastError == "" {
				t.Errorf("status %+v does not show the failure", st)
			}
		})
	}
}

// One host cannot read another's state; a 401 fetches a fresh token once.
func TestAuth(t *testing.T) {
	srv := newPeer(t)
	srv.Set("host-a", engineAt("1.0.0"))
	srv.Set("host-b", engineAt("7.0.0"))
	c := newTestClient(t, srv.srv.URL, "tok-b")
	_, _, err := c.Get(context.Background(), "host-a", "", 0)
	var se *report.StatusError
	if !errors.As(err, &se) || se.Status != http.StatusForbidden {
		t.Fatalf("host-b reading host-a's state: %v; want a 403 StatusError", err)
	}
	rot := &rotating{}
	c2, err := NewClient(ClientOptions{URL: srv.srv.URL, Tokens: rot})
	if err != nil {
		t.Fatal(err)
	}
	a, changed, err := c2.Get(context.Background(), "host-a", "", 0)
	if err != nil || !changed || a.Desired.Engine.Version != "1.0.0" {
		t.Fatalf("Get with a stale then fresh token = %+v, %v, %v", a, changed, err)
	}
	if rot.refreshes != 1 {
		t.Errorf("%d token refreshes; want 1 after the 401", rot.refreshes)
	}
}

// rotating gives a stale token until asked to refresh.
type rotating struct{ refreshes int }

func (r *rotating) Token(_ context.Context, refresh bool) (string, error) {
	if refresh {
		r.refreshes++
		return "tok-a", nil
	}
	return "expired", nil
}

// After failures the poller backs off with full jitter, capped; a
// Retry-After is honoured within the cap.
func TestBackoff(t *testing.T) {
	p := &Poller{o: Options{MinBackoff: time.Second, MaxBackoff: time.Minute}}
	p.draw = func(n time.Duration) time.Duration { return n - 1 } // the largest draw
	for _, tc := range []struct {
		n    int
		err  error
		want time.Duration
	}{
		{1, errors.New("refused"), 2*time.Second - 1},
		{3, errors.New("refused"), 8*time.Second - 1},
		{10, errors.New("refused"), time.Minute - 1},
		{100, errors.New("refused"), time.Minute - 1},
		{1, &report.StatusError{Status: 429, RetryAfter: 30 * time.Second}, 30 * time.Second},
		{1, &report.StatusError{Status: 503, RetryAfter: time.Hour}, time.Minute},
	} {
		if got := p.backoff(tc.n, tc.err); got != tc.want {
			t.Errorf("backoff(%d, %v) = %v, want %v", tc.n, tc.err, got, tc.want)
		}
	}
	p.draw = func(time.Duration) time.Duration { return 0 }
	if got := p.backoff(5, errors.New("x")); got != time.Second {
		t.Errorf("smallest backoff = %v, want MinBackoff", got)
	}
}

// An endpoint that is down is asked with growing pauses, not in a loop,
// and the poller catches up once it is back.
func TestPollerBacksOffWhileDown(t *testing.T) {
	srv := newPeer(t)
	srv.Set("host-a", engineAt("3.0.0"))
	var down sync.Mutex
	isDown := true
	srv.Misbehave(func(w http.ResponseWriter, r *http.Request) bool {
		down.Lock()
		defer down.Unlock()
		if isDown {
			desiredtest.WriteError(w, http.StatusInternalServerError, "internal", "down")
		}
		return isDown
	})
	p, err := New(context.Background(), Options{Agent: "host-a", Client: newTestClient(t, srv.srv.URL, "tok-a"), DB: testDB(t), Jitter: time.Millisecond, MinBackoff: 50 * time.Millisecond, MaxBackoff: 400 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	time.Sleep(2 * time.Second)
	// Pauses grow 50, 100, 200, 400 ms (drawn below each): a loop would
	// make hundreds of requests; the backoff a dozen or so.
	if n := srv.count(); n < 3 || n > 40 {
		t.Errorf("%d requests in 2 s against a failing endpoint; want a backoff (3..40)", n)
	}
	down.Lock()
	isDown = false
	down.Unlock()
	waitChange(t, p, "3.0.0")
	if st := p.Status(); !st.FailingSince.IsZero() || st.LastError != "" {
		t.Errorf("status after recovery %+v; want no failure", st)
	}
}

func FuzzDecodeAnswer(f *testing.F) {
	f.Add([]byte(`{"engine":{"flavor":"docker","version":"1.0.0"},"agent":{"version":"2.0.0"},"rollouts":["r1"]}`), `"abc"`)
	f.Add([]byte(`{"rollouts":[]}`), `W/"x"`)
	f.Add([]byte(`{"engine":null}`), `""`)
	f.Add([]byte(`[]`), `"a"`)
	f.Fuzz(func(t *testing.T, body []byte, etag string) {
		a, err := decodeAnswer(body, etag)
		if err != nil {
			if !errors.Is(err, ErrBadAnswer) {
				t.Fatalf("error %v does not wrap ErrBadAnswer", err)
			}
			return
		}
		if validate(a.Desired) != nil || a.ETag == "" {
			t.Fatalf("accepted an answer that does not validate: %+v", a)
		}
	})
}
