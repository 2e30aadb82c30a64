package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/berthhq/berth/imagecache/cas"
)

// HeadBlob returns a blob's size.
func (c *Client) HeadBlob(ctx context.Context, repo string, d cas.Digest) (int64, error) {
	name, err := c.repoName(repo)
	if err != nil {
		return 0, err
	}
	if _, err := cas.ParseDigest(string(d)); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	what := fmt.Sprintf("blob %s/%s@%s", c.registry, name, d)
	resp, err := c.do(ctx, request{method: http.MethodHead, path: "/v2/" + name + "/blobs/" + string(d), scope: pullScope(name), blob: true})
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	drain(resp)
	if announced, ok := announcedDigest(resp.Header); ok && announced != d {
		return 0, fmt.Errorf("%s: %w: the registry announced %s", what, cas.ErrDigestMismatch, announced)
	}
	if resp.ContentLength < 0 {
		return 0, fmt.Errorf("%w: %s: no Content-Length", ErrUpstreamUnavailable, what)
	}
	return resp.ContentLength, nil
}

// OpenBlob opens blob d of repo from offset. It returns a reader of the
// size−offset bytes from offset to the end, and the blob's whole size.
//
// The reader follows the registry's redirect to its storage (without
// credentials when that is another host). When the body breaks before its
// end, the reader reopens it with Range from where it broke (a bounded
// number of times in a row without progress, with a growing pause) and
// carries on; it never ends early without an error: io.EOF comes only
// after exactly size−offset bytes. The content is not hashed here: whoever
// stores it checks it against d with a cas.Verifier.
func (c *Client) OpenBlob(ctx context.Context, repo string, d cas.Digest, offset int64) (io.ReadCloser, int64, error) {
	name, err := c.repoName(repo)
	if err != nil {
		return nil, 0, err
	}
	if _, err := cas.ParseDigest(string(d)); err != nil {
		return nil, 0, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if offset < 0 {
		return nil, 0, fmt.Errorf("%w: negative offset %d", ErrInvalid, offset)
	}
	body, size, err := c.getBlob(ctx, name, d, offset)
	if err != nil {
		return nil, 0, err
	}
	return &blobReader{c: c, ctx: ctx, name: name, d: d, size: size, pos: offset, body: body}, size, nil
}

// getBlob sends one GET for the blob from offset and returns the body,
// positioned at offset, and the blob's whole size.
func (c *Client) getBlob(ctx context.Context, name string, d cas.Digest, offset int64) (io.ReadCloser, int64, error) {
	what := fmt.Sprintf("blob %s/%s@%s", c.registry, name, d)
	h := http.Header{}
	if offset > 0 {
		h.Set("Range", "bytes="+strconv.FormatInt(offset, 10)+"-")
	}
	resp, err := c.do(ctx, request{method: http.MethodGet, path: "/v2/" + name + "/blobs/" + string(d), header: h, scope: pullScope(name), blob: true})
	if err != nil {
		var re *RegistryError
		if offset > 0 && errors.As(err, &re) && re.Status == http.StatusRequestedRangeNotSatisfiable {
			// Nothing from offset: fine if offset is the end.
			size, herr := c.HeadBlob(ctx, name, d)
			if herr == nil && size == offset {
				return http.NoBody, size, nil
			}
			return nil, 0, fmt.Errorf("%w: %s: offset %d is beyond the blob", ErrInvalid, what, offset)
		}
		return nil, 0, fmt.Errorf("%s: %w", what, err)
	}
	if announced, ok := announcedDigest(resp.Header); ok && announced != d {
		resp.Body.Close()
		return nil, 0, fmt.Errorf("%s: %w: the registry announced %s", what, cas.ErrDigestMismatch, announced)
	}
	switch resp.StatusCode {
	case http.StatusPartialContent:
		start, end, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || start != offset || total < 0 || end >= total ||
			(resp.ContentLength >= 0 && resp.ContentLength != end-start+1) {
			resp.Body.Close()
			return nil, 0, fmt.Errorf("%w: %s: Content-Range %q does not answer bytes=%d-", ErrUpstreamUnavailable,
				what, cleanText(resp.Header.Get("Content-Range"), 80), offset)
		}
		// A range that stops short of the end is fine: the reader asks
		// for the rest when it gets there.
		return resp.Body, total, nil
	case http.StatusOK:
		size := resp.ContentLength
		if size < 0 {
			hs, err := c.HeadBlob(ctx, name, d)
			if err != nil {
				resp.Body.Close()
				return nil, 0, fmt.Errorf("%w: %s: no Content-Length, and HEAD: %w", ErrUpstreamUnavailable, what, err)
			}
			size = hs
		}
		if offset > size {
			resp.Body.Close()
			return nil, 0, fmt.Errorf("%w: %s: offset %d is beyond the blob's %d bytes", ErrInvalid, what, offset, size)
		}
		if offset > 0 {
			// The registry ignored Range: skip to offset.
			if _, err := io.CopyN(io.Discard, resp.Body, offset); err != nil {
				resp.Body.Close()
				return nil, 0, transportError(ctx, "skip to offset of "+what, err)
			}
		}
		return resp.Body, size, nil
	default:
		resp.Body.Close()
		return nil, 0, fmt.Errorf("%w: %s: unexpected status %d", ErrUpstreamUnavailable, what, resp.StatusCode)
	}
}

// parseContentRange reads "bytes START-END/TOTAL" (TOTAL may be "*", given
// as -1).
func parseContentRange(s string) (start, end, total int64, ok bool) {
	rest, found := strings.CutPrefix(strings.TrimSpace(s), "bytes ")
	if !found {
		return 0, 0, 0, false
	}
	rng, tot, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, 0, false
	}
	a, b, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, 0, false
	}
	var err error
	if start, err = strconv.ParseInt(a, 10, 64); err != nil || start < 0 {
		return 0, 0, 0, false
	}
	if end, err = strconv.ParseInt(b, 10, 64); err != nil || end < start {
		return 0, 0, 0, false
	}
	if tot == "*" {
		return start, end, -1, true
	}
	if total, err = strconv.ParseInt(tot, 10, 64); err != nil || total <= end {
		return 0, 0, 0, false
	}
	return start, end, total, true
}

