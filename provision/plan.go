package provision

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/gofrs/flock"

	"github.com/berthhq/berth/internal/statedb"
)

// The plan's journal in agent.db.
const (
	journalBucket = "provision"
	journalKey    = "plan"
	// LockFile, under the state dir, is held by whichever process runs the
	// plan: `provision` and the daemon never run it at the same time.
	LockFile = "provision.lock"
	// maxReboots bounds the reboots one step may ask for: a feature that
	// still needs a reboot after this many is broken, not pending.
	maxReboots = 3
	// rebootPatience is how long a reboot that was asked for and has not
	// happened is waited for before it is asked for again.
	rebootPatience = 10 * time.Minute
)

// journal is what agent.db remembers of the plan between processes.
type journal struct {
	// Step is the step acting now: set before Apply, cleared after its
	// check. Found set at start, the step was interrupted (a crash).
	Step  string    `json:"step,omitempty"`
	Since time.Time `json:"since,omitzero"`
	// RebootAt is the step that asked for a reboot; the next run resumes
	// at it. RebootBoot is the boot it was asked in, to tell whether the
	// host has rebooted since; Reboots counts the reboots it has had.
	RebootAt    string    `json:"rebootAt,omitempty"`
	RebootBoot  string    `json:"rebootBoot,omitempty"`
	RebootAsked time.Time `json:"rebootAsked,omitzero"`
	Reboots     int       `json:"reboots,omitempty"`
}

// Rebooter restarts the host; on the platforms it starts a restart and
// returns (the process is stopped by it later).
type Rebooter interface {
	Reboot(ctx context.Context, reason string) error
}

