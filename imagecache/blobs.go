package imagecache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/berthhq/berth/internal/clip"

	"github.com/berthhq/berth/imagecache/cas"
)

// holdBack is how many final bytes of a response wait for the digest check:
// a client never gets the whole of a blob that turns out corrupt.
const holdBack = 64 << 10

func (c *Cache) serveBlob(w http.ResponseWriter, r *http.Request, req request) error {
	d := req.Digest
	// The nearest tier serves straight from its store; anything else goes
	// through a flight, which looks in the lower tiers and then upstream.
	if len(c.o.Tiers) > 0 {
		t := c.o.Tiers[0]
		size, err := t.Stat(r.Context(), d)
		if err == nil {
			ok, err := c.serveFromTier(w, r, t, d, size)
			if ok || err != nil {
				return err
			}
			// The blob was corrupt and is gone from the tier: fetch it again.
		} else {
			c.m.misses.WithLabelValues(t.Name()).Inc()
			if !errors.Is(err, cas.ErrNotFound) {
				c.log.Warn("tier unavailable; skipping it", "tier", t.Name(), "err", err)
			}
		}
	}
	f, err := c.join(req)
	if err != nil {
		return err
	}
	defer f.release()
	return f.serve(w, r)
}

// serveFromTier streams a blob from a tier that holds it, checking its
// digest as it goes. It reports false, having written nothing, when the
// blob is corrupt in a way found before any byte went out.
func (c *Cache) serveFromTier(w http.ResponseWriter, r *http.Request, t cas.Tier, d cas.Digest, size int64) (bool, error) {
	start, end, partial, err := parseRange(r.Header.Get("Range"), size)
	if err != nil {
		return true, err
	}
	h := w.Header()
	setBlobHeaders(h, d, start, end, size, partial)
	if r.Method == http.MethodHead {
		writeStatus(w, partial)
		return true, nil
	}
	rc, n, err := t.Open(r.Context(), d, start)
	if err != nil {
		clearBlobHeaders(h)
		return false, nil
	}
	defer rc.Close()
	if n != size-start {
		c.corrupt(t, d, fmt.Errorf("size %d from offset %d, want %d", n, start, size-start))
		clearBlobHeaders(h)
		return false, nil
	}
	c.m.hits.WithLabelValues(t.Name()).Inc()
	if tf, ok := rc.(trustedFile); ok {
		if f := tf.TrustedFile(); f != nil {
			return true, c.sendTrusted(w, t, f, statusOf(partial), end-start)
		}
	}
	lw := &lazyStatus{w: w, status: statusOf(partial)}
	if partial {
		// A part cannot be checked against the digest; Verify finds rot.
		m, err := io.CopyN(lw, rc, end-start)
		c.m.bytesServed.WithLabelValues(t.Name()).Add(float64(m))
		if err != nil {
			panic(http.ErrAbortHandler)
		}
		return true, nil
	}
	v := cas.NewVerifier(d, size)
	hb := &holdBackWriter{w: lw}
	m, err := io.Copy(io.MultiWriter(hb, v), rc)
	c.m.bytesServed.WithLabelValues(t.Name()).Add(float64(m))
	if err == nil {
		err = v.Check()
		if err != nil {
			c.corrupt(t, d, err)
		}
	}
	if err != nil {
		if !lw.wrote {
			// Nothing went out: fetch it again from below instead.
			clearBlobHeaders(h)
			return false, nil
		}
		// Most of the body is out: break the connection so the client
		// sees a short body, never a complete wrong one.
		abort(w)
	}
	if err := hb.flush(); err != nil {
		return true, nil // the client went away
	}
	if mv, ok := t.(verifiedMarker); ok {
		_ = mv.MarkVerified(d) // hashed whole just now: no need next time
	}
	if !lw.wrote { // an empty blob
		w.WriteHeader(lw.status)
	}
	return true, nil
}

// abort breaks off a response whose status is written: what was written is
// flushed first, so the client sees a 200 with a short body rather than a
// connection closed without an answer.
func abort(w http.ResponseWriter) {
	_ = http.NewResponseController(w).Flush()
	panic(http.ErrAbortHandler)
}

