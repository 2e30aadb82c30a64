package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/berthhq/berth/internal/statedb"
	"github.com/berthhq/berth/telemetry"
)

// What a damaged agent.db takes with it, and what comes back (statedb
// replaces the file; engine, hostid and the disk tier rebuild from the
// host). Said by the state.rebuilt event and docs/configuration.md.
const (
	stateLost    = "reports queued and not yet sent; the engine's previous version (for a rollback), the versions that failed and any change under way; the cache's access times; the prewarm memo (the images are pulled again)"
	stateRebuilt = "the agent id (from IMDS, else the machine id; a random one is new); the active engine version (from the daemon that runs); the cache index (from the blobs on disk)"
)

// stateCheck is the "state" check of SPEC: agent.db can be used, and
// whether it was replaced because it was damaged.
func stateCheck(db *statedb.DB) telemetry.CheckFunc {
	return func(ctx context.Context) telemetry.Check {
		probe := db.Probe(ctx)
		var r statedb.Rebuild
		rebuilt, kept := false, false
		if probe == nil {
			var err error
			if r, rebuilt, err = db.LastRebuild(ctx); err != nil {
				probe = err
			}
			if rebuilt {
				_, err := os.Lstat(r.Copy)
				kept = err == nil
			}
		}
		return stateStatus(db.Path(), probe, r, rebuilt, kept)
	}
}

// stateStatus decides the check: fail while agent.db cannot be used (the
// error names the path and the fix); warn while the damaged copy of a
// replaced file is kept, so that someone looks at it (removing the copy
// clears the warning); ok otherwise.
func stateStatus(path string, probe error, r statedb.Rebuild, rebuilt, kept bool) telemetry.Check {
	c := telemetry.Check{Name: "state", Status: telemetry.OK}
	switch {
	case probe != nil:
		c.Status, c.Message = telemetry.Fail, probe.Error()
	case rebuilt && kept:
		c.Status = telemetry.Warn
		c.Message = fmt.Sprintf("%s was damaged (%s) and replaced by a new one at %s; lost: %s; the damaged copy is %s: remove it to clear this warning",
			path, r.Reason, r.At.Format(time.RFC3339), stateLost, r.Copy)
	case rebuilt:
		c.Message = fmt.Sprintf("%s: sound; replaced at %s after it was damaged (%s)", path, r.At.Format(time.RFC3339), r.Reason)
	default:
		c.Message = path + ": sound"
	}
	return c
}

// reportRebuild queues the state.rebuilt event once for a replaced
// agent.db, whichever process replaced it (the daemon at start, or a
// one-shot command beside it, or a transaction that found it damaged).
func (a *Agent) reportRebuild(ctx context.Context) error {
	r, found, err := a.db.LastRebuild(ctx)
	if err != nil || !found || r.Reported {
		return err
	}
	msg := fmt.Sprintf("agent.db was damaged (%s) and replaced; the damaged copy is %s", r.Reason, r.Copy)
	fields := map[string]string{"reason": r.Reason, "copy": r.Copy, "at": r.At.Format(time.RFC3339Nano), "lost": stateLost, "rebuilt": stateRebuilt}
	if err := a.reporter.Event(ctx, "state.rebuilt", msg, fields); err != nil {
		return err
	}
	r.Reported = true
	return a.db.SetRebuild(ctx, r)
}

// logStateErr logs an error of agent.db, except that an unusable file is
// left to the state check, which says so every 10 s anyway.
func (a *Agent) logStateErr(ctx context.Context, msg string, err error) {
	if err != nil && ctx.Err() == nil && !errors.Is(err, statedb.ErrUnusable) {
		a.log.Error(msg, "err", err)
	}
}
