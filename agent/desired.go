package agent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/berthhq/berth/control/wire"
	"github.com/berthhq/berth/engine"
	"github.com/berthhq/berth/engine/release"
	"github.com/berthhq/berth/internal/clip"
	"github.com/berthhq/berth/internal/statedb"
	"github.com/berthhq/berth/provision/desired"
	"github.com/berthhq/berth/provision/selfupdate"
	"github.com/berthhq/berth/telemetry/report"
)

// agentRecheck is how long after a failure to tell whether the desired
// agent version is signed (release storage down) it is asked again.
const agentRecheck = time.Minute

// controlState is the control endpoint's desired state as this agent acts
// on it: the poller that keeps it current, and the agent's judgement of the
// desired agent version (is it signed for this host?). The engine's
// version is judged by engine.Desired, which asks engineControl.
type controlState struct {
	poller *desired.Poller // nil without control.url
	// wake is the poller's change signal for the daemon's loop; nil
	// (never) without control.url.
	wake <-chan struct{}
	// agentWake tells the self-updater that the judged desired agent
	// version changed.
	agentWake chan struct{}
	releases  *release.Client // nil without engine.releases.url
	events    eventQueue
	log       *slog.Logger
	os, arch  string

	mu sync.Mutex
	// agentFor is the desired agent version last judged; agentOK says it
	// is signed, agentRefusal that it is not; neither, that telling failed
	// and is tried again at agentRetry.
	agentFor     string
	agentOK      bool
	agentRefusal *wire.Rejected
	agentRetry   time.Time
}

// newDesired builds the desired state's poller (with control.url: same
// agent id and token source as the reports) and the engine's resolver of
// SPEC's "Which engine version" on it.
func (a *Agent) newDesired(ctx context.Context, tokens report.TokenSource, log *slog.Logger) error {
	s := &controlState{releases: a.releases, events: a.reporter, log: a.log, os: runtime.GOOS, arch: runtime.GOARCH, agentWake: make(chan struct{}, 1)}
	a.control = s
	opts := engine.DesiredOptions{Pin: a.cfg.Engine.Version}
	if a.cfg.Control.URL != "" {
		client, err := desired.NewClient(desired.ClientOptions{URL: a.cfg.Control.URL, Tokens: tokens, Logger: log})
		if err != nil {
			return err
		}
		if s.poller, err = desired.New(ctx, desired.Options{Agent: a.reporter.Agent(), Client: client, DB: a.db, Logger: log}); err != nil {
			return err
		}
		opts.Control = s.engineControl
		s.wake = s.poller.Changed()
	}
	a.desired = a.engine.DesiredWith(opts)
	a.agentRejected = func(ctx context.Context) []wire.Rejected { return selfupdate.Rejected(ctx, a.db) }
	return nil
}

// storedDesired is the engine's resolver for a one-shot command (`berth-
// agent provision`): control's word is the answer the daemon kept in
// agent.db. A one-shot polls nothing, so there is no first answer to wait
// for: without one, a host with no engine takes the channel's newest.
func storedDesired(ctx context.Context, cfg controlConfig, db *statedb.DB, m *engine.Manager, log *slog.Logger) *engine.Desired {
	opts := engine.DesiredOptions{Pin: cfg.pin}
	if cfg.url != "" {
		c := engine.Control{Answered: true}
		a, ok, err := desired.Load(ctx, db)
		if err != nil {
			log.Warn("read control's last desired state; taking it as no opinion", "err", err)
		}
		if ok && a.Desired.Engine != nil {
			c.Flavor, c.Version = a.Desired.Engine.Flavor, a.Desired.Engine.Version
		}
		opts.Control = func() engine.Control { return c }
	}
	return m.DesiredWith(opts)
}

// controlConfig is what storedDesired needs of the config.
type controlConfig struct{ url, pin string }

// engineControl is control's word on the engine, for engine.Desired.
func (s *controlState) engineControl() engine.Control {
	a, ok := s.poller.Current()
	c := engine.Control{Answered: ok}
	if ok && a.Desired.Engine != nil {
		c.Flavor, c.Version = a.Desired.Engine.Flavor, a.Desired.Engine.Version
	}
	return c
}

// changed receives a value when control's answer changes, for the
// daemon's loop.
func (s *controlState) changed() <-chan struct{} { return s.wake }

// desiredAgentChanged receives a value when what desiredAgent answers may
// have changed (a desired agent version judged), for the self-updater
// (agent/selfupdate.go), so that it acts at once rather than at its next
// look.
func (a *Agent) desiredAgentChanged() <-chan struct{} { return a.control.agentWake }

// wantedAgent is the agent version control names for this host, "" for
// none.
func (s *controlState) wantedAgent() string {
	if s.poller == nil {
		return ""
	}
	a, ok := s.poller.Current()
	if !ok || a.Desired.Agent == nil {
		return ""
	}
	return a.Desired.Agent.Version
}

