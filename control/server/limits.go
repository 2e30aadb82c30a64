package server

import (
	"bytes"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/berthhq/berth/control/auth"
	"github.com/berthhq/berth/control/wire"
)

// What one agent identity may take of the report path.
//
// A report is read whole, under a short deadline, before it takes one of
// the slots that bound decoding and storing: a body that trickles holds a
// connection and the bytes it sent, never a slot. Each identity may have a
// few reports in progress at once (an honest agent sends one batch at a
// time), so one stolen token cannot hold the reading, the slots or the
// memory others need; past that it is told 429 at once. Each agent's
// records and bytes are metered per minute (quota), so one token cannot
// fill the database either.

// Defaults of Options.
const (
	// DefaultBodyTimeout is how long a report's body may take to arrive
	// once its headers have: a heartbeat is a few KiB gzip'd and a full
	// batch about a MiB, which even a slow link sends in far less.
	DefaultBodyTimeout = 10 * time.Second
	// DefaultPerIdentity bounds the reports one identity has in progress.
	DefaultPerIdentity = 4
	// DefaultMaxBuffered bounds the bytes of report bodies held in memory
	// at once, read or being read.
	DefaultMaxBuffered = 256 << 20
	// DefaultQuotaRecords and DefaultQuotaBytes are what one agent may
	// send per minute: ten times a 1 s interval's heartbeats, so bursts of
	// events and an outbox draining after an outage fit; the bytes are a
	// full batch a minute.
	DefaultQuotaRecords = 600
	DefaultQuotaBytes   = 4 << 20
)

// identity names who sends a report, for the per-identity bound: the
// agent an issued token names, or the subject of another method. It is a
// pair rather than one joined string so that naming it costs nothing.
type identity struct{ kind, name string }

func (id identity) String() string { return id.kind + " " + id.name }

// identityOf is p's identity. Under --auth none there are no identities,
// and no bound (the zero identity).
func identityOf(p auth.Principal) identity {
	switch {
	case p.Method == auth.MethodNone:
		return identity{}
	case p.Agent != "":
		return identity{"agent", p.Agent}
	}
	return identity{string(p.Method), p.Subject}
}

// inProgress counts the reports each identity has in progress.
type inProgress struct {
	mu  sync.Mutex
	n   map[identity]int
	max int
}

