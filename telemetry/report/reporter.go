// Package report sends the agent's reports to the control endpoint: a
// heartbeat every control.reportInterval and an event for every change
// worth telling, written to the durable outbox first (telemetry/outbox) and
// deleted from it only once the endpoint acknowledges them.
//
// A Client posts one batch (gzip'd JSON of control/wire) with a bearer token
// from a TokenSource. A Reporter owns the loop: it appends heartbeats and
// events to the outbox, and a sender sends the oldest records in batches,
// backing off (full jitter, capped, Retry-After honoured within the cap)
// while the endpoint is down or refuses. The endpoint stores each (agent,
// seq) once, so a batch sent again after a crash between the POST and the
// acknowledgement is harmless.
package report

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/berthhq/berth/control/wire"
	"github.com/berthhq/berth/internal/hostid"
	"github.com/berthhq/berth/telemetry/outbox"
)

// Defaults of Options.
const (
	DefaultInterval     = 60 * time.Second
	DefaultBatchRecords = 500
	// DefaultBatchBytes leaves room under wire.MaxBatchBytes, the
	// endpoint's limit on a batch's JSON, for the envelope and for a
	// record whose size the estimate missed.
	DefaultBatchBytes  = wire.MaxBatchBytes - 64<<10
	DefaultMinBackoff  = time.Second
	DefaultMaxBackoff  = time.Minute
	DefaultRejectAfter = 3
)

// Options wire a Reporter.
type Options struct {
	// Agent is the agent id every batch carries (see internal/hostid).
	Agent  string
	Outbox *outbox.Outbox
	// Client sends batches; nil when there is no control endpoint
	// (control.url empty): records then stay queued, bounded by the
	// outbox, and nothing is sent.
	Client *Client
	// Interval is control.reportInterval, between heartbeats.
	Interval time.Duration
	// FirstHeartbeat is the wait before the first heartbeat (a random
	// part of it is added so that a fleet restarted at once does not beat
	// in step); Interval when 0.
	FirstHeartbeat time.Duration
	// Heartbeat builds the heartbeat's content; the Reporter fills in
	// IntervalSeconds and Dropped, which it knows best. nil sends no
	// heartbeats, only events.
	Heartbeat func(ctx context.Context) (wire.Heartbeat, error)
	// BatchRecords and BatchBytes bound one batch (defaults above).
	BatchRecords int
	BatchBytes   int
	// MinBackoff and MaxBackoff bound the wait after a failed send.
	MinBackoff, MaxBackoff time.Duration
	// RejectAfter is how many times the endpoint must refuse a record
	// sent alone as invalid before it is skipped (default 3).
	RejectAfter int
	// Metrics registers the reporter's figures; nil registers none.
	Metrics prometheus.Registerer
	Logger  *slog.Logger
}

// Status is how reporting goes, for the "control" health check.
type Status struct {
	// Queued counts the records in the outbox (as of the last append or
	// send).
	Queued int
	// LastSent is when a batch was last acknowledged.
	LastSent time.Time
	// LastError is the last send's error, "" after a success.
	LastError string
	// FailingSince is when sends started to fail; zero while they work.
	FailingSince time.Time
}

// Reporter writes heartbeats and events to the outbox and sends them.
type Reporter struct {
	o    Options
	log  *slog.Logger
	m    *metrics
	wake chan struct{}
	// soon asks for a heartbeat before the next interval: an event says the
	// host changed (an engine switched, an agent version failed), and a
	// rollout waiting on the new state should not wait a whole interval.
	soon    chan struct{}
	running atomic.Bool

	mu     sync.Mutex
	status Status

	// The sender's state, touched by its goroutine only.
	limit    int    // records per batch, halved while a refused record is isolated
	bytes    int    // batch bytes, lowered for good by a 413
	suspect  uint64 // a refused record is at or below this seq; 0 for none
	poison   uint64 // seq of the lone record last refused as invalid
	refusals int    // how many times in a row poison was refused
	attempt  int    // failed sends in a row
}

