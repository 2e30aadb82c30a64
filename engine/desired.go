package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/berthhq/berth/engine/release"
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

// Desired keeps the version the engine should run, resolved from the pin,
// the control endpoint's desired state or the channel's newest signed
// release (SPEC "Which engine version"), and the failure of its last
// resolution. Version is called by the daemon's loop; Check reads it.
type Desired struct {
	m       *Manager
	pin     string
	control ControlFunc
	grace   time.Duration
	log     *slog.Logger
	// jitter draws from [0, n); rand.Int64N unless a test sets it.
	jitter func(n int64) int64

	mu       sync.Mutex
	version  string
	err      error
	failing  time.Time // since when resolution fails; zero while it works
	failures int
	next     time.Time // when to resolve again
	started  time.Time // first Version call, for the first answer's grace
	input    Control   // control's word the last resolution saw
	// keep: the engine stays on whatever version is active (control has
	// no opinion, or its version was refused); version is then unused.
	keep bool
	// named: version is control's, by name (not the channel's newest).
	named   bool
	refusal *Refusal
}

// Control is what the control endpoint says of this host's engine, as the
// agent last read it.
type Control struct {
	// Answered is true once control has answered this host, in this run
	// or an earlier one.
	Answered bool
	// Flavor and Version are control's desired engine; Version "" is no
	// opinion.
	Flavor, Version string
}

// ControlFunc returns control's current word on the engine.
type ControlFunc func() Control

// DesiredOptions configure DesiredWith.
type DesiredOptions struct {
	// Pin is engine.version; it wins over everything.
	Pin string
	// Control is set when the host has a control endpoint (control.url):
	// then only control's desired version moves an engine that runs.
	Control ControlFunc
	// FirstAnswerGrace is how long a host with no engine waits for
	// control's first answer before it installs the channel's newest
	// (default DefaultFirstAnswerGrace).
	FirstAnswerGrace time.Duration
}

// DefaultFirstAnswerGrace: a new host asks control within seconds; a
// minute covers a slow start without leaving a host engine-less for long
// when control is down.
const DefaultFirstAnswerGrace = time.Minute

// Refusal is a desired version from control that this host refused: it is
// not in the verified release metadata for this host's OS and
// architecture (or names another flavor). Nothing changes for it.
type Refusal struct {
	Version string
	Reason  string
	At      time.Time
}

// ErrNotSigned: control's desired engine version is not in this host's
// verified release metadata; the host refuses it and keeps its engine.
var ErrNotSigned = errors.New("not in the verified release metadata")

// Desired returns the resolver of the desired version for pin (the
// engine.version of the config; "" for the channel's newest), without a
// control endpoint.
func (m *Manager) Desired(pin string) *Desired {
	return m.DesiredWith(DesiredOptions{Pin: pin})
}

// DesiredWith returns the resolver of the desired version of o.
func (m *Manager) DesiredWith(o DesiredOptions) *Desired {
	if o.FirstAnswerGrace <= 0 {
		o.FirstAnswerGrace = DefaultFirstAnswerGrace
	}
	return &Desired{m: m, pin: o.Pin, control: o.Control, grace: o.FirstAnswerGrace, log: m.log, jitter: rand.Int64N}
}

// Version resolves the desired version when it is due (its period passed,
// or control's word changed) and returns the last one known ("" before the
// first success). A failure is logged once when it starts, and its end
// once when it ends; between, the engine check shows it.
func (d *Desired) Version(ctx context.Context, now time.Time) string {
	var in Control
	if d.control != nil {
		in = d.control()
	}
	d.mu.Lock()
	if d.started.IsZero() {
		d.started = now
	}
	due := now.After(d.next) || d.next.IsZero() || in != d.input
	d.mu.Unlock()
	if !due {
		return d.current(ctx)
	}
	r, err := d.resolve(ctx, in, now)
	if ctx.Err() != nil {
		return d.current(ctx)
	}
	if err == nil || r.refusal != nil {
		// A failure to tell (storage down) keeps the refusal known.
		d.noteRefusal(ctx, r.refusal)
	}
	d.mu.Lock()
	switch {
	case err != nil:
		if d.failing.IsZero() {
			d.failing = now
			d.log.Error("cannot resolve the desired engine version; retrying with backoff, the engine keeps its version", "err", err)
		}
		d.err = err
		d.failures++
		d.next = now.Add(backoffWait(d.failures, d.jitter))
		// A change of control's word is tried at once, backoff or not.
		d.input = in
	default:
		if !d.failing.IsZero() {
			d.log.Info("desired engine version resolved again", "version", r.describe(), "failing_for", now.Sub(d.failing).Round(time.Second).String())
		} else if r.version != d.version || r.keep != d.keep {
			d.log.Info("desired engine version", "version", r.describe())
		}
		d.version, d.keep, d.named, d.err, d.failing, d.failures = r.version, r.keep, r.named, nil, time.Time{}, 0
		d.next = now.Add(resolveEvery)
		d.input = in
	}
	d.mu.Unlock()
	return d.current(ctx)
}

