package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/berthhq/berth/internal/clip"

	"github.com/klauspost/compress/gzip"

	"github.com/berthhq/berth/control/auth"
	"github.com/berthhq/berth/control/store"
	"github.com/berthhq/berth/control/wire"
)

// slotWait is how long a report waits for a free slot before it is told
// to come back later (429). A variable so tests need not wait as long.
var slotWait = 2 * time.Second

// postReports is POST /v1/reports: authenticate, check the body's type
// and encoding, read the body within its deadline and the sender's share
// (see limits.go), then, in a slot, decode it within the limits, check
// that the principal may write as the batch's agent and that the agent is
// within its quota, store it, and acknowledge.
func (s *Server) postReports(w http.ResponseWriter, r *http.Request) (err error) {
	read := false
	defer func() {
		// A report refused before its body was read is answered at once
		// and its connection closed: otherwise net/http would read the
		// rest of the body first, which a slow sender may never send.
		if err != nil && !read {
			w.Header().Set("Connection", "close")
		}
	}()
	p, err := s.authenticate(w, r)
	if err != nil {
		return err
	}
	if p.Method != auth.MethodNone && p.Role != store.RoleAgent {
		return apiErrorf(http.StatusForbidden, wire.CodeForbidden, "an %s token cannot write reports; a host needs an agent token (berth-control token issue --agent ID) or its managed identity", p.Role)
	}
	if err := checkContentType(r.Header.Get("Content-Type")); err != nil {
		return err
	}
	gz, err := isGzip(r.Header.Values("Content-Encoding"))
	if err != nil {
		return err
	}
	if r.ContentLength > s.maxBody {
		return apiErrorf(http.StatusRequestEntityTooLarge, wire.CodeTooLarge, "body of %d bytes is over the limit of %d bytes; send fewer records per batch", r.ContentLength, s.maxBody)
	}
	id := identityOf(p)
	if !s.inProgress.enter(id) {
		return tooMany(id, s.inProgress.max)
	}
	defer s.inProgress.leave(id)
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	defer s.releaseBody(body)
	read = true

	release, err := s.acquire(r.Context())
	if err != nil {
		return err
	}
	defer release()
	batch, size, err := s.decode(body, gz)
	if err != nil {
		return err
	}
	if err := s.allowAs(r.Context(), p, batch.Agent, "write reports of"); err != nil {
		return err
	}
	if err := s.chargeQuota(batch, size); err != nil {
		return err
	}
	// Store errors name the agent and the record already; the answer
	// passes them on as they are.
	ack, err := s.st.Ingest(r.Context(), batch, s.now())
	if err != nil {
		return err
	}
	return writeJSON(w, ack)
}

// acquire takes one of the report slots, waiting a little when all are
// busy; past that the agent is told to come back later.
func (s *Server) acquire(ctx context.Context) (release func(), err error) {
	select {
	case s.slots <- struct{}{}:
		return s.releaseSlot, nil
	default:
	}
	t := time.NewTimer(slotWait)
	defer t.Stop()
	select {
	case s.slots <- struct{}{}:
		return s.releaseSlot, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-t.C:
		return nil, &apiError{
			status:     http.StatusTooManyRequests,
			code:       wire.CodeRateLimited,
			msg:        fmt.Sprintf("the endpoint is busy with %d reports; retry after the Retry-After seconds", cap(s.slots)),
			retryAfter: jitter(1, 10),
		}
	}
}

func (s *Server) releaseSlot() { <-s.slots }

// checkContentType accepts application/json, with parameters.
func checkContentType(ct string) error {
	if ct == "application/json" {
		return nil
	}
	if ct == "" {
		return apiErrorf(http.StatusUnsupportedMediaType, wire.CodeUnsupported, "no Content-Type; send application/json")
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		return apiErrorf(http.StatusUnsupportedMediaType, wire.CodeUnsupported, "Content-Type %q is not supported; send application/json", clip.String(ct, quoteLen))
	}
	return nil
}