// New returns a Reporter; it starts nothing until Run.
func New(o Options) (*Reporter, error) {
	if err := hostid.Validate(o.Agent); err != nil {
		return nil, fmt.Errorf("reporter: agent id: %w", err)
	}
	if o.Outbox == nil {
		return nil, errors.New("reporter: an outbox is required")
	}
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.FirstHeartbeat <= 0 {
		o.FirstHeartbeat = o.Interval
	}
	if o.BatchRecords <= 0 || o.BatchRecords > wire.MaxRecords {
		o.BatchRecords = DefaultBatchRecords
	}
	if o.BatchBytes <= 0 || o.BatchBytes > wire.MaxBatchBytes {
		o.BatchBytes = DefaultBatchBytes
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = DefaultMinBackoff
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	o.MaxBackoff = max(o.MaxBackoff, o.MinBackoff)
	if o.RejectAfter <= 0 {
		o.RejectAfter = DefaultRejectAfter
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Reporter{
		o:     o,
		log:   o.Logger.With("component", "report"),
		wake:  make(chan struct{}, 1),
		soon:  make(chan struct{}, 1),
		limit: o.BatchRecords,
		bytes: o.BatchBytes,
	}
	var err error
	if r.m, err = newMetrics(o.Metrics); err != nil {
		return nil, fmt.Errorf("reporter metrics: %w", err)
	}
	return r, nil
}

// Agent returns the agent id the reporter sends as.
func (r *Reporter) Agent() string { return r.o.Agent }

// Status returns how reporting goes.
func (r *Reporter) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status
}

// Run appends a heartbeat every Interval and sends what the outbox holds,
// until ctx ends; it returns once its goroutines have stopped. Records
// left unsent stay in the outbox for the next run. Run must be called once.
func (r *Reporter) Run(ctx context.Context) {
	if !r.running.CompareAndSwap(false, true) {
		r.log.Error("reporter already running; this Run returns at once")
		return
	}
	r.refreshStats(ctx)
	var wg sync.WaitGroup
	if r.o.Client != nil {
		wg.Go(func() { r.send(ctx) })
		r.poke() // what an earlier run left behind goes first
	} else {
		r.log.Info("no control endpoint (control.url is empty): reports stay queued in agent.db, bounded")
	}
	defer wg.Wait()
	if r.o.Heartbeat == nil {
		<-ctx.Done()
		return
	}
	first := r.o.FirstHeartbeat/2 + rand.N(r.o.FirstHeartbeat/2+1)
	t := time.NewTimer(first)
	defer t.Stop()
	next := time.Now().Add(first)
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.soon:
			// An early heartbeat, but never closer than soonGap to the
			// last: a flapping check must not turn events into a stream.
			at := last.Add(r.soonGap())
			if now := time.Now(); at.Before(now) {
				at = now
			}
			if at.Before(next) {
				next = at
				t.Reset(time.Until(at))
			}
			continue
		case <-t.C:
		}
		r.beat(ctx)
		last = time.Now()
		next = last.Add(r.o.Interval)
		t.Reset(r.o.Interval)
	}
}

// soonGap is the least time between a heartbeat and an early one.
func (r *Reporter) soonGap() time.Duration { return min(r.o.Interval, 5*time.Second) }

// beat appends one heartbeat.
func (r *Reporter) beat(ctx context.Context) {
	bctx, cancel := context.WithTimeout(ctx, min(r.o.Interval, 30*time.Second))
	defer cancel()
	hb, err := r.o.Heartbeat(bctx)
	if err != nil {
		if ctx.Err() == nil {
			r.log.Warn("build the heartbeat; skipping this one", "err", err)
		}
		return
	}
	hb.IntervalSeconds = int64(r.o.Interval.Round(time.Second) / time.Second)
	if d, err := r.o.Outbox.Dropped(ctx); err == nil {
		hb.Dropped = d
	} else {
		r.log.Warn("read the outbox's dropped counts", "err", err)
	}
	fitHeartbeat(&hb)
	if _, err := r.o.Outbox.Append(ctx, wire.KindHeartbeat, hb); err != nil {
		if ctx.Err() == nil {
			r.log.Error("queue a heartbeat", "err", err)
		}
	}
	r.refreshStats(ctx)
	r.poke()
}

// Event appends an event now and wakes the sender. Message and field
// values over the wire's limits are clipped rather than refused. It may
// be called before Run, and from processes that never Run: the record
// waits in agent.db for a running reporter.
func (r *Reporter) Event(ctx context.Context, kind, message string, fields map[string]string) error {
	if err := (Queue{r.o.Outbox}).Event(ctx, kind, message, fields); err != nil {
		return err
	}
	r.m.events.Inc()
	r.refreshStats(ctx)
	r.poke()
	select {
	case r.soon <- struct{}{}:
	default:
	}
	return nil
}

