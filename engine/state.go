package engine

import (
	"context"
	"time"

	"github.com/berthhq/berth/internal/statedb"
)

// State is what the agent remembers of a flavor's engine in agent.db.
type State struct {
	// Active is the version the engine service is set to run.
	Active string `json:"active,omitempty"`
	// Previous is the version a rollback returns to.
	Previous string `json:"previous,omitempty"`
	// Failed holds versions that failed their health gate; they are not
	// tried again until the desired version changes.
	Failed map[string]Failure `json:"failed,omitempty"`
	// Journal is the step under way, nil when none is.
	Journal *Journal `json:"journal,omitempty"`
}

// Failure says why a version was given up.
type Failure struct {
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// Journal records a change of the running version before each of its steps,
// so that Recover can finish or undo it after a crash.
type Journal struct {
	Op      string    `json:"op"` // install | upgrade | rollback
	From    string    `json:"from,omitempty"`
	To      string    `json:"to"`
	Step    Step      `json:"step"`
	Started time.Time `json:"started"`
	// Reason is why a rollback started, kept so a resumed rollback reports it.
	Reason string `json:"reason,omitempty"`
}

// Step is a point in a switch between versions. The order matters: before
// StepStarted the old version is restored; from StepStarted on the new one is
// given its health gate.
type Step string

// The steps of a switch, in order.
const (
	StepBegin       Step = "begin"        // about to stop the old version
	StepStopped     Step = "stopped"      // old version stopped; new one not yet recorded as started
	StepStarted     Step = "started"      // new version started; health gate under way
	StepRollingBack Step = "rolling-back" // new version failed; going back to From
)

const stateBucket = "engine"

func loadState(ctx context.Context, db *statedb.DB, flavor string) (State, error) {
	var st State
	if _, err := db.Get(ctx, stateBucket, flavor, &st); err != nil {
		return State{}, err
	}
	if st.Failed == nil {
		st.Failed = map[string]Failure{}
	}
	return st, nil
}

func saveState(ctx context.Context, db *statedb.DB, flavor string, st State) error {
	return db.Put(ctx, stateBucket, flavor, st)
}