// Options build a Plan.
type Options struct {
	Steps []Step
	DB    *statedb.DB
	// StateDir holds the plan's lock file.
	StateDir    string
	AllowReboot bool
	// Rebooter restarts the host (default: the platform's); BootID names
	// the current boot of the host (default: the platform's). Tests
	// inject both.
	Rebooter Rebooter
	BootID   func() (string, error)
	// Observers see the plan move.
	Observers []Observer
	Logger    *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Plan runs the steps in order. A Plan is used by one goroutine.
type Plan struct {
	o    Options
	log  *slog.Logger
	last map[string]StepResult // per step, what observers were last told
	prev *Result               // the last result observers were told
}

// New returns a Plan. It does no I/O.
func New(o Options) (*Plan, error) {
	if o.DB == nil || o.StateDir == "" || len(o.Steps) == 0 {
		return nil, errors.New("provision plan: steps, state dir and database are required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Rebooter == nil {
		o.Rebooter = platformRebooter{}
	}
	if o.BootID == nil {
		o.BootID = bootID
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Plan{o: o, log: o.Logger.With("component", "provision"), last: map[string]StepResult{}}, nil
}

// lock takes the plan's lock file; wait says whether to wait for it (the
// one-shot) or give up at once when another process holds it (the daemon's
// loop, which tries again next round).
func (p *Plan) lock(ctx context.Context, wait bool) (func(), bool, error) {
	if err := os.MkdirAll(p.o.StateDir, 0o755); err != nil {
		return nil, false, fmt.Errorf("provision lock: %w", err)
	}
	fl := flock.New(filepath.Join(p.o.StateDir, LockFile))
	var ok bool
	var err error
	if wait {
		ok, err = fl.TryLockContext(ctx, 100*time.Millisecond)
	} else {
		ok, err = fl.TryLock()
	}
	if err != nil && ctx.Err() == nil {
		return nil, false, fmt.Errorf("provision lock %s: %w", fl.Path(), err)
	}
	if !ok {
		if wait {
			return nil, false, fmt.Errorf("wait for the provision lock (another berth-agent runs the plan): %w", ctx.Err())
		}
		return nil, false, nil
	}
	return func() { _ = fl.Unlock() }, true, nil
}

// Run runs the plan once, waiting for the lock. The error is for the
// plan's own machinery (lock, agent.db); a step's failure is in the Result.
func (p *Plan) Run(ctx context.Context) (Result, error) {
	unlock, _, err := p.lock(ctx, true)
	if err != nil {
		return Result{}, err
	}
	defer unlock()
	return p.run(ctx)
}

// TryRun runs the plan once unless another process runs it (ran false).
func (p *Plan) TryRun(ctx context.Context) (r Result, ran bool, err error) {
	unlock, ok, err := p.lock(ctx, false)
	if err != nil || !ok {
		return Result{}, false, err
	}
	defer unlock()
	r, err = p.run(ctx)
	return r, true, err
}

func (p *Plan) loadJournal(ctx context.Context) (journal, error) {
	var j journal
	if _, err := p.o.DB.Get(ctx, journalBucket, journalKey, &j); err != nil {
		return journal{}, fmt.Errorf("read the provision journal: %w", err)
	}
	return j, nil
}

func (p *Plan) saveJournal(ctx context.Context, j journal) error {
	// Saved even when ctx has ended: the journal must say where the plan
	// stopped.
	if err := p.o.DB.Put(context.WithoutCancel(ctx), journalBucket, journalKey, j); err != nil {
		return fmt.Errorf("write the provision journal: %w", err)
	}
	return nil
}

// run is one pass over the steps; the caller holds the lock.
func (p *Plan) run(ctx context.Context) (Result, error) {
	j, err := p.loadJournal(ctx)
	if err != nil {
		return Result{}, err
	}
	start := p.resumeAt(j)
	var res Result
	for i, s := range p.o.Steps {
		if i < start {
			res.Steps = append(res.Steps, StepResult{Name: s.Name(), State: Done, Message: "done before the reboot"})
			continue
		}
		if res.Failed != "" || res.RebootPending {
			res.Steps = append(res.Steps, StepResult{Name: s.Name(), State: Pending})
			continue
		}
		r, err := p.runStep(ctx, s, &j)
		if err != nil {
			return Result{}, err
		}
		res.Steps = append(res.Steps, r)
		switch r.State {
		case Failed:
			res.Failed = r.Name
		case Reboot:
			res.RebootPending = true
		}
	}
	res.Ready = res.Failed == "" && !res.RebootPending
	if res.Ready && j != (journal{}) {
		if err := p.saveJournal(ctx, journal{}); err != nil {
			return Result{}, err
		}
	}
	p.finished(ctx, res)
	return res, nil
}

// resumeAt is the index of the step the plan starts at: the one that asked
// for a reboot, else the first. An interrupted step is logged; its check
// tells what is left of it.
func (p *Plan) resumeAt(j journal) int {
	if j.Step != "" && j.Step != j.RebootAt {
		p.log.Warn("a provision step was interrupted; checking it again", "step", j.Step, "since", j.Since)
	}
	if j.RebootAt == "" {
		return 0
	}
	for i, s := range p.o.Steps {
		if s.Name() == j.RebootAt {
			p.log.Info("resuming the provision plan at the step that asked for a reboot", "step", j.RebootAt, "reboots", j.Reboots)
			return i
		}
	}
	return 0
}

// runStep checks the step, applies it when its goal does not hold, and
// checks again. The journal names the step before it acts.
func (p *Plan) runStep(ctx context.Context, s Step, j *journal) (StepResult, error) {
	t0 := p.o.Now()
	r := StepResult{Name: s.Name()}
	finish := func(state StepState, msg string, err error) (StepResult, error) {
		r.State, r.Message = state, msg
		if err != nil {
			r.Error, r.permanent = err.Error(), IsPermanent(err)
		}
		r.Duration = p.o.Now().Sub(t0)
		r.Seconds = r.Duration.Seconds()
		p.step(ctx, r)
		return r, nil
	}
	done, msg, err := s.Check(ctx)
	if err == nil && done {
		if err := p.stepDone(ctx, s, j); err != nil {
			return StepResult{}, err
		}
		return finish(Done, msg, nil)
	}
	if err == nil {
		j.Step, j.Since = s.Name(), p.o.Now().UTC()
		if err := p.saveJournal(ctx, *j); err != nil {
			return StepResult{}, err
		}
		p.step(ctx, StepResult{Name: s.Name(), State: Running, Message: msg})
		// A failing step is tried again every round; its failure was
		// logged once, and so is its acting.
		lv := slog.LevelInfo
		if p.last[s.Name()].State == Failed {
			lv = slog.LevelDebug
		}
		p.log.Log(ctx, lv, "provision step acting", "step", s.Name(), "because", msg)
		if err = s.Apply(ctx); err == nil {
			if done, msg, err = s.Check(ctx); err == nil && !done {
				err = fmt.Errorf("step %s acted, yet its check still says: %s", s.Name(), msg)
			}
		}
	}
	switch {
	case err == nil:
		if err := p.stepDone(ctx, s, j); err != nil {
			return StepResult{}, err
		}
		return finish(Done, msg, nil)
	case errors.Is(err, ErrRebootRequired):
		state, msg, rerr := p.reboot(ctx, s, j, err)
		return finish(state, msg, rerr)
	}
	if ctx.Err() != nil {
		err = fmt.Errorf("%w: %w", errTimedOut, err)
	}
	if j.Step != "" {
		// The step ended, in failure: not an interruption to report.
		j.Step, j.Since = "", time.Time{}
		if err := p.saveJournal(ctx, *j); err != nil {
			return StepResult{}, err
		}
	}
	// The daemon runs the plan every few seconds: a failure is logged as
	// an error when it starts or changes, then at debug.
	if last := p.last[s.Name()]; last.State == Failed && last.Error == err.Error() {
		p.log.Debug("provision step still fails", "step", s.Name(), "err", err)
	} else {
		p.log.Error("provision step failed", "step", s.Name(), "err", err)
	}
	return finish(Failed, "", err)
}

// stepDone clears the step from the journal, and the reboot it asked for.
func (p *Plan) stepDone(ctx context.Context, s Step, j *journal) error {
	changed := j.Step != ""
	j.Step, j.Since = "", time.Time{}
	if j.RebootAt == s.Name() {
		p.log.Info("the step that asked for a reboot is done", "step", s.Name(), "reboots", j.Reboots)
		j.RebootAt, j.RebootBoot, j.RebootAsked, j.Reboots = "", "", time.Time{}, 0
		changed = true
	}
	if !changed {
		return nil
	}
	return p.saveJournal(ctx, *j)
}
