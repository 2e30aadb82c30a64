// Package provision converges a host to a ready container host: a plan of
// idempotent steps — prerequisites, the engine at its desired version, the
// engine wired to the image cache, the agent service, prewarmed images and
// a final health check — each checked before it acts and journaled in
// agent.db (bucket "provision") before it acts, so that a plan killed at
// any moment, or stopped by a reboot a step needs, resumes where it was.
//
// `berth-agent provision` runs the plan until the host is ready or its
// timeout passes; the daemon runs the same plan at start and again on its
// loop, so a host converges the same way however it was started. The
// steps' platform facts (kernel and cgroups on Linux, Windows features
// through DISM) sit behind small functions in _linux.go and _windows.go
// files; every decision is a pure function tested on every platform.
//
// This package does not import agent/config: agent/ (the composition root)
// builds the steps from the subsystems, and agent/config composes the
// provision block, Config, which this package owns.
package provision

import (
	"context"
	"errors"
	"time"

	"github.com/berthhq/berth/engine"
)

// Config is the provision block of agent.yaml.
type Config struct {
	// AllowReboot lets the plan reboot the host when a step needs it (a
	// Windows feature that takes effect after a restart). Without it such
	// a step fails and says to reboot or set provision.allowReboot.
	AllowReboot bool `yaml:"allowReboot" json:"allowReboot"`
}

// The steps' names, in the plan's order, as results and the journal spell them.
const (
	StepPrerequisites = "prerequisites"
	StepEngine        = "engine"
	StepCacheWiring   = "cache-wiring"
	StepService       = "service"
	StepPrewarm       = "prewarm"
	StepHealth        = "health"
)

// StepState is where a step stands.
type StepState string

// The states of a step.
const (
	Pending StepState = "pending" // not reached in this run
	Running StepState = "running" // acting now
	Done    StepState = "done"    // its goal holds
	Failed  StepState = "failed"  // it could not reach its goal
	Reboot  StepState = "reboot"  // it waits for a reboot of the host
)

// StepResult is one step's outcome in a run of the plan.
type StepResult struct {
	Name     string        `json:"name"`
	State    StepState     `json:"state"`
	Message  string        `json:"message,omitempty"`
	Error    string        `json:"error,omitempty"`
	Duration time.Duration `json:"-"`
	Seconds  float64       `json:"seconds"`
	// permanent: the failure is one retrying does not fix.
	permanent bool
}

// Result is one run of the plan.
type Result struct {
	// Ready: every step is done; the host is a ready container host.
	Ready bool         `json:"ready"`
	Steps []StepResult `json:"steps"`
	// Failed names the step that failed, "" when none did.
	Failed string `json:"failed,omitempty"`
	// RebootPending: a step waits for a reboot of the host, which was
	// asked for (provision.allowReboot); the plan resumes at that step.
	RebootPending bool `json:"rebootPending,omitempty"`
}

// Step returns the result of the named step, and whether the run has it.
func (r Result) Step(name string) (StepResult, bool) {
	for _, s := range r.Steps {
		if s.Name == name {
			return s, true
		}
	}
	return StepResult{}, false
}

// Observer sees the plan move; the VM extension's status writer is one.
// Calls come from the goroutine that runs the plan, in order; an observer
// that blocks holds the plan up.
type Observer interface {
	// Step is told of a step's new state (running, then its outcome).
	Step(ctx context.Context, r StepResult)
	// Finished is told of each run's result that differs from the last.
	Finished(ctx context.Context, r Result)
}

// Step is one idempotent step of the plan.
type Step interface {
	Name() string
	// Check says whether the step's goal holds already, with what it sees;
	// it changes nothing. An error is a failure to find out, or
	// ErrRebootRequired when the goal holds only after a reboot.
	Check(ctx context.Context) (done bool, message string, err error)
	// Apply acts to reach the goal. The plan checks again afterwards.
	Apply(ctx context.Context) error
}

// ErrRebootRequired is returned by a step whose change takes effect only
// after the host restarts. It is the engine's error of the same name, so
// that errors.Is matches either.
var ErrRebootRequired = engine.ErrRebootRequired

// permanentError marks a failure that retrying cannot fix (an old kernel,
// a missing cgroup controller): the one-shot stops at once.
type permanentError struct{ err error }

func (p permanentError) Error() string { return p.err.Error() }
func (p permanentError) Unwrap() error { return p.err }

// Permanent marks err as a failure that retrying does not fix.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// IsPermanent says err was marked with Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}
