package imagecache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/berthhq/berth/imagecache/cas"
)

// ---- flights: one fetch from below, any number of readers ----

// flightKey names a flight: one blob, fetched for one registry. Two
// registries asking for one digest get a flight each, so a request never
// waits on an upstream its name does not resolve to, and a registry that
// stalls or lies about a digest fails only its own clients.
type flightKey struct {
	registry string
	d        cas.Digest
}

// Why a flight ends early.
var (
	// errNoRoom: the blob does not fit in cache.local.maxSize beside what
	// is cached and in flight. Its clients are served without a spool.
	errNoRoom = errors.New("no room in the cache's disk budget to spool the blob")
	// errStalled: a source sent no byte for the idle deadline.
	errStalled = errors.New("sent nothing")
	// errAbandoned: every client left and the grace ran out.
	errAbandoned = errors.New("the fetch was cancelled: its clients left")
	// errSpool: the spool file could not be written.
	errSpool = errors.New("spool")
)

// reserver is a tier that keeps the spool within its size budget: the disk
// tier, whose file system the spool is on, and its cache.local.maxSize.
type reserver interface {
	Reserve(n int64) (release func(), err error)
}

// flight fetches one blob from the nearest lower tier that has it, or the
// upstream, into a spool file that its readers follow as it grows. When a
// source breaks off or stalls, the next one carries on with Range from
// where it stopped.
type flight struct {
	c      *Cache
	key    flightKey
	path   string
	ctx    context.Context // ends when the flight is abandoned or the cache closes
	cancel context.CancelCauseFunc

	mu       sync.Mutex
	notify   chan struct{} // closed and replaced at every change
	size     int64         // -1 until the source answered
	written  int64
	done     bool
	err      error // set when done and failed
	verified bool
	refs     int    // readers and the fetcher; the last one removes the spool
	readers  int    // clients streaming from the spool
	keep     bool   // a prewarm: not cancelled when its readers leave
	idleGen  int    // how many times the readers fell to none
	release  func() // gives back the spool's share of the disk budget
	reserved int64
}

// join returns the flight for the request's blob and registry, starting
// one if none runs. A prewarm joins without reading, and keeps the flight
// from being cancelled when its readers leave.
func (c *Cache) join(req request, prewarm bool) (*flight, error) {
	key := flightKey{req.Registry, req.Digest}
	c.mu.Lock()
	defer c.mu.Unlock()
	if f, ok := c.flights[key]; ok {
		f.mu.Lock()
		if prewarm {
			f.keep = true
		} else {
			f.refs++
			f.readers++
		}
		f.mu.Unlock()
		c.m.merged.Inc()
		return f, nil
	}
	if c.ctx.Err() != nil {
		return nil, &apiError{Status: http.StatusServiceUnavailable, Code: "UNAVAILABLE", Message: "the cache is shutting down"}
	}
	c.seq++
	f := &flight{c: c, key: key, path: filepath.Join(c.o.SpoolDir, fmt.Sprintf("%s.%d", req.Digest.Hex(), c.seq)),
		notify: make(chan struct{}), size: -1, refs: 1, keep: prewarm}
	if !prewarm {
		f.refs, f.readers = 2, 1
	}
	f.ctx, f.cancel = context.WithCancelCause(c.ctx)
	c.flights[key] = f
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		f.run(req)
	}()
	return f, nil
}

// change records a step under the lock and wakes the readers.
func (f *flight) change(fn func()) {
	f.mu.Lock()
	fn()
	close(f.notify)
	f.notify = make(chan struct{})
	f.mu.Unlock()
}

// leave is a reader's end. When the last reader of an unfinished flight
// leaves, the flight is cancelled after the grace unless a reader comes
// back or it is a prewarm: nobody would read what it fetches.
func (f *flight) leave() {
	f.mu.Lock()
	f.readers--
	idle := f.readers == 0 && !f.done && !f.keep
	if idle {
		f.idleGen++
	}
	gen := f.idleGen
	f.mu.Unlock()
	if idle {
		time.AfterFunc(f.c.grace, func() { f.abandonIfIdle(gen) })
	}
	f.unref()
}

// shouldAbandon decides, when a grace ends, whether to cancel a flight:
// still no reader since the readers last fell to none, unfinished, and
// not a prewarm.
func shouldAbandon(readers int, done, keep, sameIdle bool) bool {
	return readers == 0 && !done && !keep && sameIdle
}