// trustedFile is a tier reader that can hand over its file when the file is
// unchanged since its content was last verified (the disk tier).
type trustedFile interface {
	TrustedFile() *os.File
}

// adopter is a tier that can take a verified file as a blob without
// copying it (the disk tier, by hard link).
type adopter interface {
	Adopt(ctx context.Context, d cas.Digest, size int64, path string) error
}

// verifiedMarker is a tier that remembers a blob was just verified whole.
type verifiedMarker interface {
	MarkVerified(d cas.Digest) error
}

// sendTrusted serves n bytes of a verified, unchanged file as they are,
// letting the kernel copy them to the socket (sendfile): hashing every hit
// again would cost more than the copy. Rot that leaves a file's size and
// times alone is found by `cache verify`.
func (c *Cache) sendTrusted(w http.ResponseWriter, t cas.Tier, f *os.File, status int, n int64) error {
	w.WriteHeader(status)
	src := &io.LimitedReader{R: f, N: n}
	var m int64
	if rf, ok := w.(io.ReaderFrom); ok {
		m, _ = rf.ReadFrom(src)
	} else {
		m, _ = io.Copy(w, src)
	}
	c.m.bytesServed.WithLabelValues(t.Name()).Add(float64(m))
	if m != n {
		abort(w) // the client went away, or the file shrank under us
	}
	return nil
}

// clearBlobHeaders takes back headers set for a blob that will not be sent.
func clearBlobHeaders(h http.Header) {
	for _, k := range []string{"Docker-Content-Digest", "Accept-Ranges", "Etag", "Content-Range", "Content-Length"} {
		h.Del(k)
	}
}

// corrupt removes a blob whose content does not match its digest.
func (c *Cache) corrupt(t cas.Tier, d cas.Digest, err error) {
	c.m.digestFailures.WithLabelValues(t.Name()).Inc()
	c.log.Error("blob in tier is corrupt; removed, it will be fetched again", "tier", t.Name(), "digest", d, "err", err)
	if derr := t.Delete(context.Background(), d); derr != nil {
		c.log.Error("remove corrupt blob", "tier", t.Name(), "digest", d, "err", derr)
	}
}

func setBlobHeaders(h http.Header, d cas.Digest, start, end, size int64, partial bool) {
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Docker-Content-Digest", string(d))
	h.Set("Accept-Ranges", "bytes")
	h.Set("Etag", `"`+string(d)+`"`)
	h.Set("Content-Length", strconv.FormatInt(end-start, 10))
	if partial {
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, end-1, size))
	}
}

func writeStatus(w http.ResponseWriter, partial bool) {
	if partial {
		w.WriteHeader(http.StatusPartialContent)
	} else {
		w.WriteHeader(http.StatusOK)
	}
}

// parseRange reads a single "bytes=a-b", "bytes=a-" or "bytes=-n" range.
// It returns the half-open [start, end) and whether a range applies. As RFC
// 9110 allows, a header it does not understand (another unit, several
// ranges, garbage) is ignored and the whole blob is served; a range that
// starts at or past the end is refused with 416.
func parseRange(h string, size int64) (start, end int64, partial bool, err error) {
	whole := func() (int64, int64, bool, error) { return 0, size, false, nil }
	spec, ok := strings.CutPrefix(h, "bytes=")
	if h == "" || !ok || strings.Contains(spec, ",") {
		return whole()
	}
	a, b, ok := strings.Cut(strings.TrimSpace(spec), "-")
	if !ok {
		return whole()
	}
	unsatisfiable := &apiError{Status: http.StatusRequestedRangeNotSatisfiable, Code: "SIZE_INVALID",
		Message: fmt.Sprintf("range %q starts past the end of a blob of %d bytes", clip.String(h, 64), size), size: size}
	if a == "" { // the last n bytes
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n < 0 {
			return whole()
		}
		if n == 0 || size == 0 {
			return 0, 0, false, unsatisfiable
		}
		return max(size-n, 0), size, true, nil
	}
	start, err = strconv.ParseInt(a, 10, 64)
	if err != nil || start < 0 {
		return whole()
	}
	if start >= size {
		return 0, 0, false, unsatisfiable
	}
	end = size
	if b != "" {
		last, err := strconv.ParseUint(b, 10, 64)
		switch {
		case err != nil && !errors.Is(err, strconv.ErrRange):
			return whole()
		case err == nil && last < uint64(start):
			return whole()
		case err == nil && last < uint64(size):
			end = int64(last) + 1
		}
	}
	return start, end, true, nil
}

