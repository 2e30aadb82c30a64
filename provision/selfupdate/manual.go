package selfupdate

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/berthhq/berth/engine/release"
)

// Report is what `berth-agent self-update` says.
type Report struct {
	// Launcher is the installed binary's version; Running what runs now
	// ("" when no launcher runs).
	Launcher string `json:"launcher"`
	Running  string `json:"running,omitempty"`
	// Target is the version asked for (or the channel's newest).
	Target string `json:"target"`
	// Action is none (already there), update (staged and selected; with
	// --check: would be), or blacklisted (the target failed here).
	Action string `json:"action"`
	// Outcome, after an update a launcher took: healthy, or blacklisted
	// with Failure.
	Outcome string   `json:"outcome,omitempty"`
	Failure *Failure `json:"failure,omitempty"`
	// Took is from the selection to the outcome.
	Took string `json:"took,omitempty"`
}

// The actions and outcomes of a Report.
const (
	ActionNone        = "none"
	ActionUpdate      = "update"
	ActionBlacklisted = "blacklisted"
	OutcomeHealthy    = "healthy"
)

// Manual is `berth-agent self-update`: find version (or the newest of
// channel), and unless check, stage and select it. An explicit version
// clears its blacklist entry: the operator asked for it by name.
func (s *Stager) Manual(ctx context.Context, version, channel string, check bool) (Report, error) {
	r := Report{Launcher: s.Launcher}
	if run, ok, err := LoadRunning(ctx, s.DB); err == nil && ok && LauncherRuns(s.StateDir) {
		r.Running = run.Version
	}
	t, err := s.Find(ctx, version, channel)
	if err != nil {
		return r, err
	}
	r.Target = t.Version
	st, err := Load(ctx, s.DB)
	if err != nil {
		return r, err
	}
	current := choose(st, s.Launcher)
	if r.Running != "" {
		current = r.Running
	}
	f, bad := st.Blacklist[t.Version]
	switch {
	case current == t.Version && st.Selected == t.Version:
		r.Action = ActionNone
		return r, nil
	case bad && version == "":
		r.Action, r.Failure = ActionBlacklisted, &f
		return r, nil
	}
	r.Action = ActionUpdate
	if check {
		return r, nil
	}
	return r, s.stageSelect(ctx, t, current, version != "")
}

func (s *Stager) stageSelect(ctx context.Context, t release.Target, from string, force bool) error {
	if t.Version == s.Launcher {
		return s.Select(ctx, t.Version, force)
	}
	if force {
		// Cleared first, so that Update's Select takes it.
		if _, err := mutate(ctx, s.DB, func(st *State) error { delete(st.Blacklist, t.Version); return nil }); err != nil {
			return err
		}
	}
	return s.Update(ctx, t, from)
}

// ErrNoLauncher: no launcher runs for the state folder, so nothing
// switches until the agent's service starts.
var ErrNoLauncher = errors.New("no berth-agent launcher runs on this host")

// Wait follows the launcher after a selection of v until v passed its
// health gate (the Report's Outcome healthy) or was blacklisted (an error
// with the reason), or ctx ends.
func (s *Stager) Wait(ctx context.Context, v string, r *Report) error {
	if !LauncherRuns(s.StateDir) {
		return fmt.Errorf("%w: agent %s is selected and starts with the service (berth-agent service start)", ErrNoLauncher, v)
	}
	start := time.Now()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		st, err := Load(ctx, s.DB)
		if err != nil {
			return err
		}
		run, _, err := LoadRunning(ctx, s.DB)
		if err != nil {
			return err
		}
		if f, bad := st.Blacklist[v]; bad {
			r.Outcome, r.Failure, r.Took = ActionBlacklisted, &f, time.Since(start).Round(time.Millisecond).String()
			return fmt.Errorf("agent %s was blacklisted (%s): %s; the host runs %s", v, f.Reason, f.Message, choose(st, s.Launcher))
		}
		if run.Version == v && !run.Probation && (st.Good == v || v == s.Launcher) {
			r.Outcome, r.Running, r.Took = OutcomeHealthy, v, time.Since(start).Round(time.Millisecond).String()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for agent %s: %w (it runs %s, on probation: %v)", v, ctx.Err(), run.Version, run.Probation)
		case <-tick.C:
		}
	}
}

// WaitMargin is what `self-update` waits beyond update.healthTimeout: the
// launcher's switch and stop of the old agent.
const WaitMargin = time.Minute
