package provision

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/berthhq/berth/engine"
	"github.com/berthhq/berth/telemetry"
)

// engineStep keeps the engine at its desired version, running and healthy:
// the daemon's converge, with its journal and recovery (engine.Manager).
type engineStep struct {
	m       *engine.Manager
	d       *engine.Desired
	managed bool
	now     func() time.Time
	// applied: Apply ran since the last Check. A desired version that
	// failed before still gets an Apply (Converge keeps the engine it has
	// running and its configuration repaired, without trying the version
	// again); the check after it fails the step for good.
	applied bool
}

// Engine is the step that installs or moves the engine to the desired
// version d resolves. With engine.managed false it has nothing to do: the
// engine is the operator's, and its checks do not gate readiness.
func Engine(m *engine.Manager, d *engine.Desired, managed bool) Step {
	return &engineStep{m: m, d: d, managed: managed, now: time.Now}
}

func (*engineStep) Name() string { return StepEngine }

func (s *engineStep) desired(ctx context.Context) (string, error) {
	v := s.d.Version(ctx, s.now())
	if v == "" {
		err := s.d.Err()
		if err == nil {
			err = errors.New("no version resolved yet")
		}
		return "", fmt.Errorf("resolve the desired engine version: %w", err)
	}
	return v, nil
}

func (s *engineStep) Check(ctx context.Context) (bool, string, error) {
	if !s.managed {
		return true, "engine.managed is false: the engine is watched, never changed", nil
	}
	st, err := s.m.Status(ctx)
	if err != nil {
		return false, "", fmt.Errorf("read the engine's state: %w", err)
	}
	desired, derr := s.desired(ctx)
	applied := s.applied
	s.applied = false
	return afterApply(judgeEngine(st, desired, derr))(applied)
}

// afterApply holds back a permanent failure until the step has applied
// once in this run, so that Apply's Converge still keeps the engine that
// runs running; the check after it reports the failure.
func afterApply(done bool, msg string, err error) func(applied bool) (bool, string, error) {
	return func(applied bool) (bool, string, error) {
		if IsPermanent(err) && !applied {
			return false, err.Error(), nil
		}
		return done, msg, err
	}
}

// judgeEngine decides whether the engine is where it should be. A desired
// version that cannot be resolved (release storage down) keeps a healthy
// engine as it is, as the daemon always has; a host with none fails.
func judgeEngine(st engine.Status, desired string, resolveErr error) (bool, string, error) {
	if st.Journal != nil {
		return false, fmt.Sprintf("an engine %s to %s is under way (step %s)", st.Journal.Op, st.Journal.To, st.Journal.Step), nil
	}
	if resolveErr != nil {
		if st.Active != "" && st.Healthy {
			return true, fmt.Sprintf("engine %s %s healthy; kept, since %v", st.Flavor, st.Active, resolveErr), nil
		}
		return false, "", resolveErr
	}
	// A failure is forgotten once the desired version moved on (Converge
	// does it): without this an engine already at the new desired version
	// would never converge, and the old version, asked for again later,
	// would not be tried.
	for v := range st.Failed {
		if v != desired {
			return false, fmt.Sprintf("engine %s %s failed before and is no longer desired (%s is); forget the failure", st.Flavor, v, desired), nil
		}
	}
	if st.Active != desired {
		if f, failed := st.Failed[desired]; failed {
			return false, "", Permanent(fmt.Errorf("engine %s %s failed its health gate (%s) and is not tried again until the desired version changes; the engine stays on %s", st.Flavor, desired, f.Reason, orNone(st.Active)))
		}
		return false, fmt.Sprintf("engine %s %s, desired %s", st.Flavor, orNone(st.Active), desired), nil
	}
	if !st.Healthy {
		why := st.APIError
		if !st.Running {
			why = "not running"
		}
		return false, fmt.Sprintf("engine %s %s is not healthy: %s", st.Flavor, desired, why), nil
	}
	return true, fmt.Sprintf("engine %s %s healthy", st.Flavor, desired), nil
}

// Apply converges the engine on the desired version; without one, it
// still finishes an interrupted change and keeps the engine running.
func (s *engineStep) Apply(ctx context.Context) error {
	s.applied = true
	desired, err := s.desired(ctx)
	if err != nil {
		// The check after this says whether what runs will do.
		return s.m.Converge(ctx, "")
	}
	return s.m.Converge(ctx, desired)
}

func orNone(v string) string {
	if v == "" {
		return "(none)"
	}
	return v
}

// wiringStep points the engine at the image cache: its configuration names
// the cache as registry mirror, and the engine that runs has read it.
type wiringStep struct {
	m                *engine.Manager
	managed, enabled bool
	listen           string
}

