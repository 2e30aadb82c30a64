package extension

import (
	"context"
	"time"
)

// PREMERGE(i10-plan): these mirror package provision's StepState,
// StepResult and Result as CONTRACT10 writes them, because provision/ is
// not on this branch. At merge, replace the three definitions with
//
//	type StepState = provision.StepState
//	type StepResult = provision.StepResult
//	type Result = provision.Result
//
// and Attach's observer satisfies provision.Observer unchanged.

// StepState is a plan step's state.
type StepState string

// The step states of CONTRACT10.
const (
	StepPending StepState = "pending"
	StepRunning StepState = "running"
	StepDone    StepState = "done"
	StepFailed  StepState = "failed"
	StepReboot  StepState = "reboot"
)

// StepResult is one step of the provisioning plan as it moves.
type StepResult struct {
	Name     string        `json:"name"`
	State    StepState     `json:"state"`
	Message  string        `json:"message,omitempty"`
	Error    string        `json:"error,omitempty"`
	Duration time.Duration `json:"-"`
	Seconds  float64       `json:"seconds"`
}

// Result is the end of one run of the plan.
type Result struct {
	Ready         bool
	Steps         []StepResult
	Failed        string
	RebootPending bool
}

// PlanObserver is provision.Observer (PREMERGE: replace with
// `type PlanObserver = provision.Observer`).
type PlanObserver interface {
	Step(ctx context.Context, r StepResult)
	Finished(ctx context.Context, r Result)
}