// current is the version to converge on now: the one resolved, or the
// active one while the engine is kept as it is.
func (d *Desired) current(ctx context.Context) string {
	d.mu.Lock()
	v, keep := d.version, d.keep
	d.mu.Unlock()
	if !keep {
		return v
	}
	st, err := d.m.loadState(ctx)
	if err != nil {
		return ""
	}
	return st.Active
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

// resolution is what one resolution decided.
type resolution struct {
	version string
	keep    bool     // stay on the active version
	named   bool     // version is control's
	refusal *Refusal // control's version, refused; nil when none is
}

func (r resolution) describe() string {
	if r.keep {
		return "(the active one)"
	}
	return r.version
}

// resolve applies SPEC's "Which engine version": the pin wins; without
// control, the channel's newest; with control, control's version when it
// has one (refused unless signed for this host), else the active version,
// and for a host with no engine the channel's newest once control had its
// chance to answer.
func (d *Desired) resolve(ctx context.Context, c Control, now time.Time) (resolution, error) {
	if d.pin != "" {
		return resolution{version: d.pin}, CheckVersion(d.pin)
	}
	if d.control == nil || c.Version == "" {
		return d.withoutOpinion(ctx, c, now)
	}
	why, err := d.m.refuse(ctx, c)
	if err != nil {
		return resolution{}, err
	}
	if why == "" {
		return resolution{version: c.Version, named: true}, nil
	}
	r := resolution{keep: true, refusal: &Refusal{Version: c.Version, Reason: why, At: now.UTC()}}
	st, err := d.m.loadState(ctx)
	if err != nil {
		return r, err
	}
	if st.Active == "" {
		return r, fmt.Errorf("control's desired engine %s %s is refused (%s) and no engine is installed: %w", c.Flavor, c.Version, why, ErrNotSigned)
	}
	return r, nil
}

// withoutOpinion is the desired version when control names none (or the
// host has no control endpoint).
func (d *Desired) withoutOpinion(ctx context.Context, c Control, now time.Time) (resolution, error) {
	if d.control != nil {
		st, err := d.m.loadState(ctx)
		if err != nil {
			return resolution{}, err
		}
		if st.Active != "" {
			return resolution{keep: true}, nil
		}
		d.mu.Lock()
		waited := now.Sub(d.started)
		d.mu.Unlock()
		if !c.Answered && waited < d.grace {
			return resolution{}, fmt.Errorf("no engine installed; waiting up to %s for the control endpoint's desired state before installing the channel's newest", d.grace)
		}
	}
	v, err := d.m.resolve(ctx, "")
	return resolution{version: v}, err
}

// refuse says why control's desired engine c cannot be used on this host
// ("" when it can): another flavor, not a version, or not in the verified
// release metadata for this OS and architecture. An error is a failure to
// tell (the release storage down), not a refusal.
func (m *Manager) refuse(ctx context.Context, c Control) (string, error) {
	switch {
	case c.Flavor != m.o.Flavor.Name():
		return fmt.Sprintf("control asks for flavor %s; this host runs %s (engine.flavor)", c.Flavor, m.o.Flavor.Name()), nil
	case CheckVersion(c.Version) != nil:
		return CheckVersion(c.Version).Error(), nil
	case m.o.Releases == nil:
		return "engine.releases.url is not set, so no version can be verified", nil
	}
	_, err := m.find(ctx, c.Version)
	if errors.Is(err, release.ErrNotFound) {
		return fmt.Sprintf("%s %s is not signed for %s/%s in the verified release metadata", c.Flavor, c.Version, m.o.OS, m.o.Arch), nil
	}
	return "", err
}

// noteRefusal keeps the refusal of control's version (nil: none) and
// reports a new one as an event, once per version.
func (d *Desired) noteRefusal(ctx context.Context, r *Refusal) {
	d.mu.Lock()
	prev := d.refusal
	same := r != nil && prev != nil && prev.Version == r.Version
	if same {
		r.At = prev.At // the same refusal, dated from its start
	}
	d.refusal = r
	d.mu.Unlock()
	if r == nil || same {
		return
	}
	active := ""
	if st, err := d.m.loadState(ctx); err == nil {
		active = st.Active
	}
	d.log.Error("refusing control's desired engine version; the engine stays as it is", "version", r.Version, "reason", r.Reason)
	d.m.emit("rejected", active, r.Version, r.Reason)
}

// Refused is control's desired version this host refused, if any.
func (d *Desired) Refused() (Refusal, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.refusal == nil {
		return Refusal{}, false
	}
	return *d.refusal, true
}

// target is the version the engine is asked to run by name (the pin, or
// control's accepted version); "" when it follows the channel or stays
// as it is.
func (d *Desired) target() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.pin != "" {
		return d.pin
	}
	if !d.named {
		return ""
	}
	return d.version
}

// resolve is the channel's newest signed version, or the pin.
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
		want := pin
		if d != nil {
			want = d.target()
		}
		st, err := m.Status(ctx)
		c := statusCheck(st, err, want)
		if d == nil {
			return c
		}
		rerr, since, next := d.failure()
		r, refused := d.Refused()
		return withRefusal(withResolveFailure(c, rerr, since, next), r, refused)
	}
}

// withRefusal adds control's refused version to a check that passes: the
// engine runs, but not what control asks for, and an operator looking at
// /healthz should see why.
func withRefusal(c telemetry.Check, r Refusal, refused bool) telemetry.Check {
	if !refused || c.Status != telemetry.OK {
		return c
	}
	c.Status = telemetry.Warn
	c.Message = fmt.Sprintf("control's desired engine %s is refused since %s: %s; %s", r.Version, r.At.UTC().Format(time.RFC3339), r.Reason, c.Message)
	return c
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
