package selfupdate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/berthhq/berth/control/wire"
	"github.com/berthhq/berth/engine/release"
)

// Updater is the running agent's side of self-update: when the version
// control wants differs from what runs, is signed for this host and is not
// blacklisted, it stages it and selects it; the launcher then switches.
// Downgrades (a rollout's rollback) go the same way.
type Updater struct {
	Stager *Stager
	// Desired returns the agent version control wants, and false while it
	// has no opinion.
	Desired func() (string, bool)
	// Running is this agent's version.
	Running string
	Log     *slog.Logger
	// Every is how often Desired is asked (an in-memory answer and one
	// agent.db read); default 2s. Notify, or a receive on Changed, asks at
	// once.
	Every time.Duration
	// Changed, when not nil, tells of a new desired answer (the poller's).
	Changed <-chan struct{}

	wake chan struct{}
	// refused is the desired version last refused, reported once.
	refused string
}

// NewUpdater returns an Updater; Run starts it.
func NewUpdater(u Updater) *Updater {
	if u.Every <= 0 {
		u.Every = 2 * time.Second
	}
	if u.Log == nil {
		u.Log = slog.New(slog.DiscardHandler)
	}
	u.wake = make(chan struct{}, 1)
	return &u
}

// Notify makes Run look at the desired version now (the desired-state
// poller calls it on a change).
func (u *Updater) Notify() {
	select {
	case u.wake <- struct{}{}:
	default:
	}
}

// Run acts on the desired version until ctx ends. Failures are logged
// and retried at the next look.
func (u *Updater) Run(ctx context.Context) {
	t := time.NewTicker(u.Every)
	defer t.Stop()
	for {
		if err := u.Step(ctx); err != nil && ctx.Err() == nil {
			u.Log.Error("self-update", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-u.wake:
		case <-u.Changed:
		}
	}
}

// Step looks once: it stages and selects the desired version when it
// differs from the selection. A version that is not valid or not signed
// for this host is refused (an agent.update.refused event, once per
// version) and nothing changes.
func (u *Updater) Step(ctx context.Context) error {
	want, ok := u.Desired()
	if !ok || want == "" {
		return nil
	}
	st, err := Load(ctx, u.Stager.DB)
	if err != nil {
		return err
	}
	if want == st.Selected || (st.Selected == "" && want == u.Running) {
		return nil
	}
	if _, bad := st.Blacklist[want]; bad {
		return nil // the heartbeat's Rejected says so
	}
	if want == u.Stager.Launcher {
		return u.Stager.Select(ctx, want, false)
	}
	if err := wire.CheckVersion(want); err != nil {
		return u.refuse(ctx, want, fmt.Errorf("not a version: %w", err))
	}
	t, err := u.Stager.Find(ctx, want, "")
	if errors.Is(err, release.ErrNotFound) {
		return u.refuse(ctx, want, err)
	}
	if err != nil {
		return err
	}
	return u.Stager.Update(ctx, t, u.Running)
}

func (u *Updater) refuse(ctx context.Context, want string, why error) error {
	if u.refused == want {
		return nil
	}
	u.refused = want
	msg := fmt.Sprintf("control wants agent %s, which is not signed for this host: %v; nothing changes", want, why)
	u.Log.Warn(msg)
	if u.Stager.Events != nil {
		return u.Stager.Events.Event(ctx, "agent.update.refused", msg,
			map[string]string{"version": fitField(want), "reason": wire.RejectedNotSigned})
	}
	return nil
}

// Update stages t and selects it, with events before and after: the
// launcher switches to it within a second.
func (s *Stager) Update(ctx context.Context, t release.Target, from string) error {
	s.event(ctx, "agent.update.started", fmt.Sprintf("agent update from %s to %s started", from, t.Version),
		map[string]string{"from": from, "to": t.Version})
	start := time.Now()
	staged, err := s.Stage(ctx, t)
	if err != nil {
		s.event(ctx, "agent.update.failed", fmt.Sprintf("agent update to %s failed: %v", t.Version, err),
			map[string]string{"from": from, "to": t.Version, "message": fitField(err.Error())})
		return err
	}
	if err := s.Select(ctx, t.Version, false); err != nil {
		return err
	}
	took := time.Since(start).Round(time.Millisecond)
	s.event(ctx, "agent.update.staged", fmt.Sprintf("agent %s staged in %s and selected; the launcher switches to it", t.Version, took),
		map[string]string{"from": from, "to": t.Version, "binary": staged.Binary, "took": took.String()})
	return nil
}

func (s *Stager) event(ctx context.Context, kind, msg string, fields map[string]string) {
	s.log().Info(msg, "event", kind)
	if s.Events == nil {
		return
	}
	if err := s.Events.Event(ctx, kind, msg, fields); err != nil {
		s.log().Error("queue an event for control", "event", kind, "err", err)
	}
}
