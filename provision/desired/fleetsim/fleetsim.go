// Package fleetsim simulates a fleet of Berth agents against a real
// control endpoint, for end-to-end tests and benchmarks of rollouts.
//
// Each simulated host is what an agent is to the endpoint, built from the
// agent's own parts: a telemetry/report Reporter writing heartbeats to an
// outbox in the host's own agent.db file and sending them, and a
// provision/desired Poller long polling the host's desired state (keeping
// it in that agent.db). What a real agent does with a desired version (a
// health-gated engine upgrade, a self-update) is simulated: a host
// switches to the version at once, or, when told to fail on it, fails the
// way a real host does (see Failure). Every answer a host receives is kept
// with its time (Host.History), so a test can say exactly when each host
// was told what.
//
// Each host is one goroutine, which owns its Reporter's goroutines; Start
// starts them and Stop stops them all. The hosts share two HTTP clients
// (reports, long polls), whose connection pools are sized to the fleet.
//
// Keep Options.Dir on tmpfs (/dev/shm) for large fleets: each heartbeat is
// a transaction in the host's agent.db, and fsync on a disk costs more
// than the rest of a simulated host.
package fleetsim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/berthhq/berth/control/wire"
	"github.com/berthhq/berth/internal/hostid"
	"github.com/berthhq/berth/internal/statedb"
	"github.com/berthhq/berth/provision/desired"
	"github.com/berthhq/berth/telemetry/outbox"
	"github.com/berthhq/berth/telemetry/report"
)

// Spec is one simulated host as it starts.
type Spec struct {
	// ID is the agent id (internal/hostid rules).
	ID     string
	Labels map[string]string
	// OS and Arch default to linux and amd64.
	OS, Arch string
	// Flavor and Engine are the engine it runs; Agent its agent version.
	Flavor, Engine, Agent string
	// Tokens is the host's bearer token source; nil sends none.
	Tokens report.TokenSource
}

// Options wire a fleet.
type Options struct {
	// URL is the control endpoint's base (control.url).
	URL string
	// Dir holds each host's agent.db as <Dir>/<id>.db; required.
	Dir string
	// Interval is control.reportInterval (default report.DefaultInterval);
	// the first heartbeat comes within it.
	Interval time.Duration
	// Wait is each long poll's ?wait= (default wire.DefaultWait).
	Wait time.Duration
	// Jitter bounds the random pause before each poll (default
	// desired.DefaultJitter).
	Jitter time.Duration
	// Logger receives the hosts' logs; nil discards them.
	Logger *slog.Logger
}

// Failure is how a host takes a version it is told to run.
type Failure int

// The Failures.
const (
	// Works: the host switches to the version at once and stays Healthy.
	Works Failure = iota
	// Rejects: the version fails the host's health gate and is rolled
	// back; the host keeps its version and reports the version in
	// Heartbeat.Rejected (reason rolled-back), as a real agent does.
	Rejects
	// Sickens: the host switches and then reports Unhealthy.
	Sickens
	// Dies: the host switches and then sends nothing more (it still
	// polls, so that a test sees what it is told).
	Dies
)

// Change is one desired state a host received.
type Change struct {
	// Time is when the host received it.
	Time    time.Time
	Desired wire.Desired
}

// Fleet is a running set of simulated hosts.
type Fleet struct {
	o      Options
	hosts  []*Host
	byID   map[string]*Host
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	rules map[rule]Failure
}

// rule names a version of a kind.
type rule struct{ kind, version string }