// poke wakes the sender without blocking; one pending wake is enough.
func (r *Reporter) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// send is the sender's loop. A wake while it backs off is kept for later,
// not acted on: new records must not cut a backoff short, or a fleet whose
// endpoint is down would retry at the heartbeat rate in step.
func (r *Reporter) send(ctx context.Context) {
	var retryAt time.Time
	for {
		if wait := time.Until(retryAt); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		} else {
			select {
			case <-ctx.Done():
				return
			case <-r.wake:
			}
		}
		wait, err := r.drain(ctx)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			retryAt = time.Time{}
			continue
		}
		retryAt = time.Now().Add(wait)
	}
}

// drain sends batches until the outbox is empty or a send fails; then it
// returns the wait before the next try.
func (r *Reporter) drain(ctx context.Context) (time.Duration, error) {
	defer r.refreshStats(ctx)
	for {
		recs, err := r.o.Outbox.Peek(ctx, r.limit)
		if err != nil {
			return r.failed(ctx, err, "outbox")
		}
		if len(recs) == 0 {
			return 0, nil
		}
		if r.suspect != 0 && recs[0].Seq > r.suspect {
			// Every record the endpoint refused in a batch is behind us:
			// back to full batches.
			r.suspect, r.limit = 0, r.o.BatchRecords
			continue
		}
		batch, size := r.cut(recs)
		ack, err := r.o.Client.Send(ctx, wire.Batch{Agent: r.o.Agent, Records: batch})
		if err != nil {
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			var se *StatusError
			if errors.As(err, &se) && se.Invalid() {
				if len(batch) > 1 {
					// Halve the batch and send again at once, to find the
					// records the endpoint will take: at most
					// log2(BatchRecords) requests before a lone record
					// is refused and the backoff applies.
					r.m.errors.WithLabelValues(code(err)).Inc()
					if se.Status == http.StatusRequestEntityTooLarge {
						r.bytes = max(size/2, 1)
						r.log.Warn("control endpoint refused a batch as too large; sending smaller ones", "bytes", size, "records", len(batch))
					}
					r.limit = max(len(batch)/2, 1)
					r.suspect = max(r.suspect, batch[len(batch)-1].Seq)
					continue
				}
				if skipped, err := r.refused(ctx, batch[0], se); skipped || err != nil {
					if err != nil {
						return r.failed(ctx, err, "outbox")
					}
					continue
				}
			}
			return r.failed(ctx, err, code(err))
		}
		first, last := batch[0].Seq, batch[len(batch)-1].Seq
		// Only what this batch holds is deleted: an UpTo above it (an
		// agent.db recreated with a clock behind, or a second host
		// sending as this id) must not delete records the endpoint has
		// not seen, and the outbox refuses an Ack beyond its numbers.
		upTo := min(ack.UpTo, last)
		if ack.UpTo > last {
			r.log.Warn("control endpoint acknowledged beyond the batch; is another host reporting with this agent id?", "up_to", ack.UpTo, "last_sent", last)
		}
		if upTo < first {
			err := fmt.Errorf("control endpoint acknowledged up to %d, below the batch's first record %d: it stored nothing", ack.UpTo, first)
			return r.failed(ctx, err, "ack")
		}
		if err := r.o.Outbox.Ack(ctx, upTo); err != nil {
			return r.failed(ctx, err, "outbox")
		}
		acked := 0
		for _, rec := range batch {
			if rec.Seq <= upTo {
				acked++
			}
		}
		r.m.sent.Add(float64(acked))
		r.succeeded()
	}
}

// refused handles a record the endpoint refused as invalid when sent alone.
// After RejectAfter refusals in a row, with backoff between them, it is
// skipped: acknowledged locally, counted and logged with the endpoint's
// reason. Keeping it would stop every later report forever, since the
// outbox sends in order; the refusals in a row rule out a server that
// was briefly wrong (mid-deploy, say) before a record is given up. A
// server that refuses everything loses at most one record per
// RejectAfter backoffs, and says why in its answer each time.
func (r *Reporter) refused(ctx context.Context, rec wire.Record, se *StatusError) (skipped bool, err error) {
	if r.poison == rec.Seq {
		r.refusals++
	} else {
		r.poison, r.refusals = rec.Seq, 1
	}
	if r.refusals < r.o.RejectAfter {
		return false, nil
	}
	r.m.errors.WithLabelValues(code(se)).Inc()
	what := string(rec.Kind)
	if rec.Event != nil {
		what += " " + rec.Event.Kind
	}
	if err := r.o.Outbox.Ack(ctx, rec.Seq); err != nil {
		return false, err
	}
	r.log.Error("control endpoint refuses a report; skipping it so the later ones get through",
		"seq", rec.Seq, "record", what, "refusals", r.refusals, "status", se.Status, "reason", se.Message)
	r.m.rejected.Inc()
	r.poison, r.refusals = 0, 0
	r.suspect, r.limit = 0, r.o.BatchRecords
	return true, nil
}