// blobReader reads a blob body and reopens it with Range when it breaks.
type blobReader struct {
	c    *Client
	ctx  context.Context
	name string
	d    cas.Digest
	size int64
	pos  int64
	body io.ReadCloser // nil: to be reopened

	fails   int   // reopenings in a row without a byte of progress
	lastErr error // why the body last broke
	err     error // sticky failure
	closed  bool
}

// maxWait caps the pause between reopenings.
const maxWait = 10 * time.Second

// Read implements io.Reader.
func (r *blobReader) Read(p []byte) (int, error) {
	if r.closed {
		return 0, errors.New("read of a closed upstream blob")
	}
	if r.err != nil {
		return 0, r.err
	}
	if r.pos >= r.size {
		return 0, io.EOF
	}
	if rest := r.size - r.pos; int64(len(p)) > rest {
		p = p[:rest]
	}
	if len(p) == 0 {
		return 0, nil
	}
	empty := 0 // reads that gave nothing and no error
	for {
		if r.body == nil {
			if err := r.reopen(); err != nil {
				r.err = err
				return 0, err
			}
		}
		n, err := r.body.Read(p)
		r.pos += int64(n)
		if n > 0 {
			r.fails = 0
		}
		if err == nil || (err == io.EOF && r.pos == r.size) {
			switch {
			case n > 0:
				return n, nil
			case err == io.EOF:
				return 0, io.EOF
			}
			if empty++; empty < 100 {
				continue
			}
			err = io.ErrNoProgress
		}
		// The body ended early or broke.
		r.body.Close()
		r.body = nil
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		r.lastErr = err
		if r.ctx.Err() != nil {
			r.err = r.ctx.Err()
			if n > 0 {
				return n, nil
			}
			return 0, r.err
		}
		r.c.log.Warn("upstream blob body broke: resuming", "blob", r.d, "at", r.pos, "size", r.size, "err", err)
		if n > 0 {
			return n, nil
		}
	}
}

// reopen asks again from r.pos, pausing first and giving up after
// maxResumes reopenings in a row that did not get a byte further.
func (r *blobReader) reopen() error {
	for {
		if r.fails >= r.c.maxResumes {
			return fmt.Errorf("%w: blob %s/%s@%s broke at byte %d of %d, %d times in a row: %w",
				ErrUpstreamUnavailable, r.c.registry, r.name, r.d, r.pos, r.size, r.fails, r.lastErr)
		}
		wait := min(r.c.resumeWait<<r.fails, maxWait)
		r.fails++
		t := time.NewTimer(wait)
		select {
		case <-r.ctx.Done():
			t.Stop()
			return r.ctx.Err()
		case <-t.C:
		}
		body, size, err := r.c.getBlob(r.ctx, r.name, r.d, r.pos)
		if err != nil {
			if r.ctx.Err() != nil {
				return r.ctx.Err()
			}
			if errors.Is(err, ErrUpstreamUnavailable) {
				r.lastErr = err
				continue
			}
			return err
		}
		if size != r.size {
			body.Close()
			return fmt.Errorf("blob %s/%s@%s: %w: it was %d bytes, on resuming %d", r.c.registry, r.name, r.d, cas.ErrDigestMismatch, r.size, size)
		}
		r.body = body
		return nil
	}
}

// Close implements io.Closer.
func (r *blobReader) Close() error {
	r.closed = true
	if r.body != nil {
		err := r.body.Close()
		r.body = nil
		return err
	}
	return nil
}