// lazyStatus writes the status line just before the first byte of the
// body, so that a failure found before then can still be answered with a
// proper error instead of a cut-off 200.
type lazyStatus struct {
	w      http.ResponseWriter
	status int
	wrote  bool
}

func (l *lazyStatus) Write(p []byte) (int, error) {
	if !l.wrote {
		l.wrote = true
		l.w.WriteHeader(l.status)
	}
	return l.w.Write(p)
}

// ReadFrom writes the status, then lets the connection copy from r itself:
// from a file, that is sendfile.
func (l *lazyStatus) ReadFrom(r io.Reader) (int64, error) {
	if !l.wrote {
		l.wrote = true
		l.w.WriteHeader(l.status)
	}
	if rf, ok := l.w.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{l.w}, r)
}

func statusOf(partial bool) int {
	if partial {
		return http.StatusPartialContent
	}
	return http.StatusOK
}

// holdBackWriter passes everything on but the last holdBack bytes, which
// flush sends once the caller knows the content is good.
type holdBackWriter struct {
	w   io.Writer
	buf []byte
}

func (h *holdBackWriter) Write(p []byte) (int, error) {
	h.buf = append(h.buf, p...)
	if over := len(h.buf) - holdBack; over > 0 {
		if _, err := h.w.Write(h.buf[:over]); err != nil {
			return 0, err
		}
		h.buf = append(h.buf[:0], h.buf[over:]...)
	}
	return len(p), nil
}

func (h *holdBackWriter) flush() error {
	_, err := h.w.Write(h.buf)
	h.buf = nil
	return err
}

// ---- flights: one fetch from below, any number of readers ----

// flight fetches one blob from the nearest lower tier that has it, or the
// upstream, into a spool file that its readers follow as it grows.
type flight struct {
	c    *Cache
	d    cas.Digest
	path string

	mu       sync.Mutex
	notify   chan struct{} // closed and replaced at every change
	size     int64         // -1 until the source answered
	written  int64
	done     bool
	err      error // set when done and failed
	verified bool
	refs     int // readers and the fetcher; the last one removes the spool
}

