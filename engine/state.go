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

// loadState reads the flavor's state. When agent.db has no record of it
// (a new host, or an agent.db that was lost or replaced because it was
// damaged), the state is rebuilt from what runs: see adopt.
func (m *Manager) loadState(ctx context.Context) (State, error) {
	var st State
	found, err := m.o.DB.Get(ctx, stateBucket, m.o.Flavor.Name(), &st)
	if err != nil {
		return State{}, err
	}
	if st.Failed == nil {
		st.Failed = map[string]Failure{}
	}
	if found || !m.o.Managed {
		return st, nil
	}
	return m.adopt(ctx, st)
}

// adopt rebuilds the state of an engine agent.db has no record of: an
// engine daemon that runs from an installed version's folder is that
// version, active, and is recorded so. What the record held beyond that is
// lost (the previous version for a rollback, the versions that failed, a
// switch under way); a host with nothing running stays as it was, with
// nothing active, and installs the desired version.
func (m *Manager) adopt(ctx context.Context, st State) (State, error) {
	rs, err := m.o.Runner.State(ctx)
	if err != nil {
		m.log.Warn("agent.db has no record of the engine, and what runs cannot be told", "err", err)
		return st, nil
	}
	v := m.adoptable(rs)
	if v == "" {
		return st, nil
	}
	st.Active = v
	if err := saveState(ctx, m.o.DB, m.o.Flavor.Name(), st); err != nil {
		return State{}, err
	}
	m.log.Warn("agent.db had no record of the engine; the version that runs is recorded as active", "version", v, "pid", rs.PID)
	return st, nil
}

// adoptable is the version a running daemon is, when it runs from an
// installed version's folder; "" otherwise.
func (m *Manager) adoptable(rs RunState) string {
	if !rs.Running {
		return ""
	}
	v := m.versionOf(rs.Exe)
	if CheckVersion(v) != nil || !m.isInstalled(v) {
		return ""
	}
	return v
}

func saveState(ctx context.Context, db *statedb.DB, flavor string, st State) error {
	return db.Put(ctx, stateBucket, flavor, st)
}
