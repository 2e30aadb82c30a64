// Package server is berth-control's HTTP API: agents post their reports to
// POST /v1/reports, operators read the fleet under /v1/hosts and
// /v1/counts (and forget a host with DELETE /v1/hosts/{id}), and a load
// balancer probes /healthz. Every error, on every
// route, is one wire.Error JSON body with a matching status.
//
// The server owns no state of its own: the store keeps the fleet, the
// authenticator turns bearer tokens into principals, and the web page (when
// one is mounted) renders what the API returns.
package server

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/berthhq/berth/internal/clip"

	"github.com/berthhq/berth/control/auth"
	"github.com/berthhq/berth/control/store"
	"github.com/berthhq/berth/control/wire"
)

// Store is what the server needs of the fleet's database; *store.Store is
// the one implementation, and the interface is the seam tests and future
// backends plug into.
type Store interface {
	Ping(ctx context.Context) error
	Ingest(ctx context.Context, b wire.Batch, now time.Time) (wire.Ack, error)
	Hosts(ctx context.Context, f wire.HostFilter, now time.Time) (wire.HostPage, error)
	Host(ctx context.Context, id string, now time.Time, n int) (wire.HostDetail, error)
	Counts(ctx context.Context, now time.Time) (wire.Counts, error)
	// Bind binds an agent id to the Entra identity that writes as it.
	Bind(ctx context.Context, b store.Binding) error
	Forget(ctx context.Context, id string, dropHistory bool) (wire.Forgotten, error)
}

// Authenticator turns the Authorization header of a request into the
// principal that sent it; *auth.Authenticator is the implementation.
// Errors that wrap auth.ErrUnauthenticated are answered 401.
type Authenticator interface {
	Authenticate(ctx context.Context, authorization string) (auth.Principal, error)
}

var _ Store = (*store.Store)(nil)
var _ Authenticator = (*auth.Authenticator)(nil)

// Defaults of Options.
const (
	// DefaultMaxInFlight bounds the reports decoded and ingested at once;
	// past it, agents wait up to 2 s, then get a 429 with a jittered
	// Retry-After and come back later. A report takes a slot only once its
	// body is read, so slots are held by work, never by a slow sender.
	// Many in flight is what lets the store commit them in groups.
	DefaultMaxInFlight = 256
	// DefaultHistory and MaxHistory bound ?history= of GET /v1/hosts/{id}.
	DefaultHistory = 50
	MaxHistory     = 500
	// shutdownGrace is how long ListenAndServe lets requests in flight
	// finish once its context ends.
	shutdownGrace = 15 * time.Second
)

// connTimeout is the read and the write timeout of a connection's
// request; a variable so that tests need not wait a minute past it.
var connTimeout = time.Minute

// Options configure a Server. Store and Auth are required.
type Options struct {
	Store  Store
	Auth   Authenticator
	Logger *slog.Logger
	// Web serves the operator's web page at "/" (every path outside /v1/
	// and /healthz). Nil answers those paths 404.
	Web http.Handler
	// MaxBodyBytes bounds a report's body, compressed and decompressed
	// alike (default and maximum wire.MaxBatchBytes).
	MaxBodyBytes int64
	// MaxInFlight bounds the reports decoded and stored at once (default
	// DefaultMaxInFlight).
	MaxInFlight int
	// BodyTimeout bounds the time a report's body takes to arrive
	// (default DefaultBodyTimeout); past it the report is answered 408.
	BodyTimeout time.Duration
	// PerIdentity bounds the reports one agent identity has in progress
	// (default DefaultPerIdentity); past it they are answered 429.
	PerIdentity int
	// MaxBufferedBytes bounds the bytes of report bodies held at once
	// (default DefaultMaxBuffered).
	MaxBufferedBytes int64
	// QuotaRecords and QuotaBytes are what one agent may send a minute
	// (default DefaultQuotaRecords and DefaultQuotaBytes; below 0, no
	// bound on that measure); past them its reports are answered 429
	// with Retry-After. Each replica meters what it receives.
	QuotaRecords int64
	QuotaBytes   int64
	// Now is the server's clock (default time.Now).
	Now func() time.Time
	// TLS, when set, makes Serve and ListenAndServe speak https (see
	// LoadTLS); nil serves plain http, for loopback or behind a proxy
	// that terminates TLS.
	TLS *tls.Config
	// Rollouts serves /v1/rollouts, the pins and the desired state; nil
	// answers them 404.
	Rollouts Rollouts
	// PollsPerIdentity bounds the long polls of the desired state one
	// identity has open (default DefaultPollsPerIdentity); a poll past it
	// ends that identity's oldest.
	PollsPerIdentity int
}