// join returns the flight for the request's blob, starting one if none
// runs.
func (c *Cache) join(req request) (*flight, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f, ok := c.flights[req.Digest]; ok {
		f.mu.Lock()
		f.refs++
		f.mu.Unlock()
		c.m.merged.Inc()
		return f, nil
	}
	if c.ctx.Err() != nil {
		return nil, &apiError{Status: http.StatusServiceUnavailable, Code: "UNAVAILABLE", Message: "the cache is shutting down"}
	}
	f := &flight{c: c, d: req.Digest, path: filepath.Join(c.o.SpoolDir, req.Digest.Hex()), notify: make(chan struct{}), size: -1, refs: 2}
	c.flights[req.Digest] = f
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

func (f *flight) release() {
	f.mu.Lock()
	f.refs--
	last := f.refs == 0
	f.mu.Unlock()
	if last {
		os.Remove(f.path)
	}
}

// run fetches the blob, verifies it, commits it to the tiers above its
// source, then leaves the flight table.
func (f *flight) run(req request) {
	c := f.c
	defer f.release()
	defer func() {
		c.mu.Lock()
		delete(c.flights, f.d)
		c.mu.Unlock()
	}()
	from, err := f.fetch(req)
	if err != nil {
		c.log.Error("fetch blob", "digest", f.d, "registry", req.Registry, "repo", req.Repo, "err", err)
		f.change(func() { f.done, f.err = true, err })
		return
	}
	f.change(func() { f.done, f.verified = true, true })
	// Commit above the source, nearest first, so the next request finds
	// the blob on disk as soon as possible.
	top := len(c.o.Tiers)
	if from >= 0 {
		top = from
	}
	for _, t := range c.o.Tiers[:top] {
		if a, ok := t.(adopter); ok {
			// The spool is verified and on the tier's file system: link it.
			if err := a.Adopt(c.ctx, f.d, f.written, f.path); err != nil {
				c.log.Warn("store blob in tier", "tier", t.Name(), "digest", f.d, "err", err)
			}
			continue
		}
		src, err := os.Open(f.path)
		if err != nil {
			c.log.Error("reopen spooled blob", "path", f.path, "err", err)
			return
		}
		err = t.Put(c.ctx, f.d, f.written, src)
		src.Close()
		if err != nil {
			c.log.Warn("store blob in tier", "tier", t.Name(), "digest", f.d, "err", err)
		}
	}
}

// fetch copies the blob into the spool from the nearest tier below the
// first that holds it, else the upstream, verifying it. It returns the
// source's tier index, -1 for the upstream.
func (f *flight) fetch(req request) (int, error) {
	c := f.c
	var (
		rc     io.ReadCloser
		size   int64
		source string
		from   = -1
		err    error
	)
	for i := 1; i < len(c.o.Tiers) && rc == nil; i++ {
		t := c.o.Tiers[i]
		rc, size, err = t.Open(c.ctx, f.d, 0)
		if err != nil {
			rc = nil
			c.m.misses.WithLabelValues(t.Name()).Inc()
			if !errors.Is(err, cas.ErrNotFound) {
				c.log.Warn("tier unavailable; skipping it", "tier", t.Name(), "err", err)
			}
			continue
		}
		from, source = i, t.Name()
		c.m.hits.WithLabelValues(t.Name()).Inc()
	}
	if rc == nil {
		up, err := c.o.Upstream(req.Registry)
		if err != nil {
			return -1, err
		}
		rc, size, err = up.OpenBlob(c.ctx, req.Repo, f.d, 0)
		if err != nil {
			return -1, err
		}
		source = "upstream"
		c.m.upstreamFetches.WithLabelValues(req.Registry).Inc()
	}
	defer rc.Close()
	// The spool exists before readers learn the size and open it.
	out, err := os.OpenFile(f.path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return from, fmt.Errorf("spool %s: %w", f.d, err)
	}
	defer out.Close()
	f.change(func() { f.size = size })
	v := cas.NewVerifier(f.d, size)
	buf := make([]byte, 256<<10)
	for {
		n, rerr := rc.Read(buf)
		if n > 0 {
			if f.written+int64(n) > size {
				return from, fmt.Errorf("%w: %s sent more than the %d bytes it announced", cas.ErrDigestMismatch, source, size)
			}
			if _, err := out.Write(buf[:n]); err != nil {
				return from, fmt.Errorf("spool %s: %w", f.d, err)
			}
			v.Write(buf[:n])
			f.change(func() { f.written += int64(n) })
			c.m.bytesServed.WithLabelValues(source).Add(float64(n))
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return from, fmt.Errorf("read %s from %s: %w", f.d, source, rerr)
		}
	}
	if err := v.Check(); err != nil {
		if from > 0 {
			c.corrupt(c.o.Tiers[from], f.d, err)
		} else {
			c.m.digestFailures.WithLabelValues("upstream").Inc()
		}
		return from, fmt.Errorf("from %s: %w", source, err)
	}
	return from, nil
}

// serve streams the flight's blob (or the asked range) to one client as
// the spool grows, holding back the last bytes until the digest checks out.
func (f *flight) serve(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	// Wait for the source to announce the size.
	var size int64
	for {
		f.mu.Lock()
		n, done, ferr, ch := f.size, f.done, f.err, f.notify
		f.mu.Unlock()
		if n >= 0 {
			size = n
			break
		}
		if done {
			return ferr
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil
		}
	}
	start, end, partial, err := parseRange(r.Header.Get("Range"), size)
	if err != nil {
		return err
	}
	setBlobHeaders(w.Header(), f.d, start, end, size, partial)
	if r.Method == http.MethodHead {
		writeStatus(w, partial)
		return nil
	}
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
