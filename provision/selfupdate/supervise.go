package selfupdate

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/berthhq/berth/internal/svc"
)

// candidate is the agent version the launcher starts next.
type candidate struct {
	version string
	binary  string
	// probation: the version has not passed the health gate yet; since is
	// when its gate started.
	probation bool
	since     time.Time
}

// choose is the version to run: the selection, else the last good one,
// else the launcher's own — skipping blacklisted and unstaged versions.
func choose(s State, own string) string {
	for _, v := range []string{s.Selected, s.Good} {
		if v == own {
			return own
		}
		if v == "" {
			continue
		}
		if _, bad := s.Blacklist[v]; bad {
			continue
		}
		if _, ok := s.Staged[v]; ok {
			return v
		}
	}
	return own
}

// pick turns choose's answer into a candidate: the binary checked against
// its recorded hash (a damaged one is forgotten, to be staged again, and
// the next choice taken), a version on probation keeping its gate's start
// across launcher restarts.
func (l *Launcher) pick(ctx context.Context) (candidate, error) {
	own := l.o.Version
	var c candidate
	var damaged []string
	_, err := mutate(ctx, l.o.DB, func(s *State) error {
		c, damaged = candidate{}, nil
		for {
			v := choose(*s, own)
			if v == own {
				c = candidate{version: own, binary: l.o.Self}
				return nil
			}
			staged := s.Staged[v]
			if err := verifyBinary(staged); err != nil {
				damaged = append(damaged, v+": "+err.Error())
				delete(s.Staged, v)
				continue
			}
			c = candidate{version: v, binary: staged.Binary, probation: v != s.Good}
			if c.probation {
				if s.Trial == nil || s.Trial.Version != v {
					s.Trial = &Trial{Version: v, Since: time.Now().UTC()}
				}
				c.since = s.Trial.Since
			}
			return nil
		}
	})
	for _, d := range damaged {
		l.event(ctx, "agent.damaged", "staged agent binary not started: "+d+"; it is staged again when selected",
			map[string]string{"detail": d})
	}
	return c, err
}

// outcome is how one agent's run ended.
type outcome int

const (
	stopped    outcome = iota // the launcher was told to stop
	switched                  // the selection names another version
	exited                    // the agent exited unasked
	gateFailed                // on probation, not healthy and reporting in time
)

// runOne starts c, supervises it and acts on how it ended: a failure
// blacklists the version or backs off before the next start.
func (l *Launcher) runOne(ctx context.Context, c candidate, pidFile string) {
	g := &gate{url: l.o.HealthURL, client: l.gateHTTP, outbox: l.o.Outbox}
	g.start(ctx, time.Now())
	ch, err := startChild(c.version, c.binary, l.o.Args, l.o.Version, l.o.Stdout, l.o.Stderr)
	if err != nil {
		l.failed(ctx, c, ReasonCrashAtStart, err.Error(), 1)
		return
	}
	if err := svc.RecordPid(pidFile, ch.cmd.Process.Pid); err != nil {
		l.log.Warn("remember the agent's pid", "err", err)
	}
	l.running(ctx, c, ch.cmd.Process.Pid)
	l.log.Info("agent started", "version", c.version, "pid", ch.cmd.Process.Pid, "probation", c.probation)
	if l.fallbackFrom != "" {
		l.event(ctx, "agent.fallback", fmt.Sprintf("agent %s runs instead of %s (%s)", c.version, l.fallbackFrom, l.fallbackWhy),
			map[string]string{"from": l.fallbackFrom, "to": c.version, "reason": l.fallbackWhy})
		l.fallbackFrom, l.fallbackWhy = "", ""
	}
	out, why := l.supervise(ctx, ch, &c, g)
	_ = os.Remove(pidFile)
	switch out {
	case exited:
		if st, err := Load(ctx, l.o.DB); err == nil && choose(st, l.o.Version) != c.version {
			return // it exited after a new selection: a handover
		}
		msg := fmt.Sprintf("exit code %d", ch.exitCode())
		if tail := lastLines(ch.tail.String(), 3); tail != "" {
			msg += "; last output: " + tail
		}
		l.failed(ctx, c, ReasonCrashAtStart, msg, ch.exitCode())
	case gateFailed:
		l.blacklist(ctx, c.version, ReasonNotHealthy,
			fmt.Sprintf("not Healthy and reporting within update.healthTimeout (%s): %s", l.o.HealthTimeout, why))
	}
}

// supervise watches the agent until it exits, the launcher stops, the
// selection changes, or (on probation) the gate passes or times out.
func (l *Launcher) supervise(ctx context.Context, ch *child, c *candidate, g *gate) (outcome, string) {
	tick := time.NewTicker(l.o.Poll)
	defer tick.Stop()
	why := "no probe yet"
	for {
		select {
		case <-ch.done:
			return exited, ""
		case <-ctx.Done():
			ch.stopChild(l.o.StopGrace)
			return stopped, ""
		case <-tick.C:
		}
		if st, err := Load(ctx, l.o.DB); err == nil && choose(st, l.o.Version) != c.version {
			l.log.Info("selection changed; stopping the running agent", "version", c.version, "next", choose(st, l.o.Version))
			ch.stopChild(l.o.StopGrace)
			return switched, ""
		}
		if !c.probation {
			continue
		}
		err := g.probe(ctx)
		if err == nil {
			l.passed(ctx, *c, ch.cmd.Process.Pid)
			c.probation = false
			continue
		}
		why = err.Error()
		if time.Since(c.since) <= l.o.HealthTimeout {
			continue
		}
		if !g.blames(err) {
			l.waitingForControl(ctx, c)
			continue
		}
		ch.stopChild(l.o.StopGrace)
		return gateFailed, why
	}
}

// failed handles an agent that exited unasked (or could not start): on
// probation with an error of its own, the version is blacklisted at once;
// otherwise a restart is counted, crashLimit of them within crashWindow
// blacklist it, and fewer back off before the next start. The launcher's
// own version is never blacklisted: it only backs off.
func (l *Launcher) failed(ctx context.Context, c candidate, reason, msg string, code int) {
	l.log.Warn("agent exited unasked", "version", c.version, "detail", msg)
	if c.version != l.o.Version && c.probation && code > 0 {
		l.blacklist(ctx, c.version, reason, "crashed at start: "+msg)
		return
	}
	now := time.Now()
	recent := slices.DeleteFunc(append(l.restarts[c.version], now), func(t time.Time) bool { return now.Sub(t) > crashWindow })
	l.restarts[c.version] = recent
	if len(recent) >= crashLimit && c.version != l.o.Version {
		l.blacklist(ctx, c.version, ReasonCrashLoop, fmt.Sprintf("restarted %d times within %s; last: %s", len(recent), crashWindow, msg))
		return
	}
	sleep(ctx, min(time.Second<<(len(recent)-1), 30*time.Second))
}

// waitingForControl says once per version that its gate waits for a
// control endpoint that was down before it started.
func (l *Launcher) waitingForControl(ctx context.Context, c *candidate) {
	if l.waiting == c.version {
		return
	}
	l.waiting = c.version
	l.event(ctx, "agent.update.waiting", fmt.Sprintf("agent %s is Healthy, but control has not acknowledged a report for longer than update.healthTimeout; control was down before it started, so the gate waits for control instead of blacklisting it", c.version),
		map[string]string{"version": c.version})
}

// lastLines returns up to n last non-empty lines of s, joined by " | ".
func lastLines(s string, n int) string {
	lines := strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' })
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
