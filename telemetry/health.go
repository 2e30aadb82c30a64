package telemetry

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"
)

// Status is one check's verdict.
type Status string

// The verdicts of a check.
const (
	OK   Status = "ok"
	Warn Status = "warn"
	Fail Status = "fail"
)

// State is the host's overall health.
type State string

// The overall states of SPEC.
const (
	Healthy      State = "Healthy"
	Degraded     State = "Degraded"
	Unhealthy    State = "Unhealthy"
	Initializing State = "Initializing"
)

// Check is the result of one health check.
type Check struct {
	Name    string    `json:"name"`
	Status  Status    `json:"status"`
	Message string    `json:"message,omitempty"`
	Time    time.Time `json:"time"`
}

// CheckFunc runs one check. It should return within the context's deadline.
type CheckFunc func(ctx context.Context) Check

// Health is every check and the state they add up to, as /healthz serves it.
type Health struct {
	State  State     `json:"state"`
	Checks []Check   `json:"checks"`
	Time   time.Time `json:"time"`
	// ApplicationHealthState is the field the Azure Application Health
	// extension (v2, rich health) reads: Healthy or Unhealthy.
	ApplicationHealthState string `json:"ApplicationHealthState"`
}

// Aggregate adds checks up: any fail is Unhealthy, any warn Degraded, no
// checks yet Initializing.
func Aggregate(checks []Check) State {
	if len(checks) == 0 {
		return Initializing
	}
	state := Healthy
	for _, c := range checks {
		switch c.Status {
		case Fail:
			return Unhealthy
		case Warn:
			state = Degraded
		case OK:
		default:
			return Unhealthy // an unknown verdict is not a pass
		}
	}
	return state
}

// Run runs every check concurrently, each bounded by timeout, and adds
// them up.
func Run(ctx context.Context, checks []CheckFunc, timeout time.Duration) Health {
	out := make([]Check, len(checks))
	var wg sync.WaitGroup
	for i, f := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			c := f(cctx)
			if c.Time.IsZero() {
				c.Time = time.Now().UTC()
			}
			out[i] = c
		}()
	}
	wg.Wait()
	return newHealth(out)
}

func newHealth(checks []Check) Health {
	h := Health{State: Aggregate(checks), Checks: checks, Time: time.Now().UTC()}
	h.ApplicationHealthState = "Unhealthy"
	if h.State == Healthy || h.State == Degraded {
		h.ApplicationHealthState = "Healthy"
	}
	return h
}

// HTTPStatus is /healthz's status code: 200 while Healthy or Degraded,
// 503 otherwise.
func (h Health) HTTPStatus() int {
	if h.State == Healthy || h.State == Degraded {
		return http.StatusOK
	}
	return http.StatusServiceUnavailable
}

// Monitor runs the checks every interval and keeps the latest result for
// /healthz, so that a probe never waits on a slow check.
type Monitor struct {
	checks   []CheckFunc
	interval time.Duration
	timeout  time.Duration

	mu   sync.Mutex
	last Health
}

// NewMonitor returns a Monitor; it reports Initializing until its first
// round has run.
func NewMonitor(checks []CheckFunc, interval time.Duration) *Monitor {
	return &Monitor{checks: checks, interval: interval, timeout: 10 * time.Second, last: newHealth(nil)}
}

// Run checks at once and then every interval until ctx ends.
func (m *Monitor) Run(ctx context.Context) {
	t := time.NewTicker(m.interval)
	defer t.Stop()
	for {
		m.Refresh(ctx)
		if ctx.Err() != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Refresh runs the checks now, keeps the result as the latest (so /healthz
// shows it too) and returns it. A heartbeat refreshes before it is sent, so
// that what control sees is never older than the heartbeat itself.
func (m *Monitor) Refresh(ctx context.Context) Health {
	h := Run(ctx, m.checks, m.timeout)
	if ctx.Err() != nil {
		return m.Current()
	}
	m.mu.Lock()
	// Two rounds may overlap (the ticker's and a heartbeat's): keep the
	// newer.
	if !h.Time.Before(m.last.Time) {
		m.last = h
	}
	m.mu.Unlock()
	return h
}

// Current returns the latest result.
func (m *Monitor) Current() Health {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.last
}

// ServeHTTP answers /healthz.
func (m *Monitor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := m.Current()
	body, _ := json.MarshalIndent(h, "", "  ")
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(h.HTTPStatus())
	w.Write(append(body, '\n'))
}