// cut returns the longest head of recs whose batch JSON fits r.bytes, at
// least one record (the endpoint then says whether it takes it), and that
// size.
func (r *Reporter) cut(recs []wire.Record) ([]wire.Record, int) {
	size := len(`{"agent":"","records":[]}`) + len(r.o.Agent)
	for i, rec := range recs {
		raw, err := json.Marshal(rec)
		n := len(raw) + 1 // and a comma
		if err != nil || (i > 0 && size+n > r.bytes) {
			if i == 0 {
				return recs[:1], size + n
			}
			return recs[:i], size
		}
		size += n
	}
	return recs, size
}

// failed records a failed send and returns the wait before the next.
func (r *Reporter) failed(ctx context.Context, err error, reason string) (time.Duration, error) {
	r.attempt++
	r.m.errors.WithLabelValues(reason).Inc()
	wait := jitter(r.o.MinBackoff, r.o.MaxBackoff, r.attempt)
	var se *StatusError
	if errors.As(err, &se) && se.RetryAfter > 0 {
		wait = max(wait, min(se.RetryAfter, r.o.MaxBackoff))
	}
	r.mu.Lock()
	first := r.status.FailingSince.IsZero()
	if first {
		r.status.FailingSince = time.Now()
	}
	r.status.LastError = err.Error()
	r.mu.Unlock()
	// One line when sending starts to fail and then one in ten: an
	// endpoint down for hours must not fill the log.
	if first || r.attempt%10 == 0 {
		r.log.Warn("send reports; they stay queued and are retried", "err", err, "retry_in", wait.Round(time.Millisecond), "failures", r.attempt)
	} else {
		r.log.Debug("send reports", "err", err, "retry_in", wait.Round(time.Millisecond), "failures", r.attempt)
	}
	return wait, err
}

func (r *Reporter) succeeded() {
	now := time.Now()
	r.m.lastSent.Set(float64(now.UnixNano()) / 1e9)
	r.mu.Lock()
	wasFailing := !r.status.FailingSince.IsZero()
	r.status.LastSent, r.status.LastError, r.status.FailingSince = now, "", time.Time{}
	r.mu.Unlock()
	if wasFailing {
		r.log.Info("reports get through again", "after_failures", r.attempt)
	}
	r.attempt = 0
}

// refreshStats reads the outbox's figures for Status and the metrics.
func (r *Reporter) refreshStats(ctx context.Context) {
	st, err := r.o.Outbox.Stats(ctx)
	if err != nil {
		return
	}
	r.m.setOutbox(st)
	r.mu.Lock()
	r.status.Queued = st.Records
	r.mu.Unlock()
}

// jitter is full jitter: a random wait between lo and lo·2^attempt,
// capped at hi.
func jitter(lo, hi time.Duration, attempt int) time.Duration {
	bound := hi
	if attempt < 62 && lo <= hi>>attempt { // lo<<attempt neither overflows nor passes hi
		bound = lo << attempt
	}
	if bound <= lo {
		return lo
	}
	return lo + rand.N(bound-lo)
}

// code names a send error for the send-errors metric: the HTTP status, or
// "transport" (no HTTP answer: network, token, outbox).
func code(err error) string {
	var se *StatusError
	if errors.As(err, &se) {
		return fmt.Sprint(se.Status)
	}
	return "transport"
}

// Queue puts events into the outbox without sending them: what a one-shot
// command (an `engine upgrade` run by hand) uses, without a client, an
// agent id or IMDS. The daemon's Reporter sends them with its own.
type Queue struct{ Outbox *outbox.Outbox }

// Event queues one event.
func (q Queue) Event(ctx context.Context, kind, message string, fields map[string]string) error {
	e := wire.Event{Kind: kind, Message: message, Fields: fields}
	fitEvent(&e)
	if _, err := q.Outbox.Append(ctx, wire.KindEvent, e); err != nil {
		return fmt.Errorf("report event %s: %w", kind, err)
	}
	return nil
}
