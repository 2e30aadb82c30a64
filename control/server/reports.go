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
// and encoding, decode it within the limits, check that the principal may
// write as the batch's agent, store it, and acknowledge.
func (s *Server) postReports(w http.ResponseWriter, r *http.Request) error {
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
	release, err := s.acquire(r.Context())
	if err != nil {
		return err
	}
	defer release()

	batch, err := s.decode(r.Body, gz)
	if err != nil {
		return err
	}
	if err := s.allowWrite(r.Context(), p, batch.Agent); err != nil {
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

// decode reads one batch from body, which is at most maxBody bytes on the
// wire and, gzipped, at most maxBody bytes decompressed too, so that a
// small gzip bomb cannot make the server hold or parse more than that.
func (s *Server) decode(body io.Reader, gz bool) (wire.Batch, error) {
	lb := limitedBody{r: body, n: s.maxBody}
	if !gz {
		b, err := wire.DecodeBatch(&lb, s.maxBody)
		if err != nil {
			return wire.Batch{}, lb.explain(err, s.maxBody)
		}
		return b, nil
	}
	zr, _ := gzipReaders.Get().(*gzip.Reader)
	if zr == nil {
		zr = new(gzip.Reader)
	}
	defer gzipReaders.Put(zr)
	if err := zr.Reset(&lb); err != nil {
		if lb.err != nil || lb.over {
			return wire.Batch{}, lb.explain(err, s.maxBody)
		}
		return wire.Batch{}, apiErrorf(http.StatusBadRequest, wire.CodeBadRequest, "Content-Encoding is gzip but the body is not gzip: %v", err)
	}
	gr := gzipErrReader{r: zr}
	b, err := wire.DecodeBatch(&gr, s.maxBody)
	if err != nil {
		switch {
		case lb.over || lb.err != nil:
			return wire.Batch{}, lb.explain(err, s.maxBody)
		case gr.err != nil:
			return wire.Batch{}, apiErrorf(http.StatusBadRequest, wire.CodeBadRequest, "the gzip body is corrupt: %v", gr.err)
		case errors.Is(err, wire.ErrTooLarge):
			return wire.Batch{}, apiErrorf(http.StatusRequestEntityTooLarge, wire.CodeTooLarge, "the gzip body decompresses to more than %d bytes, the limit; send fewer records per batch", s.maxBody)
		}
		return wire.Batch{}, err
	}
	return b, nil
}

// limitedBody reads at most n bytes of the body and remembers why it
// stopped, so that the answer can say "too large" or "the connection
// failed" rather than the JSON decoder's view of a short read.
type limitedBody struct {
	r    io.Reader
	n    int64
	over bool
	err  error
}

func (l *limitedBody) Read(p []byte) (int, error) {
	if l.over {
		return 0, errBodyTooLarge
	}
	if l.err != nil {
		return 0, l.err
	}
	if int64(len(p)) > l.n+1 {
		p = p[:l.n+1]
	}
	n, err := l.r.Read(p)
	if int64(n) > l.n {
		l.over = true
		return int(l.n), errBodyTooLarge
	}
	l.n -= int64(n)
	if err != nil && err != io.EOF {
		l.err = err
	}
	return n, err
}

var errBodyTooLarge = errors.New("body too large")

// explain turns a decoding failure into the answer for what really went
// wrong with the body.
func (l *limitedBody) explain(err error, limit int64) error {
	switch {
	case l.over:
		return apiErrorf(http.StatusRequestEntityTooLarge, wire.CodeTooLarge, "body over the limit of %d bytes; send fewer records per batch", limit)
	case l.err != nil:
		var mbe *http.MaxBytesError
		if errors.As(l.err, &mbe) {
			return apiErrorf(http.StatusRequestEntityTooLarge, wire.CodeTooLarge, "body over the limit of %d bytes; send fewer records per batch", mbe.Limit)
		}
		return apiErrorf(http.StatusBadRequest, wire.CodeBadRequest, "reading the body failed: %v", l.err)
	}
	return err
}

// gzipErrReader remembers a decompression error, which the JSON decoder
// would otherwise report as a JSON problem.
type gzipErrReader struct {
	r   io.Reader
	err error
}

func (g *gzipErrReader) Read(p []byte) (int, error) {
	n, err := g.r.Read(p)
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

// allowWrite checks that p may write the reports of agent: an issued
// agent token names its agent; an Entra identity is bound to the first
// agent id it writes as (and that id to it), once, in the store.
func (s *Server) allowWrite(ctx context.Context, p auth.Principal, agent string) error {
	switch {
	case p.Method == auth.MethodNone:
		return nil
	case p.Agent != "":
		if p.Agent != agent {
			return apiErrorf(http.StatusForbidden, wire.CodeForbidden, "token for host %s cannot write reports of host %s", p.Agent, agent)
		}
		return nil
	}
	return s.allowEntra(ctx, p, agent)
}
