package rollout_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/berthhq/berth/control/rollout"
	"github.com/berthhq/berth/control/store"
	"github.com/berthhq/berth/control/wire"
	"github.com/berthhq/berth/internal/testenv/postgres"
)

// T0 is the tests' clock origin.
var T0 = time.Date(2026, 5, 6, 7, 0, 0, 0, time.UTC)

// clock is a manual clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// simHost is a simulated agent: what it runs and reports.
type simHost struct {
	id       string
	labels   map[string]string
	os, arch string
	flavor   string
	engine   string
	agent    string
	state    string
	rejected []wire.Rejected
	// broken are versions this host cannot run: told one, it rolls back
	// by itself and reports it rejected.
	broken map[string]bool
	// silent hosts do not report.
	silent bool
	seq    uint64
}

// fleet is a store, a rollout service on it and simulated hosts that
// report through store.Ingest, as the server's report handler does.
type fleet struct {
	t     testing.TB
	st    *store.Store
	svc   *rollout.Service
	clock *clock
	hosts map[string]*simHost
	order []string
}

// backends runs f on SQLite and on PostgreSQL (one server for all its
// cases, a database each).
func backends(t *testing.T, f func(t *testing.T, dsn func(t testing.TB) string)) {
	t.Run("sqlite", func(t *testing.T) {
		f(t, func(t testing.TB) string { return "sqlite://" + filepath.Join(t.TempDir(), "control.db") })
	})
	t.Run("postgres", func(t *testing.T) {
		pg := postgres.Start(t)
		f(t, pg.NewDatabase)
	})
}

func openStore(t testing.TB, dsn string) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), dsn, store.Options{})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func newFleet(t testing.TB, dsn string, rel rollout.Releases) *fleet {
	f := &fleet{t: t, st: openStore(t, dsn), clock: &clock{now: T0}, hosts: map[string]*simHost{}}
	f.svc = rollout.New(rollout.Options{Store: f.st, Releases: rel, Now: f.clock.Now, Holder: "test"})
	return f
}

// add adds n hosts named prefix-000… with labels, on engine docker v and
// agent 1.0.0, Healthy, and reports them once.
func (f *fleet) add(prefix string, n int, labels map[string]string, engine string) []string {
	var ids []string
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("%s-%03d", prefix, i)
		f.hosts[id] = &simHost{id: id, labels: labels, os: "linux", arch: "amd64", flavor: "docker", engine: engine,
			agent: "1.0.0", state: "Healthy", broken: map[string]bool{}}
		f.order = append(f.order, id)
		ids = append(ids, id)
	}
	f.report(ids...)
	return ids
}

// report sends one heartbeat of each of ids (all hosts for none) at the
// clock's time.
func (f *fleet) report(ids ...string) {
	f.t.Helper()
	if len(ids) == 0 {
		ids = f.order
	}
	for _, id := range ids {
		h := f.hosts[id]
		if h.silent {
			continue
		}
		h.seq++
		rec := wire.Record{Seq: h.seq, Kind: wire.KindHeartbeat, Time: f.clock.Now(), Heartbeat: &wire.Heartbeat{
			State:  h.state,
			Engine: wire.Engine{Flavor: h.flavor, Version: h.engine, Active: true, Healthy: h.state == "Healthy"},
			AgentVersion: h.agent, Labels: h.labels, IntervalSeconds: 10, OS: h.os, Arch: h.arch,
			Rejected: h.rejected,
		}}
		if _, err := f.st.Ingest(context.Background(), wire.Batch{Agent: id, Records: []wire.Record{rec}}, f.clock.Now()); err != nil {
			f.t.Fatalf("ingest %s: %v", id, err)
		}
	}
}

// apply makes every reporting host act on its desired engine version as
// an agent does: move to it, or roll back by itself and report it
// rejected when it is broken there.
func (f *fleet) apply() {
	f.t.Helper()
	for _, id := range f.order {
		h := f.hosts[id]
		if h.silent {
			continue
		}
		d, _, err := f.svc.Desired(context.Background(), id)
		if err != nil {
			f.t.Fatalf("desired %s: %v", id, err)
		}
		if d.Engine == nil || d.Engine.Version == h.engine {
			continue
		}
		if h.broken[d.Engine.Version] {
			if !rejects(h, d.Engine.Version) {
				h.rejected = append([]wire.Rejected{{Kind: wire.KindEngine, Version: d.Engine.Version, Reason: wire.RejectedRolledBack, Time: f.clock.Now()}}, h.rejected...)
			}
			continue
		}
		h.engine, h.flavor = d.Engine.Version, d.Engine.Flavor
	}
}

func rejects(h *simHost, v string) bool {
	for _, r := range h.rejected {
		if r.Version == v {
			return true
		}
	}
	return false
}

// round is one beat of the simulation: time passes, hosts act on their
// desired state and report, and the controller takes a step.
func (f *fleet) round(id string, d time.Duration) wire.Rollout {
	f.t.Helper()
	f.clock.Add(d)
	f.apply()
	f.report()
	if _, err := f.svc.Evaluate(context.Background(), id); err != nil {
		f.t.Fatalf("evaluate %s: %v", id, err)
	}
	return f.get(id)
}

func (f *fleet) get(id string) wire.Rollout {
	f.t.Helper()
	r, err := f.svc.Get(context.Background(), id)
	if err != nil {
		f.t.Fatalf("get %s: %v", id, err)
	}
	return r
}

func (f *fleet) create(spec wire.RolloutSpec) wire.Rollout {
	f.t.Helper()
	r, err := f.svc.Create(context.Background(), "alice", spec)
	if err != nil {
		f.t.Fatalf("create: %v", err)
	}
	return r
}

// desiredEngine is the engine version host should run ("" for none).
func (f *fleet) desiredEngine(host string) string {
	f.t.Helper()
	d, _, err := f.svc.Desired(context.Background(), host)
	if err != nil {
		f.t.Fatalf("desired %s: %v", host, err)
	}
	if d.Engine == nil {
		return ""
	}
	return d.Engine.Version
}

// actions lists the actions of a rollout's history.
func actions(r wire.Rollout) []string {
	var out []string
	for _, d := range r.History {
		out = append(out, d.Action)
	}
	return out
}

func intp(n int) *int { return &n }

func floatp(p float64) *float64 { return &p }
