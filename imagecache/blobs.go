package imagecache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"

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
				// Per request: the tier's going down and coming back are
				// logged once each by the tier and by the agent's health.
				c.log.Debug("tier unavailable; skipping it", "tier", t.Name(), "err", err)
			}
		}
	}
	if r.Method == http.MethodHead {
		return c.headBlob(w, r, req)
	}
	f, err := c.join(req, false)
	if err != nil {
		return err
	}
	err = f.serve(w, r)
	f.leave()
	if errors.Is(err, errNoRoom) {
		return c.serveDirect(w, r, req)
	}
	return err
}

// headBlob answers a HEAD of a blob the nearest tier does not hold with
// its size, from a flight under way, a lower tier, or the upstream's own
// HEAD: a HEAD never starts a download.
func (c *Cache) headBlob(w http.ResponseWriter, r *http.Request, req request) error {
	size, err := c.sizeBelow(r.Context(), req)
	if err != nil {
		return err
	}
	start, end, partial, err := parseRange(r.Header.Get("Range"), size)
	if err != nil {
		return err
	}
	setBlobHeaders(w.Header(), req.Digest, start, end, size, partial)
	writeStatus(w, partial)
	return nil
}

// sizeBelow finds the size of a blob the nearest tier does not hold.
func (c *Cache) sizeBelow(ctx context.Context, req request) (int64, error) {
	c.mu.Lock()
	f := c.flights[flightKey{req.Registry, req.Digest}]
	c.mu.Unlock()
	if f != nil {
		f.mu.Lock()
		size := f.size
		f.mu.Unlock()
		if size >= 0 {
			return size, nil
		}
	}
	for _, t := range c.o.Tiers[min(1, len(c.o.Tiers)):] {
		if size, err := t.Stat(ctx, req.Digest); err == nil {
			return size, nil
		}
	}
	up, err := c.o.Upstream(req.Registry)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.idle)
	defer cancel()
	return up.HeadBlob(ctx, req.Repo, req.Digest)
}

// serveDirect streams a blob from below to one client without spooling
// it: the blob does not fit in cache.local.maxSize beside what is cached
// and in flight, so it is passed on and not kept. The digest is checked on
// the way and the last bytes held back until it checks out, as always.
func (c *Cache) serveDirect(w http.ResponseWriter, r *http.Request, req request) error {
	c.m.unspooled.Inc()
	ctx, kick, stop := watchdog(r.Context(), c.idle)
	defer stop()
	src, rc, size, err := c.openBelow(ctx, req, 0)
	if err != nil {
		return stalled(ctx, err)
	}
	start, end, partial, err := parseRange(r.Header.Get("Range"), size)
	if err == nil && start > 0 {
		rc.Close()
		rc, _, err = src.open(ctx, start)
	}
	if err != nil {
		if rc != nil {
			rc.Close()
		}
		return stalled(ctx, err)
	}
	defer rc.Close()
	setBlobHeaders(w.Header(), req.Digest, start, end, size, partial)
	lw := &lazyStatus{w: w, status: statusOf(partial)}
	in := kickReader{r: rc, kick: kick}
	var n int64
	var bad error
	if partial {
		// A part cannot be checked against the digest, as from a tier.
		n, err = io.CopyN(lw, in, end-start)
	} else {
		n, bad, err = sendVerified(lw, in, req.Digest, size)
	}
	c.m.bytesServed.WithLabelValues(src.name).Add(float64(n))
	if bad != nil && src.tier < 0 {
		c.m.digestFailures.WithLabelValues("upstream").Inc()
	}
	if bad == nil && err == nil {
		if !lw.wrote {
			w.WriteHeader(lw.status)
		}
		return nil
	}
	if lw.wrote {
		abort(w) // never a complete wrong body, never a short 200
	}
	clearBlobHeaders(w.Header())
	return stalled(ctx, errors.Join(bad, err))
}

// openBelow opens req's blob at offset from the nearest source that has
// it.
func (c *Cache) openBelow(ctx context.Context, req request, offset int64) (source, io.ReadCloser, int64, error) {
	var err error
	for _, s := range c.sources(req) {
		rc, size, oerr := s.open(ctx, offset)
		if oerr == nil {
			return s, rc, size, nil
		}
		err = oerr
	}
	return source{}, nil, 0, err
}

// Warm fetches a blob into the tiers with nobody waiting to read it (a
// prewarm): its flight is not cancelled for want of readers. It returns
// once the nearest tier holds the blob or the fetch failed; if ctx ends
// first the fetch goes on. registry and repo are named as images name
// them (docker.io, library/busybox).
func (c *Cache) Warm(ctx context.Context, registry, repo string, d cas.Digest) error {
	req, err := parseRequest(repo+"/blobs/"+string(d), url.Values{"ns": {registry}})
	if err != nil {
		return fmt.Errorf("warm %s/%s@%s: %w", clip.String(registry, 64), clip.String(repo, 64), d, err)
	}
	if !c.allowed(req.Registry) {
		return fmt.Errorf("warm %s: %w", req.Registry, errNotAllowed(req.Registry))
	}
	if len(c.o.Tiers) > 0 {
		if _, err := c.o.Tiers[0].Stat(ctx, d); err == nil {
			return nil
		}
	}
	f, err := c.join(req, true)
	if err != nil {
		return err
	}
	if err := f.wait(ctx); err != nil {
		return fmt.Errorf("warm %s/%s@%s: %w", req.Registry, req.Repo, d, err)
	}
	return nil
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
	m, bad, err := sendVerified(lw, rc, d, size)
	c.m.bytesServed.WithLabelValues(t.Name()).Add(float64(m))
	if bad != nil {
		c.corrupt(t, d, bad)
	}
	switch {
	case (bad != nil || err != nil) && !lw.wrote:
		// Nothing went out: fetch it again from below instead.
		clearBlobHeaders(h)
		return false, nil
	case bad != nil || err != nil:
		// Most of the body is out: break the connection so the client
		// sees a short body, never a complete wrong one (or the client
		// went away).
		abort(w)
	}
	if mv, ok := t.(verifiedMarker); ok {
		_ = mv.MarkVerified(d) // hashed whole just now: no need next time
	}
	if !lw.wrote { // an empty blob
		w.WriteHeader(lw.status)
	}
	return true, nil
}

// sendVerified copies rc, which must be size bytes hashing to d, to the
// client through lw, holding the last holdBack bytes until the digest
// checks out. It returns the bytes read, the digest's verdict, and a
// failure to read or write.
func sendVerified(lw *lazyStatus, rc io.Reader, d cas.Digest, size int64) (n int64, bad, err error) {
	v := cas.NewVerifier(d, size)
	hb := &holdBackWriter{w: lw}
	n, err = io.Copy(io.MultiWriter(hb, v), rc)
	if err != nil {
		return n, nil, err
	}
	if bad = v.Check(); bad != nil {
		return n, bad, nil
	}
	return n, nil, hb.flush()
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