func (f *flight) abandonIfIdle(gen int) {
	c := f.c
	c.mu.Lock()
	f.mu.Lock()
	abandon := shouldAbandon(f.readers, f.done, f.keep, f.idleGen == gen)
	if abandon && c.flights[f.key] == f {
		delete(c.flights, f.key) // a new request starts afresh
	}
	written, size := f.written, f.size
	f.mu.Unlock()
	c.mu.Unlock()
	if abandon {
		c.m.abandoned.Inc()
		c.log.Info("cancelled a fetch whose clients left", "digest", f.key.d, "registry", f.key.registry, "written", written, "size", size, "grace", c.grace)
		f.cancel(errAbandoned)
	}
}

// unref drops a reference; the last removes the spool and gives back its
// share of the disk budget.
func (f *flight) unref() {
	f.mu.Lock()
	f.refs--
	last := f.refs == 0
	f.mu.Unlock()
	if last {
		os.Remove(f.path)
		f.giveBack()
	}
}

// giveBack returns the spool's reservation (once).
func (f *flight) giveBack() {
	f.mu.Lock()
	release, n := f.release, f.reserved
	f.release, f.reserved = nil, 0
	f.mu.Unlock()
	if release != nil {
		release()
		f.c.m.spoolBytes.Sub(float64(n))
	}
}

