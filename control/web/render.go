package web

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

//go:embed templates/*.tmpl
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// templates holds one template set per page, each with the shared layout,
// parsed once at start: a broken template fails the first test, not a
// request in production.
var templates = func() map[string]*template.Template {
	// Each page with the files of the parts it shares with other pages.
	pages := map[string][]string{
		"fleet": nil, "host": nil, "login": nil, "error": nil,
		"rollouts": {"progress"}, "rollout": {"progress"},
	}
	m := make(map[string]*template.Template, len(pages))
	for p, parts := range pages {
		files := []string{"templates/layout.tmpl", "templates/" + p + ".tmpl"}
		for _, part := range parts {
			files = append(files, "templates/"+part+".tmpl")
		}
		m[p] = template.Must(template.New("layout.tmpl").Funcs(funcs).ParseFS(templateFS, files...))
	}
	return m
}()

// funcs are the helpers the templates call.
var funcs = template.FuncMap{
	"stateClass":   stateClass,
	"statusClass":  statusClass,
	"abs":          absTime,
	"rolloutClass": rolloutStateClass,
	"hostClass":    hostStateClass,
}

// base is what the layout needs on every page.
type base struct {
	Title string
	// Nav is the navigation; Current marks the item of this page.
	Nav []navItem
	// Refresh is the auto-refresh interval in seconds, 0 when off;
	// RefreshToggle the link that turns it off or on.
	Refresh       int
	RefreshOn     bool
	RefreshToggle string
	RefreshAvail  bool
	// LoggedIn shows the logout button: the session is a cookie.
	LoggedIn bool
}

// navItem is one link of the navigation bar.
type navItem struct {
	Label   string
	URL     string
	Current bool
}

// navItems is the navigation. Rollouts are in it only when their pages
// exist, rather than as an item leading nowhere.
func navItems(path string, rollouts bool) []navItem {
	items := []navItem{
		{Label: "Fleet", URL: "/", Current: path == "/" || strings.HasPrefix(path, "/hosts/")},
	}
	if rollouts {
		items = append(items, navItem{Label: "Rollouts", URL: "/rollouts",
			Current: path == "/rollouts" || strings.HasPrefix(path, "/rollouts/")})
	}
	return items
}

// base returns the layout's view of r.
func (h *handler) base(r *http.Request, title string) base {
	b := base{Title: title, Nav: navItems(r.URL.Path, h.rollouts != nil)}
	if _, err := r.Cookie(CookieName); err == nil && h.login != nil {
		b.LoggedIn = true
	}
	return b
}

// withRefresh fills the auto-refresh part of b for a page whose own URL is
// u: pages reload unless the operator paused them (refresh=off), and the
// toggle is a plain link so it works without script.
func (h *handler) withRefresh(b base, u *url.URL) base {
	if h.refresh < 0 {
		return b
	}
	b.RefreshAvail = true
	q := u.Query()
	if refreshOff(q) {
		q.Del("refresh")
	} else {
		b.RefreshOn = true
		b.Refresh = max(1, int(h.refresh.Round(time.Second)/time.Second))
		q.Set("refresh", "off")
	}
	// The escaped path: a host id may hold "/", "?" or "#".
	b.RefreshToggle = pathWithQuery(u.EscapedPath(), q)
	return b
}

// refreshOff reports whether the query paused the auto-refresh.
func refreshOff(q url.Values) bool { return q.Get("refresh") == "off" }

// pathWithQuery joins an already escaped path and a query.
func pathWithQuery(path string, q url.Values) string {
	if len(q) == 0 {
		return path
	}
	return path + "?" + q.Encode()
}

// urlQueryEscape escapes s for a query value.
func urlQueryEscape(s string) string { return url.QueryEscape(s) }

// render executes the page template name into a buffer first, so that a
// template failure becomes a clean 500 rather than half a page.
func (h *handler) render(w http.ResponseWriter, r *http.Request, status int, name string, data any) {
	var buf bytes.Buffer
	if err := templates[name].Execute(&buf, data); err != nil {
		h.log.ErrorContext(r.Context(), "render page", "page", name, "err", err)
		http.Error(w, "internal error: the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// staticHandler serves the embedded stylesheet.
func staticHandler() http.Handler {
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		panic(fmt.Sprintf("web: static files: %v", err))
	}
	fsrv := http.StripPrefix("/static/", http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The files change only with the binary; an hour is short enough.
		w.Header().Set("Cache-Control", "public, max-age=3600")
		fsrv.ServeHTTP(w, r)
	})
}

// States are the states a host can be in, in the order the page shows them.
var states = []string{"Healthy", "Degraded", "Unhealthy", "Initializing", "Stale"}

// stateClass is the CSS class of a host state.
func stateClass(state string) string {
	switch state {
	case "Healthy":
		return "st-healthy"
	case "Degraded":
		return "st-degraded"
	case "Unhealthy":
		return "st-unhealthy"
	case "Initializing":
		return "st-initializing"
	case "Stale":
		return "st-stale"
	}
	return "st-unknown"
}

// statusClass is the CSS class of a check status (ok, warn, fail).
func statusClass(status string) string {
	switch status {
	case "ok":
		return "ck-ok"
	case "warn":
		return "ck-warn"
	case "fail":
		return "ck-fail"
	}
	return "ck-unknown"
}

// stateColor is the fill of a state's bar in the chart; the same colours
// as the CSS classes, repeated because SVG fills here are attributes (the
// page's CSP has no inline styles).
func stateColor(state string) string {
	switch state {
	case "Healthy":
		return "#2e7d32"
	case "Degraded":
		return "#ef6c00"
	case "Unhealthy":
		return "#c62828"
	case "Initializing":
		return "#1565c0"
	case "Stale":
		return "#757575"
	}
	return "#9e9e9e"
}

// absTime formats t for a title attribute: UTC, to the second.
func absTime(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// relTime says how long before now t was, the way an operator reads it:
// "12 s ago", "3 min ago". A t after now (a skewed clock) reads "in 5 s".
func relTime(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	future := d < 0
	if future {
		d = -d
	}
	var s string
	switch {
	case d < time.Second:
		return "just now"
	case d < time.Minute:
		s = strconv.Itoa(int(d/time.Second)) + " s"
	case d < time.Hour:
		s = strconv.Itoa(int(d/time.Minute)) + " min"
	case d < 48*time.Hour:
		s = strconv.Itoa(int(d/time.Hour)) + " h"
	default:
		s = strconv.Itoa(int(d/(24*time.Hour))) + " d"
	}
	if future {
		return "in " + s
	}
	return s + " ago"
}
