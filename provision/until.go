package provision

import (
	"context"
	"errors"
	"time"
)

// Retry pauses of the one-shot between runs that did not end ready.
const (
	retryFirst = 2 * time.Second
	retryMax   = 30 * time.Second
)

// Until runs the plan until the host is ready, a step fails in a way that
// retrying cannot fix (a permanent failure, a reboot provision may not
// make), a reboot is pending, or ctx ends. It returns the last result.
func (p *Plan) Until(ctx context.Context) (Result, error) {
	wait := retryFirst
	for {
		r, err := p.Run(ctx)
		if err != nil {
			return r, err
		}
		if stop := final(r, ctx.Err()); stop {
			return r, nil
		}
		p.log.Info("provision not ready yet; trying again", "failed", r.Failed, "in", wait)
		select {
		case <-ctx.Done():
			return r, nil
		case <-time.After(wait):
		}
		wait = min(2*wait, retryMax)
	}
}

// final says a run's result ends the one-shot: ready, a reboot pending, a
// permanent failure, or no time left.
func final(r Result, ctxErr error) bool {
	if r.Ready || r.RebootPending || ctxErr != nil {
		return true
	}
	s, ok := r.Step(r.Failed)
	return ok && s.permanent
}

// errTimedOut is what a step interrupted by the end of the run's time says.
var errTimedOut = errors.New("provision's time ran out (--timeout)")
