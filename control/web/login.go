package web

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

type loginView struct {
	base
	// Enabled is false when there is no login form (Options.Login nil).
	Enabled bool
	// Open is true when the pages need no login at all.
	Open  bool
	Next  string
	Error string
}

// loginForm serves GET /login.
func (h *handler) loginForm(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	h.render(w, r, http.StatusOK, "login", loginView{
		base:    h.base(r, "Log in"),
		Enabled: h.login != nil,
		Open:    h.authorize == nil,
		Next:    safeNext(r.URL.Query().Get("next")),
	})
}

// loginSubmit serves POST /login: it checks the token, opens a session and
// puts the session's secret, not the token, in the cookie.
//
// Cross-site request forgery is stopped twice: the cookie is SameSite=Strict
// (a browser sends it only from this site's own pages) and the POST must
// come from this site's own origin (sameOrigin). A forged login would
// otherwise plant the attacker's token in the operator's browser.
func (h *handler) loginSubmit(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if !sameOrigin(r) {
		h.fail(w, r, forbiddenOrigin())
		return
	}
	next := safeNext(r.PostFormValue("next"))
	v := loginView{base: h.base(r, "Log in"), Enabled: h.login != nil, Open: h.authorize == nil, Next: next}
	if h.login == nil {
		h.fail(w, r, &pageError{Status: http.StatusNotFound, Title: "No login form",
			Detail: "This control endpoint takes no tokens through the page."})
		return
	}
	token := strings.TrimSpace(r.PostFormValue("token"))
	if token == "" || !cookieSafe(token) {
		v.Error = "That is not a token: tokens are one word of letters, digits and punctuation."
		h.render(w, r, http.StatusBadRequest, "login", v)
		return
	}
	session, expires, err := h.login(r.Context(), token)
	if err != nil {
		h.log.InfoContext(r.Context(), "login refused", "err", err)
		v.Error = "The token was not accepted: it is unknown, revoked, or not an operator's."
		h.render(w, r, http.StatusUnauthorized, "login", v)
		return
	}
	if !cookieSafe(session) {
		h.fail(w, r, fmt.Errorf("the session store made a secret that cannot be a cookie value"))
		return
	}
	http.SetCookie(w, h.cookie(r, session, int(time.Until(expires).Seconds()), expires))
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// cookie is the session cookie: value for maxAge seconds (negative:
// delete it), until expires.
func (h *handler) cookie(r *http.Request, value string, maxAge int, expires time.Time) *http.Cookie {
	if maxAge == 0 {
		maxAge = -1 // 0 would make it a browser-session cookie
	}
	return &http.Cookie{
		Name:     CookieName,
		Value:    value,
		Path:     "/",
		Expires:  expires,
		MaxAge:   maxAge,
		HttpOnly: true,
		Secure:   h.isHTTPS(r),
		SameSite: http.SameSiteStrictMode,
	}
}

// logout serves POST /logout: it ends the session in the store, so the
// cookie is worthless even if a copy of it survives, then forgets the
// cookie. The token the session was opened with stays valid; revoking it
// is `berth-control token revoke`.
func (h *handler) logout(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		h.fail(w, r, forbiddenOrigin())
		return
	}
	if c, err := r.Cookie(CookieName); err == nil && c.Value != "" && h.endSession != nil {
		if err := h.endSession(r.Context(), c.Value); err != nil {
			// The cookie stays, so that signing out can be tried again:
			// forgetting it would leave a live session behind.
			h.fail(w, r, fmt.Errorf("end the session: %w", err))
			return
		}
	}
	http.SetCookie(w, h.cookie(r, "", -1, time.Unix(0, 0)))
	to := "/login"
	if h.authorize == nil {
		to = "/"
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}

func forbiddenOrigin() *pageError {
	return &pageError{Status: http.StatusForbidden, Title: "Forbidden",
		Detail: "The form was not sent from this site's own page (the Origin and Referer headers do not name it). Open the page again and retry."}
}

// sameOrigin reports whether a POST came from one of this site's pages: its
// Origin header, or when a browser sent none its Referer, names the host the
// request was sent to. A request with neither is refused: every browser
// that can hold the session cookie sends one of them on a form POST.
func sameOrigin(r *http.Request) bool {
	src := r.Header.Get("Origin")
	if src == "" || src == "null" {
		src = r.Header.Get("Referer")
	}
	if src == "" || src == "null" {
		return false
	}
	u, err := url.Parse(src)
	if err != nil || u.Host == "" {
		return false
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return false
	}
	return strings.EqualFold(u.Host, r.Host)
}

// safeNext is where to go after the login: a path on this site, never a
// link elsewhere ("//evil.example" is a host, not a path).
func safeNext(next string) string {
	if next == "" || !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") {
		return "/"
	}
	if u, err := url.Parse(next); err != nil || u.Host != "" || u.Scheme != "" {
		return "/"
	}
	return next
}

// cookieSafe reports whether a token can be a cookie value as it is: net/http
// drops values with spaces, quotes, commas, semicolons or backslashes.
func cookieSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= 0x20 || c >= 0x7f || c == '"' || c == ',' || c == ';' || c == '\\' {
			return false
		}
	}
	return true
}
