package selfupdate

import (
	"context"
	"fmt"
	"os"
	"time"
)

// blacklist gives up on v: recorded with why, the selection moved back to
// the last good version (or the launcher's own), and control told. The
// next start is the fallback, which reports itself as such.
func (l *Launcher) blacklist(ctx context.Context, v, reason, msg string) {
	own := l.o.Version
	var next string
	_, err := mutate(ctx, l.o.DB, func(s *State) error {
		if s.Blacklist == nil {
			s.Blacklist = map[string]Failure{}
		}
		s.Blacklist[v] = Failure{Reason: reason, Message: fitMessage(msg), At: time.Now().UTC()}
		if s.Good == v || s.Good == "" {
			s.Good = own
		}
		if s.Selected == v {
			s.Selected = s.Good
		}
		if s.Trial != nil && s.Trial.Version == v {
			s.Trial = nil
		}
		next = choose(*s, own)
		return nil
	})
	if err != nil {
		// The selection could not be changed: the launcher would start v
		// again. Said loudly; the crash-loop rule and the backoff bound it.
		l.log.Error("record a blacklisted agent version", "version", v, "err", err)
	}
	l.event(ctx, "agent.blacklisted", fmt.Sprintf("agent %s blacklisted (%s): %s; falling back to %s", v, reason, msg, next),
		map[string]string{"version": v, "reason": reason, "message": fitField(msg), "next": next})
	l.fallbackFrom, l.fallbackWhy = v, reason
}

// passed records that c passed the health gate: it is the good version now.
func (l *Launcher) passed(ctx context.Context, c candidate, pid int) {
	var from string
	_, err := mutate(ctx, l.o.DB, func(s *State) error {
		from = s.Good
		s.Good = c.version
		if s.Trial != nil && s.Trial.Version == c.version {
			s.Trial = nil
		}
		return nil
	})
	if err != nil {
		l.log.Error("record a good agent version", "version", c.version, "err", err)
		return
	}
	took := time.Since(c.since).Round(time.Millisecond)
	l.event(ctx, "agent.update.succeeded", fmt.Sprintf("agent %s is Healthy and reporting %s after it started; it replaces %s", c.version, took, from),
		map[string]string{"from": from, "to": c.version, "took": took.String()})
	c.probation = false
	l.running(ctx, c, pid)
}

// running records what runs now, for `version` and `self-update`.
func (l *Launcher) running(ctx context.Context, c candidate, pid int) {
	r := Running{Launcher: l.o.Version, LauncherPID: os.Getpid(), Version: c.version, PID: pid, Since: time.Now().UTC(), Probation: c.probation}
	if err := putRunning(ctx, l.o.DB, r); err != nil {
		l.log.Warn("record what runs", "err", err)
	}
}

// maxField bounds an event field (wire.MaxFieldValueLen).
const maxField = 1000

func fitField(s string) string {
	if len(s) <= maxField {
		return s
	}
	return s[:maxField-3] + "..."
}