// CacheWiring is the step that wires the engine to the cache listening on
// listen (cache.listen). With the cache disabled, or an engine Berth does
// not manage (whose configuration is the operator's), it has nothing to do.
func CacheWiring(m *engine.Manager, managed, cacheEnabled bool, listen string) Step {
	return &wiringStep{m: m, managed: managed, enabled: cacheEnabled, listen: listen}
}

func (*wiringStep) Name() string { return StepCacheWiring }

func (s *wiringStep) Check(ctx context.Context) (bool, string, error) {
	switch {
	case !s.enabled:
		return true, "cache.enabled is false: the engine pulls from the registries", nil
	case !s.managed:
		return true, "engine.managed is false: point the engine's registry mirror at http://" + s.listen + " to use the cache", nil
	}
	w, err := s.m.Wiring(ctx)
	if err != nil {
		return false, "", err
	}
	done, msg := judgeWiring(w)
	return done, msg, nil
}

// judgeWiring decides whether the engine is wired to the cache.
func judgeWiring(w engine.Wiring) (bool, string) {
	switch {
	case len(w.Drift) > 0:
		return false, "engine configuration differs from what berth writes: " + strings.Join(w.Drift, ", ")
	case w.Stale:
		return false, "the engine runs with an older configuration than the one written"
	case w.Mirror == "":
		return true, "engine configuration current (no cache mirror)"
	}
	return true, "engine's registry mirror is the cache at http://" + w.Mirror
}

func (s *wiringStep) Apply(ctx context.Context) error { return s.m.ApplyWiring(ctx) }

// Service is the agent service as the plan needs it: whether it runs, and
// making it run. cmd/agent fills it with internal/svc (the detached agent
// where the host has no service manager).
type Service interface {
	// Running says whether the agent service runs, and how ("systemd
	// unit berth-agent", "detached, pid 42").
	Running(ctx context.Context) (bool, string, error)
	// Ensure installs the service (idempotent) and starts it.
	Ensure(ctx context.Context) error
}

// serviceStep makes sure the agent service runs; nil svc is the plan run
// by the service itself, where the step is done by definition.
type serviceStep struct{ svc Service }

// AgentService is the step that installs and starts the agent service.
// Pass nil when the plan runs inside the agent service (the daemon).
func AgentService(svc Service) Step { return serviceStep{svc: svc} }

func (serviceStep) Name() string { return StepService }

func (s serviceStep) Check(ctx context.Context) (bool, string, error) {
	if s.svc == nil {
		return true, "this process is the agent service", nil
	}
	ok, msg, err := s.svc.Running(ctx)
	return ok, msg, err
}

func (s serviceStep) Apply(ctx context.Context) error { return s.svc.Ensure(ctx) }

// healthStep is the final health: the agent's checks.
type healthStep struct {
	run     func(ctx context.Context) []telemetry.Check
	managed bool
}

// Health is the step that runs the host's health checks (run returns their
// results). A check that fails keeps the host from being ready, except the
// control endpoint's (reports wait in the outbox) and, with engine.managed
// false, the engine's: then ready means the agent runs and reports.
func Health(run func(ctx context.Context) []telemetry.Check, engineManaged bool) Step {
	return healthStep{run: run, managed: engineManaged}
}

func (healthStep) Name() string { return StepHealth }

func (s healthStep) Check(ctx context.Context) (bool, string, error) {
	done, msg := judgeHealth(s.run(ctx), s.managed)
	return done, msg, nil
}

// Apply has nothing to do: health follows from the other steps. The
// plan's check after it says what still fails.
func (healthStep) Apply(context.Context) error { return nil }

// nonGating are checks whose failure does not keep a host from being
// ready: reports wait in the durable outbox until control answers.
var nonGating = map[string]bool{"control": true}

// judgeHealth decides readiness from the checks.
func judgeHealth(checks []telemetry.Check, engineManaged bool) (bool, string) {
	if len(checks) == 0 {
		return false, "the health checks have not run yet"
	}
	var failing, warning, ignored []string
	ok := 0
	for _, c := range checks {
		if nonGating[c.Name] || (!engineManaged && c.Name == "engine") {
			if c.Status != telemetry.OK {
				ignored = append(ignored, c.Name)
			}
			continue
		}
		ok++
		switch c.Status {
		case telemetry.OK:
		case telemetry.Warn:
			warning = append(warning, c.Name+": "+c.Message)
		default:
			failing = append(failing, c.Name+": "+c.Message)
		}
	}
	if len(failing) > 0 {
		return false, "failing: " + strings.Join(failing, "; ")
	}
	msg := fmt.Sprintf("%d checks pass", ok)
	if len(warning) > 0 {
		msg += ", with warnings: " + strings.Join(warning, "; ")
	}
	if len(ignored) > 0 {
		msg += "; not ready-gating and not ok: " + strings.Join(ignored, ", ")
	}
	return true, msg
}
