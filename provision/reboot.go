package provision

import (
	"context"
	"fmt"
	"time"
)

// rebootAction is what the plan does about a step that needs a reboot.
type rebootAction string

const (
	rebootRefused rebootAction = "refused" // provision.allowReboot is false: the step fails
	rebootAsk     rebootAction = "ask"     // ask the Rebooter now
	rebootWait    rebootAction = "wait"    // asked for in this boot a moment ago: wait for it
	rebootGiveUp  rebootAction = "give-up" // the step still needs one after maxReboots
)

// decideReboot is the decision about step, which needs a reboot, given the
// journal, the current boot and whether reboots are allowed; it returns the
// journal to save before acting on it.
func decideReboot(j journal, step, boot string, now time.Time, allow bool) (rebootAction, journal) {
	if !allow {
		return rebootRefused, j
	}
	if j.RebootAt != step {
		j.RebootAt, j.Reboots = step, 0
	} else if j.RebootBoot != "" && j.RebootBoot != boot {
		// The host rebooted since the step asked, and it asks again.
		j.Reboots++
	} else if !j.RebootAsked.IsZero() && now.Sub(j.RebootAsked) < rebootPatience {
		return rebootWait, j
	}
	if j.Reboots >= maxReboots {
		return rebootGiveUp, j
	}
	j.RebootBoot, j.RebootAsked = boot, now.UTC()
	return rebootAsk, j
}

// reboot handles a step that needs a reboot: with provision.allowReboot it
// journals "reboot at step" and asks the Rebooter, so that the next start
// of the plan resumes at the step; without, the step fails and says what to
// do. Before a reboot, the agent service is made sure of, since it is what
// resumes the plan after it.
func (p *Plan) reboot(ctx context.Context, s Step, j *journal, cause error) (StepState, string, error) {
	boot, err := p.o.BootID()
	if err != nil {
		return Failed, "", fmt.Errorf("%w; and the host's boot cannot be told: %w", cause, err)
	}
	action, nj := decideReboot(*j, s.Name(), boot, p.o.Now(), p.o.AllowReboot)
	switch action {
	case rebootRefused:
		return Failed, "", Permanent(fmt.Errorf("%w: reboot the host and run `berth-agent provision` again (the agent service resumes the plan by itself after a reboot), or set provision.allowReboot: true to let berth reboot it", cause))
	case rebootGiveUp:
		return Failed, "", Permanent(fmt.Errorf("%w, after %d reboots for this step already: look at the host (the feature may be broken), then run `berth-agent provision` again", cause, nj.Reboots))
	case rebootWait:
		return Reboot, fmt.Sprintf("waiting for the reboot asked for at %s", j.RebootAsked.Format(time.RFC3339)), nil
	}
	*j = nj
	if err := p.saveJournal(ctx, *j); err != nil {
		return Failed, "", err
	}
	p.ensureService(ctx, s)
	p.log.Warn("rebooting the host to finish a provision step; the plan resumes at it after the reboot", "step", s.Name(), "cause", cause)
	if err := p.o.Rebooter.Reboot(ctx, "berth-agent provision: "+s.Name()+" needs a reboot"); err != nil {
		return Failed, "", fmt.Errorf("%w; asking the host to reboot failed: %w", cause, err)
	}
	return Reboot, "rebooting to finish this step; the plan resumes at it after the reboot", nil
}

// ensureService runs the service step, when the plan has one after s, so
// that the agent service is there to resume the plan after the reboot. Its
// failure is logged: the reboot is still needed.
func (p *Plan) ensureService(ctx context.Context, s Step) {
	after := false
	for _, st := range p.o.Steps {
		if st == s {
			after = true
			continue
		}
		if !after || st.Name() != StepService {
			continue
		}
		done, _, err := st.Check(ctx)
		if err == nil && !done {
			err = st.Apply(ctx)
		}
		if err != nil {
			p.log.Error("could not make sure of the agent service before the reboot; run `berth-agent provision` after it", "err", err)
		}
	}
}