// wait waits until the flight is done and returns its error.
func (f *flight) wait(ctx context.Context) error {
	for {
		f.mu.Lock()
		done, err, ch := f.done, f.err, f.notify
		f.mu.Unlock()
		if done {
			return err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// run fetches the blob, verifies it, commits it to the tiers above its
// source, then leaves the flight table.
func (f *flight) run(req request) {
	c := f.c
	defer f.unref()
	defer f.cancel(nil)
	defer c.forget(f)
	from, err := f.fetch(req)
	if err != nil {
		switch {
		case errors.Is(err, errNoRoom):
			c.log.Warn("blob does not fit in cache.local.maxSize beside what is cached and in flight: its clients are served without caching it", "digest", f.key.d, "registry", req.Registry, "err", err)
		case errors.Is(err, errAbandoned), c.ctx.Err() != nil:
			c.log.Info("fetch blob stopped", "digest", f.key.d, "registry", req.Registry, "err", err)
		default:
			c.log.Error("fetch blob", "digest", f.key.d, "registry", req.Registry, "repo", req.Repo, "err", err)
		}
		f.change(func() { f.done, f.err = true, err })
		return
	}
	f.change(func() { f.done, f.verified = true, true })
	f.commit(from)
}

// forget takes f out of the flight table, unless another has its place.
func (c *Cache) forget(f *flight) {
	c.mu.Lock()
	if c.flights[f.key] == f {
		delete(c.flights, f.key)
	}
	c.mu.Unlock()
}

// commit stores the verified spool in the tiers above its source, nearest
// first, so the next request finds the blob on disk as soon as possible.
func (f *flight) commit(from int) {
	c := f.c
	top := len(c.o.Tiers)
	if from >= 0 {
		top = from
	}
	for i, t := range c.o.Tiers[:top] {
		if i == 0 {
			f.giveBack() // from here on the bytes are the disk tier's own
		}
		if a, ok := t.(adopter); ok {
			// The spool is verified and on the tier's file system: link it.
			if err := a.Adopt(c.ctx, f.key.d, f.written, f.path); err != nil {
				c.log.Warn("store blob in tier", "tier", t.Name(), "digest", f.key.d, "err", err)
			}
			continue
		}
		src, err := os.Open(f.path)
		if err != nil {
			c.log.Error("reopen spooled blob", "path", f.path, "err", err)
			return
		}
		err = t.Put(c.ctx, f.key.d, f.written, src)
		src.Close()
		if err != nil {
			c.log.Warn("store blob in tier", "tier", t.Name(), "digest", f.key.d, "err", err)
		}
	}
}

// source is somewhere a blob can be read from: a tier below the nearest,
// or the upstream.
type source struct {
	name string
	tier int // index in Options.Tiers; -1 for the upstream
	// open reads the blob from offset and returns the whole blob's size.
	open func(ctx context.Context, offset int64) (io.ReadCloser, int64, error)
}

// sources lists where req's blob may be read from, nearest first.
func (c *Cache) sources(req request) []source {
	out := make([]source, 0, len(c.o.Tiers))
	for i := 1; i < len(c.o.Tiers); i++ {
		t := c.o.Tiers[i]
		out = append(out, source{name: t.Name(), tier: i, open: func(ctx context.Context, off int64) (io.ReadCloser, int64, error) {
			rc, n, err := t.Open(ctx, req.Digest, off)
			if err != nil {
				c.m.misses.WithLabelValues(t.Name()).Inc()
				if !errors.Is(err, cas.ErrNotFound) {
					c.log.Debug("tier unavailable; skipping it", "tier", t.Name(), "err", err) // once each way by the tier
				}
				return nil, 0, err
			}
			c.m.hits.WithLabelValues(t.Name()).Inc()
			return rc, off + n, nil
		}})
	}
	out = append(out, source{name: "upstream", tier: -1, open: func(ctx context.Context, off int64) (io.ReadCloser, int64, error) {
		up, err := c.o.Upstream(req.Registry)
		if err != nil {
			return nil, 0, err
		}
		rc, size, err := up.OpenBlob(ctx, req.Repo, req.Digest, off)
		if err == nil {
			c.m.upstreamFetches.WithLabelValues(c.registryLabel(req.Registry)).Inc()
		}
		return rc, size, err
	}})
	return out
}

// spooled is what a flight has written so far, from whichever sources.
type spooled struct {
	out  *os.File
	v    *cas.Verifier
	from int   // the first source that gave bytes (a tier, -1 the upstream); noSource before
	gave []int // every source that gave bytes
}

const noSource = -2

func (sp *spooled) gaveFrom(s source) {
	if sp.from == noSource {
		sp.from = s.tier
	}
	if len(sp.gave) == 0 || sp.gave[len(sp.gave)-1] != s.tier {
		sp.gave = append(sp.gave, s.tier)
	}
}

// fetch copies the blob into the spool from the nearest source that has
// it, going on from the next where one breaks off, and verifies it. It
// returns the first source's tier index, -1 for the upstream.
func (f *flight) fetch(req request) (int, error) {
	sp := &spooled{from: noSource}
	defer func() {
		if sp.out != nil {
			sp.out.Close()
		}
	}()
	var err error
	for _, s := range f.c.sources(req) {
		if err = f.readSource(s, sp); err == nil {
			return sp.from, f.check(sp)
		}
		if f.ctx.Err() != nil {
			return sp.from, fmt.Errorf("%w: %w", context.Cause(f.ctx), err)
		}
		if errors.Is(err, errNoRoom) || errors.Is(err, errSpool) {
			return sp.from, err
		}
		if !errors.Is(err, cas.ErrNotFound) && s.tier >= 0 {
			f.c.log.Warn("blob source failed; the next goes on from where it stopped", "source", s.name, "digest", f.key.d, "at", f.written, "err", err)
		}
	}
	return sp.from, err
}

// readSource reads from s into the spool, from where the spool ends, until
// the blob's end or s fails; s fails when it sends nothing for the idle
// deadline.
func (f *flight) readSource(s source, sp *spooled) error {
	ctx, kick, stop := watchdog(f.ctx, f.c.idle)
	defer stop()
	rc, size, err := s.open(ctx, f.written)
	if err != nil {
		return stalled(ctx, err)
	}
	defer rc.Close()
	if err := f.announce(s, size, sp); err != nil {
		return err
	}
	bp := spoolBufs.Get().(*[]byte)
	defer spoolBufs.Put(bp)
	for {
		n, rerr := rc.Read(*bp)
		if n > 0 {
			kick()
			if err := f.append(s, (*bp)[:n], sp); err != nil {
				return err
			}
		}
		switch {
		case rerr == io.EOF && f.written < size:
			return fmt.Errorf("%s ended at byte %d of %d: %w", s.name, f.written, size, io.ErrUnexpectedEOF)
		case rerr == io.EOF:
			return nil
		case rerr != nil:
			return stalled(ctx, fmt.Errorf("read %s from %s: %w", f.key.d, s.name, rerr))
		}
	}
}

var spoolBufs = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// announce takes in the size a source announced. The first sets it: the
// spool's share of the disk budget is reserved, the file made, and the
// readers learn the size; a later source must agree with it.
func (f *flight) announce(s source, size int64, sp *spooled) error {
	if size < 0 {
		return fmt.Errorf("%s: no size for %s", s.name, f.key.d)
	}
	if sp.out != nil {
		if size != f.size {
			return fmt.Errorf("%w: %s says %d bytes, the first source %d", cas.ErrDigestMismatch, s.name, size, f.size)
		}
		return nil
	}
	if err := f.reserve(size); err != nil {
		return err
	}
	out, err := os.OpenFile(f.path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("%w %s: %w", errSpool, f.key.d, err)
	}
	sp.out, sp.v = out, cas.NewVerifier(f.key.d, size)
	f.change(func() { f.size = size })
	return nil
}

// reserve sets the spool's size aside in the disk tier's budget.
func (f *flight) reserve(size int64) error {
	c := f.c
	if c.budget == nil {
		return nil
	}
	release, err := c.budget.Reserve(size)
	if err != nil {
		return fmt.Errorf("%w (%d bytes): %w", errNoRoom, size, err)
	}
	f.mu.Lock()
	f.release, f.reserved = release, size
	f.mu.Unlock()
	c.m.spoolBytes.Add(float64(size))
	return nil
}

// append writes p, read from s, to the spool.
func (f *flight) append(s source, p []byte, sp *spooled) error {
	n := int64(len(p))
	if f.written+n > f.size {
		return fmt.Errorf("%w: %s sent more than the %d bytes announced", cas.ErrDigestMismatch, s.name, f.size)
	}
	if _, err := sp.out.Write(p); err != nil {
		return fmt.Errorf("%w %s: %w", errSpool, f.key.d, err)
	}
	sp.v.Write(p)
	sp.gaveFrom(s)
	f.change(func() { f.written += n })
	f.c.m.bytesServed.WithLabelValues(s.name).Add(float64(n))
	return nil
}

// check verifies the whole spool. A tier that alone gave corrupt content
// loses its copy; upstream lies are counted.
func (f *flight) check(sp *spooled) error {
	c := f.c
	err := sp.v.Check()
	if err == nil {
		return nil
	}
	switch {
	case len(sp.gave) == 1 && sp.gave[0] >= 0:
		c.corrupt(c.o.Tiers[sp.gave[0]], f.key.d, err)
	default:
		c.m.digestFailures.WithLabelValues("upstream").Inc()
	}
	return fmt.Errorf("from %v: %w", sp.gave, err)
}

// watchdog returns a context that ends, with errStalled as its cause, when
// kick has not been called for idle; stop ends it for good.
func watchdog(parent context.Context, idle time.Duration) (ctx context.Context, kick, stop func()) {
	ctx, cancel := context.WithCancelCause(parent)
	t := time.AfterFunc(idle, func() { cancel(fmt.Errorf("%w for %v", errStalled, idle)) })
	return ctx, func() { t.Reset(idle) }, func() { t.Stop(); cancel(nil) }
}

// stalled names a stall as such: a source cut off by the watchdog reports
// only a cancelled context.
func stalled(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); errors.Is(cause, errStalled) {
		return fmt.Errorf("%w: %w", cause, err)
	}
	return err
}

// kickReader kicks a watchdog at every byte read.
type kickReader struct {
	r    io.Reader
	kick func()
}

func (k kickReader) Read(p []byte) (int, error) {
	n, err := k.r.Read(p)
	if n > 0 {
		k.kick()
	}
	return n, err
}

// serve streams the flight's blob (or the asked range) to one client as
// the spool grows, holding back the last bytes until the digest checks out.
func (f *flight) serve(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	size, err := f.announced(ctx)
	if err != nil || size < 0 {
		return err
	}
	start, end, partial, err := parseRange(r.Header.Get("Range"), size)
	if err != nil {
		return err
	}
	setBlobHeaders(w.Header(), f.key.d, start, end, size, partial)
	in, err := os.Open(f.path)
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	defer in.Close()
	lw := &lazyStatus{w: w, status: statusOf(partial)}
	pos := start
	for pos < end {
		f.mu.Lock()
		written, done, verified, ferr, ch := f.written, f.done, f.verified, f.err, f.notify
		f.mu.Unlock()
		if done && ferr != nil {
			if !lw.wrote {
				clearBlobHeaders(w.Header())
				return ferr // nothing went out: a proper error
			}
			abort(w) // never a complete wrong body
		}
		limit := min(written, end)
		if !verified {
			limit = min(limit, size-holdBack)
		}
		if pos >= limit {
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return nil
			}
		}
		if _, err := in.Seek(pos, io.SeekStart); err != nil {
			abort(w)
		}
		n, err := lw.ReadFrom(&io.LimitedReader{R: in, N: limit - pos})
		pos += n
		if err != nil {
			return nil // the client went away
		}
		if n == 0 {
			abort(w) // the spool holds less than it said: never a short 200
		}
	}
	if !lw.wrote { // an empty range or blob
		w.WriteHeader(lw.status)
	}
	return nil
}

// announced waits for the source to announce the size; -1 and no error
// when the client left first.
func (f *flight) announced(ctx context.Context) (int64, error) {
	for {
		f.mu.Lock()
		n, done, ferr, ch := f.size, f.done, f.err, f.notify
		f.mu.Unlock()
		if n >= 0 {
			return n, nil
		}
		if done {
			return -1, ferr
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return -1, nil
		}
	}
}
