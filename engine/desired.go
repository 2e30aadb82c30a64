package engine

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/berthhq/berth/telemetry"
)

// Backoff of the desired version's resolution. A host re-reads the signed
// metadata every resolveEvery while it answers. While it does not, the next
// try waits a random time up to min(backoffMax, backoffBase·2^failures)
// (full jitter): ten thousand hosts in a storage outage then ask about
// once per backoffMax/2 each, spread out, instead of every few seconds in
// step.
const (
	resolveEvery = 5 * time.Minute
	backoffBase  = 5 * time.Second
	backoffMax   = 5 * time.Minute
)

// Desired keeps the version the engine should run, resolved from the pin or
// the channel's newest signed release, and the failure of its last
// resolution. Version is called by the daemon's loop; Check reads it.
type Desired struct {
	m   *Manager
	pin string
	log *slog.Logger
	// jitter draws from [0, n); rand.Int64N unless a test sets it.
	jitter func(n int64) int64

	mu       sync.Mutex
	version  string
	err      error
	failing  time.Time // since when resolution fails; zero while it works
	failures int
	next     time.Time // when to resolve again
}

// Desired returns the resolver of the desired version for pin (the
// engine.version of the config; "" for the channel's newest).
func (m *Manager) Desired(pin string) *Desired {
	return &Desired{m: m, pin: pin, log: m.log, jitter: rand.Int64N}
}

// Version resolves the desired version when it is due and returns the last
// one known ("" before the first success). A failure is logged once when
// it starts, and its end once when it ends; between, the engine check shows it.
func (d *Desired) Version(ctx context.Context, now time.Time) string {
	d.mu.Lock()
	due := now.After(d.next) || d.next.IsZero()
	d.mu.Unlock()
	if !due {
		return d.Current()
	}
	v, err := d.m.resolve(ctx, d.pin)
	if ctx.Err() != nil {
		return d.Current()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case err != nil:
		if d.failing.IsZero() {
			d.failing = now
			d.log.Error("cannot resolve the desired engine version; retrying with backoff, the engine keeps its version", "err", err)
		}
		d.err = err
		d.failures++
		d.next = now.Add(backoffWait(d.failures, d.jitter))
	default:
		if !d.failing.IsZero() {
			d.log.Info("desired engine version resolved again", "version", v, "failing_for", now.Sub(d.failing).Round(time.Second).String())
		} else if v != d.version {
			d.log.Info("desired engine version", "version", v)
		}
		d.version, d.err, d.failing, d.failures = v, nil, time.Time{}, 0
		d.next = now.Add(resolveEvery)
	}
	return d.version
}

// Current is the last version resolved, without resolving.
func (d *Desired) Current() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.version
}

// Err is the last resolution's failure, nil while it works.
func (d *Desired) Err() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.err
}

// failure is the current resolution failure, if any.
func (d *Desired) failure() (err error, since, next time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.err, d.failing, d.next
}

// backoffWait is the wait after the n-th failure in a row (n ≥ 1): a draw
// in [0, min(backoffMax, backoffBase·2^(n-1))), at least a second.
func backoffWait(n int, jitter func(int64) int64) time.Duration {
	ceiling := backoffMax
	if n <= 16 {
		ceiling = min(backoffMax, backoffBase<<(n-1))
	}
	return max(time.Second, time.Duration(jitter(int64(ceiling))))
}

// resolve is the desired version: the pin, else the channel's newest.
func (m *Manager) resolve(ctx context.Context, pin string) (string, error) {
	if pin != "" {
		return pin, CheckVersion(pin)
	}
	if m.o.Releases == nil {
		return "", fmt.Errorf("engine.version is empty and engine.releases.url is not set: nothing says which version to run")
	}
	t, err := m.find(ctx, "")
	if err != nil {
		return "", err
	}
	return t.Version, CheckVersion(t.Version)
}

// Check is the engine's health check: its API, its service, its version
// against the desired one and, while it fails, the desired version's
// resolution; on Windows the HCS and HNS checks. d may be nil (one-shot
// commands, which resolve nothing).
func (m *Manager) Check(d *Desired, pin string) telemetry.CheckFunc {
	return func(ctx context.Context) telemetry.Check {
		st, err := m.Status(ctx)
		c := statusCheck(st, err, pin)
		if d == nil {
			return c
		}
		rerr, since, next := d.failure()
		return withResolveFailure(c, rerr, since, next)
	}
}

// withResolveFailure adds a failing resolution of the desired version to a
// check that did not fail: the engine runs, but the host cannot learn what
// it should run (a storage outage, expired metadata), so it warns.
func withResolveFailure(c telemetry.Check, err error, since, next time.Time) telemetry.Check {
	if err == nil || c.Status == telemetry.Fail {
		return c
	}
	c.Status = telemetry.Warn
	c.Message = fmt.Sprintf("cannot resolve the desired engine version since %s: %v (next try %s); %s",
		since.UTC().Format(time.RFC3339), err, next.UTC().Format(time.RFC3339), c.Message)
	return c
}

// statusCheck judges one engine status: the API, the service, the version
// against the pin, and the platform's checks.
func statusCheck(st Status, err error, pin string) telemetry.Check {
	c := telemetry.Check{Name: "engine", Status: telemetry.OK}
	switch {
	case err != nil:
		c.Status, c.Message = telemetry.Fail, err.Error()
	case st.API == nil:
		c.Status, c.Message = telemetry.Fail, "engine API does not answer: "+st.APIError
	case st.Managed && !st.Running:
		c.Status, c.Message = telemetry.Fail, "engine service is not running"
	case st.Journal != nil:
		c.Status, c.Message = telemetry.Warn, fmt.Sprintf("%s to %s in progress (step %s)", st.Journal.Op, st.Journal.To, st.Journal.Step)
	case st.Managed && pin != "" && st.Active != pin:
		c.Status, c.Message = telemetry.Warn, fmt.Sprintf("engine runs %s, desired %s", st.Active, pin)
		if _, failed := st.Failed[pin]; failed {
			c.Message += " (the desired version failed its health gate and was rolled back)"
		}
	case !st.Healthy:
		c.Status, c.Message = telemetry.Fail, "engine unhealthy"
	default:
		c.Message = fmt.Sprintf("%s %s answers (API %s)", st.Flavor, st.API.Version, st.API.APIVersion)
		if st.Active != "" {
			c.Message += ", package " + st.Active
		}
	}
	for _, hc := range st.Host {
		if hc.Status == "fail" {
			c.Status, c.Message = telemetry.Fail, hc.Name+": "+hc.Message
		}
	}
	return c
}
