//go:build linux

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berthhq/berth/control/client"
	"github.com/berthhq/berth/control/store"
	"github.com/berthhq/berth/control/wire"
	"github.com/berthhq/berth/internal/secret"
	"github.com/berthhq/berth/internal/testenv"
	"github.com/berthhq/berth/internal/testenv/postgres"
	"github.com/berthhq/berth/provision/desired/fleetsim"
)

// replicaHosts is the simulated fleet of the replica test.
const replicaHosts = 60

// replicaSelector is the label of that fleet.
var replicaSelector = map[string]string{"ring": "replicas"}

// failover is the load balancer in front of the replicas, as a
// deployment has one: each request goes to the next replica in turn, and
// to another when the chosen one refuses the connection (it is down).
// Requests in flight on a replica that dies fail (502), as they do
// behind a real balancer; the agents' clients retry them.
type failover struct {
	backends []string // host:port
	next     atomic.Uint64
	tr       *http.Transport
}

func (f *failover) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		var err error
		if body, err = io.ReadAll(req.Body); err != nil {
			return nil, err
		}
		req.Body.Close()
	}
	first := int(f.next.Add(1))
	var err error
	for k := range f.backends {
		out := req.Clone(req.Context())
		out.URL.Scheme, out.URL.Host = "http", f.backends[(first+k)%len(f.backends)]
		out.Host = out.URL.Host
		out.Body = io.NopCloser(bytes.NewReader(body))
		var resp *http.Response
		resp, err = f.tr.RoundTrip(out)
		var op *net.OpError
		if err == nil || !errors.As(err, &op) || op.Op != "dial" {
			return resp, err
		}
	}
	return nil, err
}

// replicaRig is two berth-control serve replicas (their own processes)
// on one PostgreSQL database, a load balancer in front of them, a
// simulated fleet reporting and long polling through it, and an
// operator's client.
type replicaRig struct {
	t        *testing.T
	replicas []*controlServer
	fleet    *fleetsim.Fleet
	op       *client.Client
	kills    map[string]int
}

func newReplicaRig(t *testing.T) *replicaRig {
	t.Helper()
	if testing.Short() {
		t.Skip("starts PostgreSQL and two berth-control serve processes")
	}
	dsn := postgres.Start(t).NewDatabase(t)
	r := &replicaRig{t: t, kills: map[string]int{}}
	// One after the other: the first applies the migrations.
	for range 2 {
		r.replicas = append(r.replicas, startControl(t, dsn, "--auth", "token"))
	}
	lb := &failover{tr: &http.Transport{MaxIdleConnsPerHost: 4 * replicaHosts, ResponseHeaderTimeout: wire.MaxWait + time.Minute}}
	for _, c := range r.replicas {
		lb.backends = append(lb.backends, c.addr)
	}
	proxy := httptest.NewServer(&httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {}, Transport: lb,
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			http.Error(w, err.Error(), http.StatusBadGateway)
		}})
	t.Cleanup(func() { proxy.CloseClientConnections(); proxy.Close(); lb.tr.CloseIdleConnections() })

	ctx := context.Background()
	st, err := store.Open(ctx, dsn, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	_, opToken, err := st.IssueToken(ctx, store.RoleOperator, "replica-test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if r.op, err = client.New(client.Options{Server: proxy.URL, Token: secret.Value(opToken), RetryMax: 10}); err != nil {
		t.Fatal(err)
	}
	specs := make([]fleetsim.Spec, replicaHosts)
	for i := range specs {
		id := fmt.Sprintf("replica-host-%03d", i)
		_, tok, err := st.IssueToken(ctx, store.RoleAgent, id, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		specs[i] = fleetsim.Spec{ID: id, Labels: replicaSelector, Flavor: "docker", Engine: replicaVersion(0), Agent: "1.0.0", Tokens: staticToken(tok)}
	}
	r.fleet, err = fleetsim.Start(ctx, fleetsim.Options{URL: proxy.URL, Dir: t.TempDir(), Interval: time.Second, Jitter: 500 * time.Millisecond}, specs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.fleet.Stop)
	waitFor(t, time.Minute, "every simulated host to report", func() bool {
		page, err := r.op.AllHosts(ctx, wire.HostFilter{Labels: replicaSelector}, replicaHosts+1)
		return err == nil && len(page.Hosts) == replicaHosts
	})
	return r
}

// replicaVersion is the engine version of round i.
func replicaVersion(i int) string { return fmt.Sprintf("1.%d.0", i) }

// TestRolloutSurvivesReplicaSIGKILL is issue 11's replicas check: two
// serve replicas on one PostgreSQL run the rollout controller, and while
// a rollout of the simulated fleet runs, one of them (either) is killed
// with SIGKILL at random moments and started again, as a service manager
// does. Each round's rollout must complete, with a stored history of
// exactly one decision per step (create, start-wave, advance, advance,
// complete; no wave advanced twice), every host on the target, and no
// host told before its wave. BERTH_SOAK_ROUNDS sets the rounds (`make
// soak`: ROLLOUT_REPLICA_SOAK_ROUNDS).
func TestRolloutSurvivesReplicaSIGKILL(t *testing.T) {
	r := newReplicaRig(t)
	rounds := testenv.SoakRounds(t, 3)
	for i := 1; i <= rounds; i++ {
		start := time.Now()
		ro := r.round(replicaVersion(i))
		t.Logf("round %d: rollout to %s completed in %s; kills so far %v", i, ro.Version, time.Since(start).Round(time.Millisecond), r.kills)
	}
	total := 0
	for _, n := range r.kills {
		total += n
	}
	t.Logf("%d kills over %d rounds (%v); every rollout completed with one decision per step", total, rounds, r.kills)
}

// round creates a rollout to version over the fleet and kills replicas
// until it ends, then checks it.
func (r *replicaRig) round(version string) wire.Rollout {
	t := r.t
	t.Helper()
	ctx := context.Background()
	spec := wire.RolloutSpec{Selector: replicaSelector, Kind: wire.KindEngine, Flavor: "docker", Version: version,
		Waves: []float64{10, 50, 100}, Bake: wire.Duration(time.Second)}.WithDefaults()
	ro, err := r.op.CreateRollout(ctx, spec)
	if err != nil {
		t.Fatalf("create the rollout to %s: %v", version, err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { r.killer(stop) })
	deadline := time.Now().Add(3 * time.Minute)
	for ro.State == wire.RolloutRunning {
		if time.Now().After(deadline) {
			close(stop)
			wg.Wait()
			t.Fatalf("rollout to %s still %s after 3 minutes: %v; history %s", version, ro.State, ro.ByState, replicaHistory(ro))
		}
		time.Sleep(200 * time.Millisecond)
		if got, err := r.op.Rollout(ctx, ro.ID); err == nil {
			ro = got
		}
	}
	close(stop)
	wg.Wait()
	r.check(ro)
	return ro
}

// killer SIGKILLs a random replica at random moments until stop, and
// starts it again after a random pause; both are up when it returns.
func (r *replicaRig) killer(stop chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-time.After(rand.N(3 * time.Second)):
		}
		i := rand.IntN(len(r.replicas))
		r.replicas[i].p.kill()
		r.kills[fmt.Sprintf("replica-%d", i+1)]++
		time.Sleep(rand.N(time.Second))
		r.replicas[i].start()
	}
}