// Start starts one host per spec and returns at once; the hosts run until
// Stop (or ctx ends).
func Start(ctx context.Context, o Options, specs []Spec) (*Fleet, error) {
	if o.Dir == "" {
		return nil, errors.New("fleetsim: Options.Dir is required (each host keeps an agent.db there)")
	}
	if o.Interval <= 0 {
		o.Interval = report.DefaultInterval
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	f := &Fleet{o: o, byID: map[string]*Host{}, rules: map[rule]Failure{}}
	reports, polls := pooled(report.NewHTTPClient(nil), len(specs)), pooled(desired.NewHTTPClient(nil), len(specs))
	for _, s := range specs {
		h, err := f.newHost(ctx, s, reports, polls)
		if err != nil {
			return nil, err
		}
		f.hosts = append(f.hosts, h)
		f.byID[s.ID] = h
	}
	ctx, f.cancel = context.WithCancel(ctx)
	for _, h := range f.hosts {
		f.wg.Go(func() { h.run(ctx) })
	}
	return f, nil
}

// pooled sizes c's idle connections to a fleet of n, each host holding
// its own as an agent does.
func pooled(c *retryablehttp.Client, n int) *retryablehttp.Client {
	if tr, ok := c.HTTPClient.Transport.(*http.Transport); ok {
		tr.MaxIdleConnsPerHost = max(n, 2)
		tr.MaxIdleConns = max(n, 2)
	}
	return c
}

// Stop stops every host and waits for them. Their agent.db files stay.
func (f *Fleet) Stop() {
	f.cancel()
	f.wg.Wait()
}

// Hosts returns the hosts in the order of the specs.
func (f *Fleet) Hosts() []*Host { return slices.Clone(f.hosts) }

// Host returns the host with id, nil when there is none.
func (f *Fleet) Host(id string) *Host { return f.byID[id] }

// On sets how every host takes version of kind (wire.KindEngine or
// wire.KindAgent), unless the host has its own rule (Host.On).
func (f *Fleet) On(kind, version string, how Failure) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules[rule{kind, version}] = how
}

func (f *Fleet) rule(r rule) Failure {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rules[r]
}

func (f *Fleet) newHost(ctx context.Context, s Spec, reports, polls *retryablehttp.Client) (*Host, error) {
	if err := hostid.Validate(s.ID); err != nil {
		return nil, fmt.Errorf("fleetsim: host %q: %w", s.ID, err)
	}
	if s.OS == "" {
		s.OS = "linux"
	}
	if s.Arch == "" {
		s.Arch = "amd64"
	}
	h := &Host{spec: s, fleet: f, state: "Healthy", flavor: s.Flavor, engine: s.Engine, agent: s.Agent, rules: map[rule]Failure{}}
	if err := os.MkdirAll(f.o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("fleetsim: %w", err)
	}
	db, err := statedb.OpenWith(ctx, filepath.Join(f.o.Dir, s.ID+".db"), statedb.Options{Logger: f.o.Logger})
	if err != nil {
		return nil, fmt.Errorf("fleetsim: host %s: %w", s.ID, err)
	}
	log := f.o.Logger.With("host", s.ID)
	rc, err := report.NewClient(report.ClientOptions{URL: f.o.URL, Tokens: s.Tokens, HTTP: reports, UserAgent: "berth-fleetsim", Logger: log})
	if err != nil {
		return nil, fmt.Errorf("fleetsim: %w", err)
	}
	h.reporter, err = report.New(report.Options{Agent: s.ID, Outbox: outbox.New(db, outbox.Options{}), Client: rc,
		Interval: f.o.Interval, Heartbeat: h.heartbeat, MinBackoff: 250 * time.Millisecond, MaxBackoff: 5 * time.Second, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("fleetsim: %w", err)
	}
	dc, err := desired.NewClient(desired.ClientOptions{URL: f.o.URL, Tokens: s.Tokens, HTTP: polls, UserAgent: "berth-fleetsim", Logger: log})
	if err != nil {
		return nil, fmt.Errorf("fleetsim: %w", err)
	}
	h.poller, err = desired.New(ctx, desired.Options{Agent: s.ID, Client: dc, DB: db, Wait: f.o.Wait, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("fleetsim: %w", err)
	}
	h.jitter = f.o.Jitter
	if h.jitter <= 0 {
		h.jitter = desired.DefaultJitter
	}
	return h, nil
}

// Host is one simulated host.
type Host struct {
	spec     Spec
	fleet    *Fleet
	reporter *report.Reporter
	poller   *desired.Poller
	jitter   time.Duration

	mu       sync.Mutex
	state    string
	silent   bool
	flavor   string
	engine   string
	agent    string
	rejected []wire.Rejected
	rules    map[rule]Failure
	history  []Change
}

// ID is the host's agent id.
func (h *Host) ID() string { return h.spec.ID }

// On sets how this host takes version of kind, over the fleet's rule.
func (h *Host) On(kind, version string, how Failure) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.rules[rule{kind, version}] = how
}

// SetState sets the state the host reports (Healthy, Degraded, Unhealthy).
func (h *Host) SetState(state string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.state = state
}

// Silence stops (true) or resumes (false) the host's heartbeats. A silent
// host still polls and records what it is told, and applies nothing.
func (h *Host) Silence(on bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.silent = on
}

// Status is a host's simulated state now.
type Status struct {
	State, Flavor, Engine, Agent string
	Silent                       bool
	Rejected                     []wire.Rejected
	// Desired is the last answer received; ok false while none came.
	Desired wire.Desired
	Told    bool
}

// Status returns the host's state now.
func (h *Host) Status() Status {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := Status{State: h.state, Flavor: h.flavor, Engine: h.engine, Agent: h.agent, Silent: h.silent, Rejected: slices.Clone(h.rejected)}
	if n := len(h.history); n > 0 {
		st.Desired, st.Told = h.history[n-1].Desired, true
	}
	return st
}

// History returns every desired state the host received, oldest first.
func (h *Host) History() []Change {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.history)
}