// Server is the control endpoint's HTTP handler.
type Server struct {
	st      Store
	auth    Authenticator
	log     *slog.Logger
	web     http.Handler
	maxBody int64
	now     func() time.Time
	mux     *http.ServeMux
	slots   chan struct{}
	tls     *tls.Config
	ro      Rollouts

	// polls counts each identity's open long polls; draining ends when
	// the server shuts down, which answers them at once.
	polls    pollSlots
	draining context.Context
	drain    context.CancelFunc
	// hijacked counts the polls whose connection net/http handed over
	// (see takeConn); Serve waits for them, as Shutdown does not.
	hijacked sync.WaitGroup

	// The report path's bounds: see limits.go.
	bodyTimeout time.Duration
	maxBuffered int64
	buffered    atomic.Int64
	inProgress  inProgress
	quota       *quota // nil: no quota

	// bound remembers the bindings the store has accepted, by subject, so
	// that a host's steady stream of reports does not cost a Bind round
	// trip each (see allowEntra).
	boundMu sync.RWMutex
	bound   map[string]boundEntry

	reqPrefix string
	reqSeq    atomic.Uint64
	writers   sync.Pool
}

// maxBound caps the binding cache; past it the cache starts over, which
// costs one Bind per host and nothing else.
const maxBound = 200_000

