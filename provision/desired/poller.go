package desired

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/berthhq/berth/control/wire"
	"github.com/berthhq/berth/internal/statedb"
	"github.com/berthhq/berth/telemetry/report"
)

// Where the last answer is kept in agent.db.
const (
	Bucket  = "desired"
	lastKey = "last"
)

// Defaults of Options.
const (
	// DefaultJitter bounds the random pause before each poll: a fleet
	// whose endpoint restarts does not come back in one burst, and an
	// endpoint that answers at once (a proxy that strips If-None-Match)
	// is asked at most a few times a second per host.
	DefaultJitter     = 2 * time.Second
	DefaultMinBackoff = time.Second
	DefaultMaxBackoff = 5 * time.Minute
)

// Options wire a Poller.
type Options struct {
	// Agent is this host's id, the reporter's.
	Agent  string
	Client *Client
	DB     *statedb.DB
	// Wait is each long poll's ?wait= (default wire.DefaultWait, at most
	// wire.MaxWait).
	Wait time.Duration
	// Jitter bounds the pause before each poll (default DefaultJitter).
	Jitter time.Duration
	// MinBackoff and MaxBackoff bound the full-jitter wait after a failed
	// poll (defaults above).
	MinBackoff, MaxBackoff time.Duration
	Logger                 *slog.Logger
	// Now is the clock answers are dated by (default time.Now).
	Now func() time.Time
}

// Status is how polling goes, for logs and checks.
type Status struct {
	// LastAnswer is when the endpoint last answered (200 or 304).
	LastAnswer time.Time
	// LastError is the last poll's error, "" after a success.
	LastError string
	// FailingSince is when polls started to fail; zero while they work.
	FailingSince time.Time
}

// Poller keeps one host's desired state current.
type Poller struct {
	o   Options
	log *slog.Logger
	// draw returns a random duration in [0, n); rand.N unless a test sets it.
	draw func(n time.Duration) time.Duration

	mu      sync.Mutex
	cur     Answer
	have    bool
	status  Status
	changed []chan struct{} // one per reader, see Changed
}

// New returns a Poller holding the answer kept in agent.db, if any; it
// polls nothing until Run.
func New(ctx context.Context, o Options) (*Poller, error) {
	if o.Client == nil || o.DB == nil || o.Agent == "" {
		return nil, errors.New("desired-state poller: agent id, client and database are required")
	}
	if o.Wait <= 0 {
		o.Wait = wire.DefaultWait
	}
	o.Wait = min(o.Wait, wire.MaxWait)
	if o.Jitter <= 0 {
		o.Jitter = DefaultJitter
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = DefaultMinBackoff
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	o.MaxBackoff = max(o.MaxBackoff, o.MinBackoff)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	p := &Poller{o: o, log: o.Logger.With("component", "desired"), draw: rand.N[time.Duration]}
	a, ok, err := Load(ctx, o.DB)
	if err != nil {
		// A damaged record costs one answer: the first poll asks afresh.
		p.log.Warn("read the last desired state from agent.db; asking control afresh", "err", err)
	}
	p.cur, p.have = a, ok
	return p, nil
}

// Load reads the last answer kept in agent.db, for one-shot commands that
// run no Poller. ok is false when control never answered this host.
func Load(ctx context.Context, db *statedb.DB) (a Answer, ok bool, err error) {
	ok, err = db.Get(ctx, Bucket, lastKey, &a)
	if err != nil {
		return Answer{}, false, fmt.Errorf("read the desired state in %s: %w", db.Path(), err)
	}
	if ok && validate(a.Desired) != nil {
		return Answer{}, false, fmt.Errorf("the desired state kept in %s is not valid; it is ignored", db.Path())
	}
	return a, ok, nil
}

// Current is the last answer; ok is false while control has never
// answered this host (in this run or an earlier one).
func (p *Poller) Current() (Answer, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cur, p.have
}

// Changed returns a channel of the caller's own that receives a value
// after each answer that differs from the one before. Each reader calls
// it once (the daemon's loop, the self-updater). A channel holds at most
// one value: a reader that was busy sees one signal for several changes,
// and reads Current.
func (p *Poller) Changed() <-chan struct{} {
	c := make(chan struct{}, 1)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.changed = append(p.changed, c)
	return c
}

// Status is how polling goes.
func (p *Poller) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status
}