// enter takes one of id's places, or says false when it has max; leave
// gives it back. The zero identity is never bounded.
func (p *inProgress) enter(id identity) bool {
	if id == (identity{}) {
		return true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n[id] >= p.max {
		return false
	}
	p.n[id]++
	return true
}

func (p *inProgress) leave(id identity) {
	if id == (identity{}) {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n[id] <= 1 {
		delete(p.n, id)
		return
	}
	p.n[id]--
}

// body is a report's body, read whole; the server pools them.
type body struct {
	buf  []byte
	held int64 // bytes counted against Server.maxBuffered
	rd   bytes.Reader
}

// bodies are reused: most bodies are a few KiB.
var bodies = sync.Pool{New: func() any { return new(body) }}

// maxPooledBody is the largest buffer kept for reuse: the rare large
// batch's buffer goes back to the collector.
const maxPooledBody = 256 << 10

// readChunk is how much more room the body's buffer takes at a time, and
// so the step in which it is counted against the memory bound.
const readChunk = 32 << 10

// readBody reads the whole body of r, at most s.maxBody bytes, by the
// body deadline. The bytes it holds count against the server's bound on
// buffered bodies as they arrive; releaseBody gives them back.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) (*body, error) {
	rc := http.NewResponseController(w)
	if err := rc.SetReadDeadline(time.Now().Add(s.bodyTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return nil, fmt.Errorf("set the body's deadline: %w", err)
	}
	b := bodies.Get().(*body)
	b.buf = b.buf[:0]
	if !s.reserve(b, int64(cap(b.buf))) {
		return nil, s.fail(b, s.busyBuffering())
	}
	for {
		if len(b.buf) == cap(b.buf) {
			// Grow geometrically, counting the bytes before holding them;
			// one byte past the limit tells a body over it.
			grow := min(max(cap(b.buf), readChunk), int(s.maxBody)+1-len(b.buf))
			if !s.reserve(b, int64(grow)) {
				return nil, s.fail(b, s.busyBuffering())
			}
			nb := make([]byte, len(b.buf), cap(b.buf)+grow)
			copy(nb, b.buf)
			b.buf = nb
		}
		n, rerr := r.Body.Read(b.buf[len(b.buf):cap(b.buf)])
		b.buf = b.buf[:len(b.buf)+n]
		switch {
		case int64(len(b.buf)) > s.maxBody:
			return nil, s.fail(b, apiErrorf(http.StatusRequestEntityTooLarge, wire.CodeTooLarge, "body over the limit of %d bytes; send fewer records per batch", s.maxBody))
		case rerr == io.EOF:
			return b, nil
		case rerr != nil:
			return nil, s.fail(b, s.bodyError(rerr))
		}
	}
}

// reserve counts n more bytes of b against the bound, or says false.
func (s *Server) reserve(b *body, n int64) bool {
	if s.buffered.Add(n) > s.maxBuffered {
		s.buffered.Add(-n)
		return false
	}
	b.held += n
	return true
}

// releaseBody gives b's bytes back to the bound and b to the pool.
func (s *Server) releaseBody(b *body) {
	s.buffered.Add(-b.held)
	b.held = 0
	b.rd.Reset(nil)
	if cap(b.buf) <= maxPooledBody {
		bodies.Put(b)
	}
}

// fail releases b and returns err.
func (s *Server) fail(b *body, err error) error {
	s.releaseBody(b)
	return err
}

// busyBuffering is the answer when the server holds all the report bytes
// it may.
func (s *Server) busyBuffering() error {
	return &apiError{status: http.StatusTooManyRequests, code: wire.CodeRateLimited,
		msg: fmt.Sprintf("the endpoint holds %d MiB of report bodies, its bound; retry after the Retry-After seconds", s.maxBuffered>>20), retryAfter: jitter(1, 10)}
}

// bodyError is the answer to a body that could not be read.
func (s *Server) bodyError(err error) error {
	var mbe *http.MaxBytesError
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return apiErrorf(http.StatusRequestTimeout, wire.CodeTimeout, "the body did not arrive within %s of the headers; send it at once", s.bodyTimeout)
	case errors.As(err, &mbe):
		return apiErrorf(http.StatusRequestEntityTooLarge, wire.CodeTooLarge, "body over the limit of %d bytes; send fewer records per batch", mbe.Limit)
	}
	return apiErrorf(http.StatusBadRequest, wire.CodeBadRequest, "reading the body failed: %v", err)
}

// quota meters each agent's records and bytes over a sliding window, as a
// GCRA (generic cell rate algorithm): per agent and measure, the time at
// which its allowance would be whole again. An agent with any allowance
// left may send a batch, even one larger than what is left, and then owes
// the difference: so a batch larger than a whole allowance still goes
// through, once, and the rate over time is the limit all the same.
type quota struct {
	records, bytes int64
	window         time.Duration
	seed           maphash.Seed
	shards         [quotaShards]quotaShard
}

// quotaShards spread the agents over locks, and the sweeping over time.
const quotaShards = 64

type quotaShard struct {
	mu    sync.Mutex
	due   map[string]quotaDue
	swept time.Time
}

// quotaDue is when an agent's allowances are whole again (unix ns).
type quotaDue struct{ records, bytes int64 }

func newQuota(records, bytes int64, window time.Duration) *quota {
	q := &quota{records: records, bytes: bytes, window: window, seed: maphash.MakeSeed()}
	for i := range q.shards {
		q.shards[i].due = map[string]quotaDue{}
	}
	return q
}

// charge takes records and bytes from agent's allowance at now, or says
// how long until it may send again.
func (q *quota) charge(agent string, records, bytes int64, now time.Time) (wait time.Duration, ok bool) {
	sh := &q.shards[maphash.String(q.seed, agent)%quotaShards]
	ns := now.UnixNano()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if now.Sub(sh.swept) > q.window {
		// An agent whose allowances are whole needs no entry: forget them,
		// so that the map holds only the agents sending now.
		for a, d := range sh.due {
			if max(d.records, d.bytes) <= ns {
				delete(sh.due, a)
			}
		}
		sh.swept = now
	}
	d := sh.due[agent]
	nr, wr, okr := gcra(d.records, ns, records, q.records, q.window)
	nb, wb, okb := gcra(d.bytes, ns, bytes, q.bytes, q.window)
	if !okr || !okb {
		return max(wr, wb), false
	}
	sh.due[agent] = quotaDue{records: nr, bytes: nb}
	return 0, true
}

// gcra is one measure's decision: due is when the allowance of limit per
// window is whole again (unix ns), now the time and cost what a batch
// takes. A batch is admitted while any allowance is left, and moves due
// on by its cost; otherwise wait is how long until some is left. A limit
// of 0 or less admits everything.
func gcra(due, now, cost, limit int64, window time.Duration) (newDue int64, wait time.Duration, ok bool) {
	if limit <= 0 {
		return due, 0, true
	}
	base := max(due, now)
	if owed := time.Duration(base - now); owed >= window {
		return due, owed - window + 1, false
	}
	// cost/limit of a window, computed without overflow for costs up to
	// a few MiB and windows of minutes.
	per := float64(window) / float64(limit)
	return base + int64(float64(cost)*per), 0, true
}

// retryAfterSeconds rounds a wait up to whole seconds for Retry-After.
func retryAfterSeconds(d time.Duration) int {
	return int(max((d+time.Second-1)/time.Second, 1))
}

// chargeQuota meters b (decoded from size bytes) against its agent's
// allowance: 429 with the wait in Retry-After when it has none left.
func (s *Server) chargeQuota(b wire.Batch, size int64) error {
	if s.quota == nil {
		return nil
	}
	wait, ok := s.quota.charge(b.Agent, int64(len(b.Records)), size, s.now())
	if ok {
		return nil
	}
	return &apiError{status: http.StatusTooManyRequests, code: wire.CodeRateLimited,
		msg: fmt.Sprintf("host %s sent more than its quota a minute (%d records and %d bytes; 0 is no bound); retry after the Retry-After seconds",
			b.Agent, s.quota.records, s.quota.bytes),
		retryAfter: retryAfterSeconds(wait)}
}

// tooMany is the answer to an identity with DefaultPerIdentity reports in
// progress.
func tooMany(id identity, n int) error {
	return &apiError{status: http.StatusTooManyRequests, code: wire.CodeRateLimited,
		msg:        fmt.Sprintf("%s has %d reports in progress already; send one batch at a time", id, n),
		retryAfter: jitter(1, 5)}
}
