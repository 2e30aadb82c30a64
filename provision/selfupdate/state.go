package selfupdate

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/berthhq/berth/control/wire"
	"github.com/berthhq/berth/internal/statedb"
)

// Where the launcher and the agents keep what they agree on, in agent.db.
const (
	bucket     = "selfupdate"
	stateKey   = "state"
	runningKey = "running"
)

// Reasons a version is blacklisted, as events and `self-update --check`
// say them.
const (
	ReasonCrashAtStart = "crash-at-start"
	ReasonCrashLoop    = "crash-loop"
	ReasonNotHealthy   = "not-healthy"
)

// State is the launcher's record: which version to run, which one proved
// good, the versions staged on disk and the blacklist.
type State struct {
	// Launcher is the launcher version that wrote the selection. A
	// different launcher (an MSI or .deb upgrade) starts over from itself.
	Launcher string `json:"launcher,omitempty"`
	// Selected is the version the launcher should run.
	Selected string `json:"selected,omitempty"`
	// Good is the last version that passed the health gate (or the
	// launcher's own).
	Good string `json:"good,omitempty"`
	// Trial is the version on probation and when its gate started, so
	// that a launcher restart does not give it a fresh timeout.
	Trial *Trial `json:"trial,omitempty"`
	// Staged are the unpacked versions under <stateDir>/agents.
	Staged map[string]Staged `json:"staged,omitempty"`
	// Blacklist holds the versions the launcher gave up on.
	Blacklist map[string]Failure `json:"blacklist,omitempty"`
}

// Trial is a version on probation.
type Trial struct {
	Version string    `json:"version"`
	Since   time.Time `json:"since"`
}

// Staged is a version unpacked under <stateDir>/agents/<version>/.
type Staged struct {
	// Binary is the agent executable's absolute path.
	Binary string `json:"binary"`
	// SHA256 is the executable's hash when it was unpacked from a verified
	// package; the launcher checks it before every start.
	SHA256 string    `json:"sha256"`
	At     time.Time `json:"at"`
}

// Failure is why a version is blacklisted.
type Failure struct {
	Reason  string    `json:"reason"`
	Message string    `json:"message"`
	At      time.Time `json:"at"`
}

// Running is what the launcher runs now, for `version` and
// `self-update`.
type Running struct {
	Launcher    string    `json:"launcher"`
	LauncherPID int       `json:"launcherPid"`
	Version     string    `json:"version"`
	PID         int       `json:"pid"`
	Since       time.Time `json:"since"`
	// Probation is true while the version has not passed its gate.
	Probation bool `json:"probation"`
}

// Blacklisted reports whether v is blacklisted, and why.
func (s State) Blacklisted(v string) (Failure, bool) {
	f, ok := s.Blacklist[v]
	return f, ok
}

// Load reads the launcher's record; a missing one is the zero State.
func Load(ctx context.Context, db *statedb.DB) (State, error) {
	var s State
	if _, err := db.Get(ctx, bucket, stateKey, &s); err != nil {
		return State{}, fmt.Errorf("read the self-update state: %w", err)
	}
	return s, nil
}

// mutate changes the record in one transaction, so that the launcher, the
// daemon's updater and a `self-update` command never lose each other's
// writes.
func mutate(ctx context.Context, db *statedb.DB, fn func(*State) error) (State, error) {
	var out State
	err := db.Update(ctx, func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte(bucket))
		if err != nil {
			return err
		}
		var s State
		if raw := b.Get([]byte(stateKey)); raw != nil {
			if err := json.Unmarshal(raw, &s); err != nil {
				// A record this build cannot read is dropped: the
				// launcher then runs itself, which is always safe.
				s = State{}
			}
		}
		if err := fn(&s); err != nil {
			return err
		}
		raw, err := json.Marshal(s)
		if err != nil {
			return err
		}
		out = s
		return b.Put([]byte(stateKey), raw)
	})
	if err != nil {
		return State{}, fmt.Errorf("update the self-update state: %w", err)
	}
	return out, nil
}

// LoadRunning reads what the launcher last said it runs.
func LoadRunning(ctx context.Context, db *statedb.DB) (Running, bool, error) {
	var r Running
	found, err := db.Get(ctx, bucket, runningKey, &r)
	if err != nil {
		return Running{}, false, fmt.Errorf("read what the launcher runs: %w", err)
	}
	return r, found, nil
}

func putRunning(ctx context.Context, db *statedb.DB, r Running) error {
	if err := db.Put(ctx, bucket, runningKey, r); err != nil {
		return fmt.Errorf("record what the launcher runs: %w", err)
	}
	return nil
}

// Rejected lists the blacklisted agent versions for the heartbeat, newest
// first, at most wire.MaxRejected. An unreadable agent.db gives none: the
// heartbeat still goes out.
func Rejected(ctx context.Context, db *statedb.DB) []wire.Rejected {
	s, err := Load(ctx, db)
	if err != nil {
		return nil
	}
	out := make([]wire.Rejected, 0, len(s.Blacklist))
	for v, f := range s.Blacklist {
		out = append(out, wire.Rejected{Kind: "agent", Version: v, Reason: wire.RejectedBlacklisted,
			Message: fitMessage(f.Reason + ": " + f.Message), Time: f.At.UTC()})
	}
	slices.SortFunc(out, func(a, b wire.Rejected) int {
		if c := b.Time.Compare(a.Time); c != 0 {
			return c
		}
		return strings.Compare(a.Version, b.Version)
	})
	if len(out) > wire.MaxRejected {
		out = out[:wire.MaxRejected]
	}
	return out
}

// maxMessage bounds a reason's message in the heartbeat.
const maxMessage = 1024

func fitMessage(s string) string {
	if len(s) <= maxMessage {
		return s
	}
	return s[:maxMessage-3] + "..."
}
