package web

import (
	"net/http"
	"net/url"
	"strings"
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

// loginSubmit serves POST /login: it checks the token and keeps it in the
// session cookie.
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
	if err := h.login(r.Context(), token); err != nil {
		h.log.InfoContext(r.Context(), "login refused", "err", err)
		v.Error = "The token was not accepted: it is unknown, revoked, or not an operator's."
		h.render(w, r, http.StatusUnauthorized, "login", v)
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name:     CookieName,
		Value:    token,
		Path:     "/",
		HttpOnly: true,
		Secure:   r.TLS != nil,
		SameSite: http.SameSiteStrictMode,
	})
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// logout serves POST /logout: it forgets the cookie. The token itself
// stays valid; revoking it is `berth-control token revoke`.
func (h *handler) logout(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		h.fail(w, r, forbiddenOrigin())
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name:     CookieName,
		Value:    "",
		Path:     "/",
		MaxAge:   -1,
		HttpOnly: true,
		Secure:   r.TLS != nil,
		SameSite: http.SameSiteStrictMode,
	})
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
