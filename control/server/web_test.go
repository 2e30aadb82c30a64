package server_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/berthhq/berth/control/auth"
	"github.com/berthhq/berth/control/server"
)

// TestWebMount: the page gets every path outside /v1/ and /healthz, and
// OperatorAuthorizer/OperatorLogin accept operators only, from the header
// or the cookie.
func TestWebMount(t *testing.T) {
	var authorize func(*http.Request) error
	var login func(context.Context, string) error
	page := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := authorize(r); err != nil {
			http.Error(w, "login first", http.StatusSeeOther)
			return
		}
		w.Write([]byte("page " + r.URL.Path))
	})
	f := newFixture(t, fixtureOptions{Options: func(o *server.Options) {
		o.Web = page
		authorize = server.OperatorAuthorizer(o.Auth, "berth_session")
		login = server.OperatorLogin(o.Auth)
	}})
	for _, tt := range []struct {
		name   string
		rq     request
		cookie string
		status int
		body   string
	}{
		{"header", request{Path: "/", Token: f.Operator}, "", 200, "page /"},
		{"cookie", request{Path: "/hosts/vm-a"}, f.Operator, 200, "page /hosts/vm-a"},
		{"agent cookie", request{Path: "/"}, f.AgentA, 303, ""},
		{"nothing", request{Path: "/"}, "", 303, ""},
		{"api stays JSON", request{Path: "/v1/nope", Token: f.Operator}, "", 404, `"code":"not_found"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, f.URL+tt.rq.Path, nil)
			if tt.rq.Token != "" {
				req.Header.Set("Authorization", "Bearer "+tt.rq.Token)
			}
			if tt.cookie != "" {
				req.AddCookie(&http.Cookie{Name: "berth_session", Value: tt.cookie})
			}
			rec := httptest.NewRecorder()
			f.Server.ServeHTTP(rec, req)
			if rec.Code != tt.status || !contains(rec.Body.String(), tt.body) {
				t.Errorf("%d %q, want %d %q", rec.Code, rec.Body, tt.status, tt.body)
			}
		})
	}
	ctx := context.Background()
	if err := login(ctx, f.Operator); err != nil {
		t.Errorf("login as operator: %v", err)
	}
	for _, tok := range []string{f.AgentA, "berth_nope", ""} {
		if err := login(ctx, tok); !errors.Is(err, auth.ErrUnauthenticated) {
			t.Errorf("login with %q: %v", tok, err)
		}
	}
}