// Run polls until ctx ends: a random pause up to Jitter, then a long poll;
// after a failure, a full-jitter backoff (or the endpoint's Retry-After,
// capped at MaxBackoff) instead of the pause. A failure is logged when it
// starts and its end when it ends.
func (p *Poller) Run(ctx context.Context) {
	failures := 0
	var pause time.Duration
	for {
		if failures == 0 {
			pause = p.draw(p.o.Jitter)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
		err := p.Poll(ctx)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			failures = 0
			continue
		}
		failures++
		pause = p.backoff(failures, err)
	}
}

// backoff is the wait after the n-th failed poll in a row: the endpoint's
// Retry-After when it gave one, else a draw in [MinBackoff, min(MaxBackoff,
// MinBackoff·2^n)); both capped at MaxBackoff.
func (p *Poller) backoff(n int, err error) time.Duration {
	var se *report.StatusError
	if errors.As(err, &se) && se.RetryAfter > 0 {
		return min(se.RetryAfter, p.o.MaxBackoff)
	}
	ceiling := p.o.MaxBackoff
	if n < 30 {
		ceiling = min(p.o.MaxBackoff, p.o.MinBackoff<<n)
	}
	if ceiling <= p.o.MinBackoff {
		return p.o.MinBackoff
	}
	return p.o.MinBackoff + p.draw(ceiling-p.o.MinBackoff)
}

// Poll asks once (a long poll when an answer is known) and keeps a changed
// answer. A failure leaves the last answer as it is.
func (p *Poller) Poll(ctx context.Context) error {
	p.mu.Lock()
	etag := p.cur.ETag
	p.mu.Unlock()
	a, changed, err := p.o.Client.Get(ctx, p.o.Agent, etag, p.o.Wait)
	now := p.o.Now().UTC()
	if err != nil {
		if ctx.Err() == nil {
			p.failed(err, now)
		}
		return err
	}
	p.mu.Lock()
	if !p.status.FailingSince.IsZero() {
		p.log.Info("desired state read again", "failing_for", now.Sub(p.status.FailingSince).Round(time.Second).String())
	}
	p.status = Status{LastAnswer: now}
	if !changed {
		p.mu.Unlock()
		return nil
	}
	a.Time = now
	p.cur, p.have = a, true
	p.mu.Unlock()
	p.log.Info("desired state changed", "engine", engineOf(a.Desired), "agent", agentOf(a.Desired), "rollouts", a.Desired.Rollouts, "etag", a.ETag)
	if err := p.o.DB.Put(ctx, Bucket, lastKey, a); err != nil && ctx.Err() == nil {
		// The answer is acted on all the same; after a restart the
		// endpoint gives it again.
		p.log.Warn("keep the desired state in agent.db", "err", err)
	}
	p.mu.Lock()
	for _, c := range p.changed {
		select {
		case c <- struct{}{}:
		default:
		}
	}
	p.mu.Unlock()
	return nil
}

func (p *Poller) failed(err error, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.status.FailingSince.IsZero() {
		p.status.FailingSince = now
		p.log.Error("cannot read the desired state from the control endpoint; retrying with backoff, the host keeps what it runs", "err", err)
	}
	p.status.LastError = err.Error()
}

func engineOf(d wire.Desired) string {
	if d.Engine == nil {
		return "(no opinion)"
	}
	return d.Engine.Flavor + " " + d.Engine.Version
}

func agentOf(d wire.Desired) string {
	if d.Agent == nil {
		return "(no opinion)"
	}
	return d.Agent.Version
}