// isGzip reads Content-Encoding: gzip, or identity (or none). Anything
// else, stacked encodings included, is a 415.
func isGzip(values []string) (bool, error) {
	switch len(values) {
	case 0:
		return false, nil
	case 1:
		switch strings.ToLower(strings.TrimSpace(values[0])) {
		case "", "identity":
			return false, nil
		case "gzip", "x-gzip":
			return true, nil
		}
	}
	return false, apiErrorf(http.StatusUnsupportedMediaType, wire.CodeUnsupported, "Content-Encoding %q is not supported; send gzip or identity", clip.String(strings.Join(values, ", "), quoteLen))
}

// gzipReaders are reused: a gzip.Reader holds ~40 KiB of window and
// tables, too much to allocate per report.
var gzipReaders sync.Pool

// decode reads one batch from the body and returns it with the size of
// its JSON. Gzipped, it is bounded to maxBody bytes decompressed too, so
// that a small gzip bomb cannot make the server hold or parse more.
func (s *Server) decode(body *body, gz bool) (wire.Batch, int64, error) {
	body.rd.Reset(body.buf)
	if !gz {
		b, err := wire.DecodeBatch(&body.rd, s.maxBody)
		return b, int64(len(body.buf)), err
	}
	zr, _ := gzipReaders.Get().(*gzip.Reader)
	if zr == nil {
		zr = new(gzip.Reader)
	}
	defer gzipReaders.Put(zr)
	if err := zr.Reset(&body.rd); err != nil {
		return wire.Batch{}, 0, apiErrorf(http.StatusBadRequest, wire.CodeBadRequest, "Content-Encoding is gzip but the body is not gzip: %v", err)
	}
	gr := gzipErrReader{r: zr}
	b, err := wire.DecodeBatch(&gr, s.maxBody)
	if err != nil {
		switch {
		case gr.err != nil:
			return wire.Batch{}, 0, apiErrorf(http.StatusBadRequest, wire.CodeBadRequest, "the gzip body is corrupt: %v", gr.err)
		case errors.Is(err, wire.ErrTooLarge):
			return wire.Batch{}, 0, apiErrorf(http.StatusRequestEntityTooLarge, wire.CodeTooLarge, "the gzip body decompresses to more than %d bytes, the limit; send fewer records per batch", s.maxBody)
		}
		return wire.Batch{}, 0, err
	}
	return b, gr.n, nil
}

// gzipErrReader counts what it decompressed and remembers a
// decompression error, which the JSON decoder would otherwise report as a
// JSON problem.
type gzipErrReader struct {
	r   io.Reader
	n   int64
	err error
}

func (g *gzipErrReader) Read(p []byte) (int, error) {
	n, err := g.r.Read(p)
	g.n += int64(n)
	if err != nil && err != io.EOF && g.err == nil {
		g.err = err
	}
	return n, err
}

// authenticate checks the bearer token and tells the access log who sent
// the request. A failure of the authenticator itself (the tenant's keys
// cannot be fetched, the store is down) is a 503, not a 401: the token may
// well be good.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (auth.Principal, error) {
	p, err := s.auth.Authenticate(r.Context(), r.Header.Get("Authorization"))
	if err != nil {
		if !errors.Is(err, auth.ErrUnavailable) && (errors.Is(err, auth.ErrUnauthenticated) || r.Context().Err() != nil) {
			return auth.Principal{}, err
		}
		s.log.Warn("cannot check a token", "request", requestID(w), "err", err)
		return auth.Principal{}, &apiError{status: http.StatusServiceUnavailable, code: wire.CodeUnavailable, msg: "cannot check the token now; try again later", retryAfter: jitter(5, 30)}
	}
	setWho(w, p)
	return p, nil
}

// allowAs checks that p may act as agent (what says how, for the 403:
// "write reports of", "read the desired state of"): an issued agent token
// names its agent; an Entra identity is bound to the first agent id it
// acts as (and that id to it), once, in the store.
func (s *Server) allowAs(ctx context.Context, p auth.Principal, agent, what string) error {
	switch {
	case p.Method == auth.MethodNone:
		return nil
	case p.Agent != "":
		if p.Agent != agent {
			return apiErrorf(http.StatusForbidden, wire.CodeForbidden, "token for host %s cannot %s host %s", p.Agent, what, agent)
		}
		return nil
	}
	return s.allowEntra(ctx, p, agent, what)
}