// New returns a Server. It panics when Store or Auth is missing: that is a
// wiring bug, not a runtime condition.
func New(o Options) *Server {
	if o.Store == nil || o.Auth == nil {
		panic("server.New: Options.Store and Options.Auth are required")
	}
	s := &Server{
		st:      o.Store,
		auth:    o.Auth,
		log:     o.Logger,
		web:     o.Web,
		maxBody: o.MaxBodyBytes,
		now:     o.Now,
		tls:     o.TLS,
		ro:      o.Rollouts,
		bound:   map[string]boundEntry{},
	}
	s.draining, s.drain = context.WithCancel(context.Background())
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("component", "control-api")
	if s.maxBody <= 0 || s.maxBody > wire.MaxBatchBytes {
		s.maxBody = wire.MaxBatchBytes
	}
	if s.now == nil {
		s.now = time.Now
	}
	n := o.MaxInFlight
	if n <= 0 {
		n = DefaultMaxInFlight
	}
	s.slots = make(chan struct{}, n)
	s.bodyTimeout = cmp.Or(max(o.BodyTimeout, 0), DefaultBodyTimeout)
	s.maxBuffered = cmp.Or(max(o.MaxBufferedBytes, 0), DefaultMaxBuffered)
	s.inProgress = inProgress{n: map[identity]int{}, max: cmp.Or(max(o.PerIdentity, 0), DefaultPerIdentity)}
	s.polls = pollSlots{m: map[identity][]*pollSlot{}, max: cmp.Or(max(o.PollsPerIdentity, 0), DefaultPollsPerIdentity)}
	// A measure below 0 is unbounded (a limit of 0 in the quota).
	records, bytes := max(cmp.Or(o.QuotaRecords, DefaultQuotaRecords), 0), max(cmp.Or(o.QuotaBytes, DefaultQuotaBytes), 0)
	if records > 0 || bytes > 0 {
		s.quota = newQuota(records, bytes, time.Minute)
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	s.reqPrefix = hex.EncodeToString(b[:]) + "-"
	s.writers.New = func() any { return new(statusWriter) }
	s.routes()
	return s
}

// routes registers every endpoint. Each path also gets a catch-all for
// the other methods so that a wrong method is a 405 in the one error shape
// (the mux's own 405 is plain text).
func (s *Server) routes() {
	s.mux = http.NewServeMux()
	allow := map[string][]string{}
	handle := func(method, path string, h func(http.ResponseWriter, *http.Request) error) {
		s.mux.Handle(method+" "+path, s.wrap(h))
		allow[path] = append(allow[path], method)
	}
	handle(http.MethodPost, wire.ReportsPath, s.postReports)
	handle(http.MethodGet, "/v1/hosts", s.getHosts)
	handle(http.MethodGet, "/v1/hosts/{id}", s.getHost)
	handle(http.MethodDelete, "/v1/hosts/{id}", s.deleteHost)
	handle(http.MethodGet, "/v1/counts", s.getCounts)
	handle(http.MethodGet, "/healthz", s.getHealthz)
	handle(http.MethodGet, "/v1/agents/{id}/desired", s.getDesired)
	handle(http.MethodPost, wire.RolloutsPath, s.postRollout)
	handle(http.MethodGet, wire.RolloutsPath, s.getRollouts)
	handle(http.MethodGet, wire.RolloutsPath+"/{id}", s.getRollout)
	for _, a := range []string{wire.ActionPause, wire.ActionResume, wire.ActionAbort} {
		handle(http.MethodPost, wire.RolloutsPath+"/{id}/"+a, s.postRolloutAction(a))
	}
	handle(http.MethodPut, "/v1/hosts/{id}/pin", s.putPin)
	handle(http.MethodDelete, "/v1/hosts/{id}/pin", s.deletePin)
	for path, methods := range allow {
		if slices.Contains(methods, http.MethodGet) {
			methods = append(methods, http.MethodHead)
		}
		s.mux.Handle(path, s.wrap(methodNotAllowed(strings.Join(methods, ", "))))
	}
	s.mux.Handle("/v1/", s.wrap(func(_ http.ResponseWriter, r *http.Request) error {
		return apiErrorf(http.StatusNotFound, wire.CodeNotFound, "no API endpoint %s %s; see the endpoints under /v1/ in the docs", r.Method, clip.String(r.URL.Path, quoteLen))
	}))
	s.mux.Handle("/", s.wrapWeb())
}

func methodNotAllowed(allowed string) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Allow", allowed)
		return apiErrorf(http.StatusMethodNotAllowed, wire.CodeMethodNotAllowed, "%s is not allowed on %s; use %s", r.Method, clip.String(r.URL.Path, quoteLen), allowed)
	}
}

// ServeHTTP serves the API, the health probe and the web page.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mux.ServeHTTP(w, r)
}

// wrapWeb mounts the web page with the same panic guard and access log
// as the API.
func (s *Server) wrapWeb() http.Handler {
	return s.wrap(func(w http.ResponseWriter, r *http.Request) error {
		if s.web == nil {
			return apiErrorf(http.StatusNotFound, wire.CodeNotFound, "no page at %s: this server has no web page; the API is under /v1/", clip.String(r.URL.Path, quoteLen))
		}
		s.web.ServeHTTP(w, r)
		return nil
	})
}

// wrap turns a handler that returns an error into an http.Handler that
// answers the error in the one shape, recovers panics into a 500, and
// writes the access log line.
func (s *Server) wrap(h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		start := time.Now()
		w := s.writers.Get().(*statusWriter)
		w.reset(rw)
		id := s.reqPrefix + strconv.FormatUint(s.reqSeq.Add(1), 36)
		w.id = id
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.log.Error("panic serving request", "request", id, "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
				if !w.wroteHeader {
					writeError(w, http.StatusInternalServerError, wire.CodeInternal, "internal error (request "+id+"); the server log has the details")
				}
			}
			s.accessLog(r, w, time.Since(start))
			w.reset(nil)
			s.writers.Put(w)
		}()
		if err := h(w, r); err != nil {
			s.answer(w, r, err)
		}
	})
}