// check asserts what a completed round must show.
func (r *replicaRig) check(ro wire.Rollout) {
	t := r.t
	t.Helper()
	want := []string{wire.ActionCreate, wire.ActionStart, wire.ActionAdvance, wire.ActionAdvance, wire.ActionComplete}
	var got []string
	for i, d := range ro.History {
		got = append(got, d.Action)
		if d.Seq != i+1 {
			t.Errorf("decision %d has seq %d", i+1, d.Seq)
		}
	}
	if ro.State != wire.RolloutCompleted || !slices.Equal(got, want) {
		t.Fatalf("rollout to %s: %s; want one decision per step %v, history %s", ro.Version, ro.State, want, replicaHistory(ro))
	}
	// An advance names the wave it starts.
	for i, d := range ro.History[2:4] {
		if d.Wave != i+1 {
			t.Errorf("advance %d starts wave index %d, want %d: %s", i+1, d.Wave, i+1, replicaHistory(ro))
		}
	}
	if ro.ByState[wire.HostHealthy] != replicaHosts {
		t.Errorf("completed with hosts %v; want all %d healthy", ro.ByState, replicaHosts)
	}
	// No host was told the target before its wave started: before wave
	// k+1 started, at most waves 0..k's hosts had it.
	cum := 0
	for k, w := range ro.WaveStatus {
		cum += w.Hosts
		if k+1 == len(ro.WaveStatus) {
			break
		}
		next := ro.WaveStatus[k+1].Started
		if next == nil {
			t.Fatalf("wave %d never started: %+v", k+2, ro.WaveStatus)
		}
		if told := r.toldBefore(ro.Version, *next); told > cum {
			t.Errorf("%d hosts were told %s before wave %d started; waves 1..%d hold %d", told, ro.Version, k+2, k+1, cum)
		}
	}
	for _, h := range r.fleet.Hosts() {
		if s := h.Status(); s.Engine != ro.Version {
			t.Errorf("host %s runs %s after the rollout to %s completed", h.ID(), s.Engine, ro.Version)
		}
	}
}

// toldBefore counts the hosts that received version before at.
func (r *replicaRig) toldBefore(version string, at time.Time) int {
	n := 0
	for _, h := range r.fleet.Hosts() {
		if slices.ContainsFunc(h.History(), func(c fleetsim.Change) bool {
			return c.Desired.Engine != nil && c.Desired.Engine.Version == version && c.Time.Before(at)
		}) {
			n++
		}
	}
	return n
}

func replicaHistory(ro wire.Rollout) string {
	var b strings.Builder
	for _, d := range ro.History {
		fmt.Fprintf(&b, "\n  %d %s wave %d %s→%s by %s: %s", d.Seq, d.Action, d.Wave, d.From, d.To, d.Who, d.Reason)
	}
	return b.String()
}