// desiredAgent is the agent version control wants this host to run, once
// it is known to be signed for this host: what self-update moves the agent
// to (agent/selfupdate.go). ok is false when control names none, names one
// that is refused, or its check has not succeeded yet.
func (a *Agent) desiredAgent() (version string, ok bool) {
	s := a.control
	v := s.wantedAgent()
	s.mu.Lock()
	defer s.mu.Unlock()
	if v == "" || v != s.agentFor || !s.agentOK {
		return "", false
	}
	return v, true
}

// judgeAgent checks the desired agent version against the verified release
// metadata when it changes (and again after a failure to tell). One that
// is not signed for this host is refused: an event, a Rejected entry in
// the heartbeats, and desiredAgent never offers it.
func (s *controlState) judgeAgent(ctx context.Context, now time.Time) {
	v := s.wantedAgent()
	s.mu.Lock()
	settled := v == s.agentFor && (v == "" || s.agentOK || s.agentRefusal != nil || now.Before(s.agentRetry))
	s.mu.Unlock()
	if settled {
		return
	}
	why, err := "", error(nil)
	if v != "" {
		why, err = s.agentSigned(ctx, v)
	}
	if ctx.Err() != nil {
		return
	}
	s.mu.Lock()
	s.agentFor, s.agentOK, s.agentRefusal = v, false, nil
	switch {
	case err != nil:
		s.agentRetry = now.Add(agentRecheck)
	case why == "":
		s.agentOK = v != ""
	default:
		s.agentRefusal = &wire.Rejected{Kind: wire.KindAgent, Version: v, Reason: wire.RejectedNotSigned, Message: why, Time: now.UTC()}
	}
	s.mu.Unlock()
	select {
	case s.agentWake <- struct{}{}:
	default:
	}
	switch {
	case err != nil:
		s.log.Warn("cannot tell whether control's desired agent version is signed; asking again later", "version", v, "err", err)
	case why != "":
		s.log.Error("refusing control's desired agent version", "version", v, "reason", why)
		if err := s.events.Event(ctx, "agent.rejected", why, map[string]string{"version": v, "reason": wire.RejectedNotSigned}); err != nil && ctx.Err() == nil {
			s.log.Error("queue the agent.rejected event", "err", err)
		}
	}
}

// agentSigned says why agent version v cannot be used here ("" when it
// can); an error is a failure to tell.
func (s *controlState) agentSigned(ctx context.Context, v string) (string, error) {
	if s.releases == nil {
		return "engine.releases.url is not set, so no agent version can be verified", nil
	}
	if err := s.releases.Refresh(ctx); err != nil {
		return "", fmt.Errorf("refresh release metadata: %w", err)
	}
	_, err := s.releases.Find(release.Query{Kind: wire.KindAgent, Version: v, OS: s.os, Arch: s.arch})
	if errors.Is(err, release.ErrNotFound) {
		return fmt.Sprintf("agent %s is not signed for %s/%s in the verified release metadata", v, s.os, s.arch), nil
	}
	return "", err
}

// rejected is every version this host gave up on, for the heartbeat:
// engine versions that failed their health gate (failed, from the engine's
// state), control's versions refused as not signed, and the agent versions
// self-update blacklisted (agentRejected). Newest first, at most
// wire.MaxRejected, each one the endpoint accepts.
func (a *Agent) rejected(ctx context.Context, failed map[string]engine.Failure) []wire.Rejected {
	var out []wire.Rejected
	for v, f := range failed {
		out = append(out, wire.Rejected{Kind: wire.KindEngine, Version: v, Reason: wire.RejectedRolledBack, Message: f.Reason, Time: f.At})
	}
	if r, ok := a.desired.Refused(); ok {
		out = append(out, wire.Rejected{Kind: wire.KindEngine, Version: r.Version, Reason: wire.RejectedNotSigned, Message: r.Reason, Time: r.At})
	}
	a.control.mu.Lock()
	if r := a.control.agentRefusal; r != nil {
		out = append(out, *r)
	}
	a.control.mu.Unlock()
	if a.agentRejected != nil {
		out = append(out, a.agentRejected(ctx)...)
	}
	return tidyRejected(out, time.Now())
}

// tidyRejected keeps the entries the endpoint accepts (a version that is a
// version, a message within bounds, no time ahead of now), newest first, at
// most wire.MaxRejected.
func tidyRejected(rs []wire.Rejected, now time.Time) []wire.Rejected {
	out := rs[:0:0]
	for _, r := range rs {
		if wire.CheckVersion(r.Version) != nil {
			continue
		}
		r.Message = clip.String(r.Message, wire.MaxMessageLen)
		if r.Time.After(now) {
			r.Time = now
		}
		out = append(out, r)
	}
	slices.SortStableFunc(out, func(x, y wire.Rejected) int {
		return cmp.Or(y.Time.Compare(x.Time), cmp.Compare(x.Kind, y.Kind), cmp.Compare(x.Version, y.Version))
	})
	if len(out) > wire.MaxRejected {
		out = out[:wire.MaxRejected]
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
