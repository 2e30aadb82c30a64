// Package web is berth-control's web page for operators: the fleet as a
// table that filters, sorts and pages on the server, the hosts counted by
// state and by engine version as a small chart, and one host's checks,
// events and health history, and the rollouts: each with its waves, its
// hosts per state, the decisions taken and a chart of versions over time.
//
// Pages are rendered on the server with html/template from embedded files:
// there is no JavaScript and no build step, every control is a link or a
// form, and the pages reload themselves every few seconds so an operator
// watching the fleet sees a host turn Unhealthy. Everything a host reports
// (labels, check messages, event fields) is attacker-influenced and only
// ever reaches the page through html/template's contextual escaping.
package web

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/berthhq/berth/control/wire"
)

// CookieName is the cookie that carries the operator's session after a
// login: a random secret the server keeps a hash of, never the token.
// HttpOnly, SameSite=Strict, expiring with the session, and Secure when
// the page is served over https.
const CookieName = "berth_session"

// DefaultRefresh is how often the pages reload themselves when
// Options.Refresh is zero.
const DefaultRefresh = 10 * time.Second

// HistoryLen is how many heartbeats and events the host page shows.
const HistoryLen = 50

// Reader is what the page reads from the store; *store.Store implements it
// (the page does not import the store, which would link the SQL drivers).
// It is an interface so the page can be tested against a store that fails.
type Reader interface {
	Hosts(ctx context.Context, f wire.HostFilter, now time.Time) (wire.HostPage, error)
	Host(ctx context.Context, id string, now time.Time, n int) (wire.HostDetail, error)
	Counts(ctx context.Context, now time.Time) (wire.Counts, error)
}

// Rollouts is what the rollout pages read; *rollout.Service implements it.
// It is an interface so the page links neither the controller nor the
// store, and so tests can show any rollout the wire can carry.
type Rollouts interface {
	List(ctx context.Context) (wire.RolloutList, error)
	Get(ctx context.Context, id string) (wire.Rollout, error)
}

// Options configure the handler New returns.
type Options struct {
	// Store is where hosts come from. Required.
	Store Reader
	// Rollouts is where the rollout pages come from; nil (no rollout
	// controller) leaves them out: no nav item, and their paths are 404.
	// Leave it unset rather than set to a nil *rollout.Service, which is
	// not a nil interface.
	Rollouts Rollouts
	// Authorize says whether a request may see the pages (an operator token
	// in the Authorization header, or a live session in the cookie
	// CookieName). nil leaves the pages open, for the `--auth none` demo. A
	// page request it refuses is redirected to /login.
	Authorize func(*http.Request) error
	// Login checks that a token typed into the login form is an operator's
	// and opens a session, returning its secret (the cookie's value) and
	// its expiry. nil means there is no login form.
	Login func(ctx context.Context, token string) (session string, expires time.Time, err error)
	// Logout ends the session whose secret the cookie holds. nil only
	// forgets the cookie.
	Logout func(ctx context.Context, session string) error
	// IsHTTPS says whether the browser reached the page over https, which
	// makes the cookie Secure; nil means the connection is TLS.
	IsHTTPS func(*http.Request) bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives the errors the pages hide from the browser; nil
	// discards them.
	Logger *slog.Logger
	// Refresh is how often the pages reload themselves: 0 means
	// DefaultRefresh, a negative value never. An operator can pause it per
	// page with the "pause" link (the query parameter refresh=off).
	Refresh time.Duration
}

// handler serves the pages; see New.
type handler struct {
	store      Reader
	rollouts   Rollouts
	authorize  func(*http.Request) error
	login      func(ctx context.Context, token string) (string, time.Time, error)
	endSession func(ctx context.Context, session string) error
	isHTTPS    func(*http.Request) bool
	now        func() time.Time
	log        *slog.Logger
	refresh    time.Duration
	mux        *http.ServeMux
}