// run is the host's loop: it owns the Reporter, and polls and applies its
// desired state until ctx ends. Polling is done here rather than by
// Poller.Run so that no answer is missed between two reads (Changed
// coalesces signals) and each is applied in the order received.
func (h *Host) run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { h.reporter.Run(ctx) })
	defer wg.Wait()
	failures := 0
	for {
		pause := rand.N(h.jitter + 1)
		if failures > 0 {
			pause = min(time.Second<<min(failures, 5), 30*time.Second)/2 + rand.N(time.Second)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
		before, _ := h.poller.Current()
		if err := h.poller.Poll(ctx); err != nil {
			failures++
			continue
		}
		failures = 0
		if a, ok := h.poller.Current(); ok && a.ETag != before.ETag {
			h.apply(a)
		}
	}
}

// apply records an answer and acts on it as the host's rules say.
func (h *Host) apply(a desired.Answer) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.history = append(h.history, Change{Time: a.Time, Desired: a.Desired})
	if h.silent {
		return
	}
	if e := a.Desired.Engine; e != nil && (e.Version != h.engine || e.Flavor != h.flavor) {
		if h.take(wire.KindEngine, e.Version, a.Time) {
			h.flavor, h.engine = e.Flavor, e.Version
		}
	}
	if g := a.Desired.Agent; g != nil && g.Version != h.agent {
		if h.take(wire.KindAgent, g.Version, a.Time) {
			h.agent = g.Version
		}
	}
}

// take says whether the host switches to version of kind, and sets what
// follows from its rule. h.mu is held.
func (h *Host) take(kind, version string, now time.Time) bool {
	how, ok := h.rules[rule{kind, version}]
	if !ok {
		how = h.fleet.rule(rule{kind, version})
	}
	switch how {
	case Rejects:
		reason := wire.RejectedRolledBack
		if kind == wire.KindAgent {
			reason = wire.RejectedBlacklisted
		}
		h.rejected = slices.DeleteFunc(h.rejected, func(r wire.Rejected) bool { return r.Kind == kind && r.Version == version })
		h.rejected = append([]wire.Rejected{{Kind: kind, Version: version, Reason: reason, Message: "simulated failure", Time: now.UTC()}}, h.rejected...)
		h.rejected = h.rejected[:min(len(h.rejected), wire.MaxRejected)]
		return false
	case Sickens:
		h.state = "Unhealthy"
	case Dies:
		h.silent = true
	}
	return true
}

// heartbeat is the Reporter's: the host's state now. A silent host's
// heartbeat fails, and the Reporter skips it.
func (h *Host) heartbeat(context.Context) (wire.Heartbeat, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.silent {
		return wire.Heartbeat{}, errors.New("simulated host is silent")
	}
	now := time.Now().UTC()
	ok := "ok"
	if h.state != "Healthy" {
		ok = "fail"
	}
	return wire.Heartbeat{
		State:        h.state,
		Checks:       []wire.Check{{Name: "engine", Status: ok, Time: now}},
		Engine:       wire.Engine{Flavor: h.flavor, Version: h.engine, Active: h.engine != "", Healthy: h.state == "Healthy"},
		AgentVersion: h.agent,
		Labels:       h.spec.Labels,
		OSBuild:      "fleetsim",
		OS:           h.spec.OS,
		Arch:         h.spec.Arch,
		Rejected:     slices.Clone(h.rejected),
	}, nil
}