// setWho tells the access log who sent the request. The principal rides
// on the pooled writer rather than on the request's context, which would
// cost two allocations on every report.
func setWho(w http.ResponseWriter, p auth.Principal) {
	if sw, ok := w.(*statusWriter); ok {
		sw.who = p
	}
}

// accessLog logs a request: at debug when it succeeded (reports arrive by
// the thousand each second), at info when it failed. Only the path is
// logged: headers carry tokens.
func (s *Server) accessLog(r *http.Request, w *statusWriter, d time.Duration) {
	level := slog.LevelDebug
	if w.status >= 400 {
		level = slog.LevelInfo
	}
	ctx := r.Context()
	if !s.log.Enabled(ctx, level) {
		return
	}
	s.log.LogAttrs(ctx, level, "request",
		slog.String("request", w.id),
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.Int("status", w.status),
		slog.Int64("bytes", w.bytes),
		slog.Duration("duration", d),
		slog.String("remote", r.RemoteAddr),
		slog.String("role", string(w.who.Role)),
		slog.String("subject", w.who.Subject),
	)
}

// statusWriter records the status and size of a response for the access
// log; the server pools them.
type statusWriter struct {
	http.ResponseWriter
	id          string
	who         auth.Principal
	status      int
	bytes       int64
	wroteHeader bool
}

func (w *statusWriter) reset(rw http.ResponseWriter) {
	*w = statusWriter{ResponseWriter: rw, status: http.StatusOK}
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wroteHeader {
		w.status, w.wroteHeader = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	w.wroteHeader = true
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Serve serves on ln (https when Options.TLS is set) until ctx ends, then
// shuts down gracefully: it stops accepting, lets requests in flight
// finish for a while, and returns nil.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		// A 4 MiB report over a slow link still fits in a minute. A long
		// poll of the desired state moves its own deadlines past its
		// wait (see extendDeadlines).
		ReadTimeout:    connTimeout,
		WriteTimeout:   connTimeout,
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:    func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
		TLSConfig:      s.tls,
	}
	// Shutdown waits for requests in flight; open long polls are answered
	// at once rather than held until their wait ends.
	hs.RegisterOnShutdown(s.drain)
	done := make(chan error, 1)
	go func() {
		if s.tls != nil {
			// The certificate comes from TLSConfig.GetCertificate.
			done <- hs.ServeTLS(ln, "", "")
			return
		}
		done <- hs.Serve(ln)
	}()
	select {
	case err := <-done:
		return fmt.Errorf("serve on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	s.log.Info("shutting down: no new connections; finishing requests in flight", "grace", shutdownGrace)
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	err := hs.Shutdown(sctx)
	if serr := <-done; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	// The drained polls on connections of their own are answering now.
	polls := make(chan struct{})
	go func() { s.hijacked.Wait(); close(polls) }()
	select {
	case <-polls:
	case <-sctx.Done():
		err = errors.Join(err, errors.New("long polls still answering after the grace period"))
	}
	if err != nil {
		hs.Close()
		return fmt.Errorf("shut down: %w", err)
	}
	s.log.Info("stopped")
	return nil
}

// Scheme is "https" when the server speaks TLS, else "http".
func (s *Server) Scheme() string {
	if s.tls != nil {
		return "https"
	}
	return "http"
}

// ListenAndServe listens on addr (host:port; port 0 picks a free one) and
// serves until ctx ends. ready, when not nil, is called with the address
// actually bound once the server accepts connections.
func (s *Server) ListenAndServe(ctx context.Context, addr string, ready func(net.Addr)) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (is another server using the port? choose another with --listen)", addr, err)
	}
	s.log.Info("listening", "addr", ln.Addr().String(), "url", s.Scheme()+"://"+ln.Addr().String())
	if ready != nil {
		ready(ln.Addr())
	}
	return s.Serve(ctx, ln)
}