// New returns the handler of the web page. It serves
//
//	GET  /               the fleet: table, filters, counts
//	GET  /hosts/{id}     one host
//	GET  /rollouts       the rollouts, newest first (with Options.Rollouts)
//	GET  /rollouts/{id}  one rollout: waves, hosts per state, decisions, versions
//	GET  /login          the login form; POST /login checks a token, opens a session, sets the cookie
//	POST /logout         ends the session and forgets the cookie
//	GET  /static/...     the stylesheet
//
// and is meant to be mounted at the root of berth-control's listener, beside
// the JSON API under /v1/.
func New(o Options) http.Handler {
	if o.Store == nil {
		panic("web.New: Options.Store is nil")
	}
	h := &handler{
		store:      o.Store,
		rollouts:   o.Rollouts,
		authorize:  o.Authorize,
		login:      o.Login,
		endSession: o.Logout,
		isHTTPS:    o.IsHTTPS,
		now:        o.Now,
		log:        o.Logger,
		refresh:    o.Refresh,
		mux:        http.NewServeMux(),
	}
	if h.now == nil {
		h.now = time.Now
	}
	if h.isHTTPS == nil {
		h.isHTTPS = func(r *http.Request) bool { return r.TLS != nil }
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	h.log = h.log.With("component", "web")
	if h.refresh == 0 {
		h.refresh = DefaultRefresh
	}
	h.mux.Handle("GET /{$}", h.page(h.fleet))
	h.mux.Handle("GET /hosts/{id}", h.page(h.host))
	h.mux.HandleFunc("GET /login", h.loginForm)
	h.mux.HandleFunc("POST /login", h.loginSubmit)
	h.mux.HandleFunc("POST /logout", h.logout)
	h.mux.Handle("GET /static/", staticHandler())
	if h.rollouts != nil {
		h.mux.Handle("GET /rollouts", h.page(h.rolloutList))
		h.mux.Handle("GET /rollouts/{id}", h.page(h.rolloutPage))
	}
	h.mux.HandleFunc("/", h.notFound)
	return h
}

// ServeHTTP sets the headers every response carries, then routes.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	// No script runs on these pages, and nothing may frame them: a
	// clickjacked "log out" or an injected script has nowhere to go.
	hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	// Same-origin Referers keep the fallback of the POST origin check
	// working when a browser sends no Origin.
	hd.Set("Referrer-Policy", "same-origin")
	h.mux.ServeHTTP(w, r)
}

// pageFunc serves one page or returns the error to show instead.
type pageFunc func(w http.ResponseWriter, r *http.Request) error

// page wraps a page: it checks authorization and turns a returned error into
// the error page.
func (h *handler) page(f pageFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.authorize != nil {
			if err := h.authorize(r); err != nil {
				h.log.DebugContext(r.Context(), "page refused", "path", r.URL.Path, "err", err)
				http.Redirect(w, r, "/login?next="+urlQueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
		}
		w.Header().Set("Cache-Control", "no-store")
		if err := f(w, r); err != nil {
			h.fail(w, r, err)
		}
	})
}

// pageError is an error with the status and the explanation the error page
// shows.
type pageError struct {
	Status int
	Title  string
	// Detail says what went wrong, Allowed what would have been right.
	Detail  string
	Allowed []string
	err     error
}

func (e *pageError) Error() string { return e.Title + ": " + e.Detail }
func (e *pageError) Unwrap() error { return e.err }

// fail renders err as the error page. A *pageError is shown as it is; any
// other error is the server's fault, logged and shown without its text,
// which may name files or queries.
func (h *handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	var pe *pageError
	if !errors.As(err, &pe) {
		h.log.ErrorContext(r.Context(), "page failed", "path", r.URL.Path, "err", err)
		pe = &pageError{Status: http.StatusInternalServerError, Title: "Internal error",
			Detail: "The control endpoint could not read the fleet. The error is in its log.", err: err}
	}
	h.render(w, r, pe.Status, "error", errorView{base: h.base(r, pe.Title), Err: pe})
}

// notFound answers every path no page serves.
func (h *handler) notFound(w http.ResponseWriter, r *http.Request) {
	h.fail(w, r, &pageError{Status: http.StatusNotFound, Title: "Not found",
		Detail: "There is no page at " + r.URL.Path + "."})
}

// errorView is the error page's data.
type errorView struct {
	base
	Err *pageError
}
