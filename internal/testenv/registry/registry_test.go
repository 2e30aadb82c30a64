package registry

import (
	"net/http"
	"testing"
)

// TestStart starts registries anonymous and behind each kind of auth and
// checks /v2/ answers as such and the access log is read back.
func TestStart(t *testing.T) {
	creds := &Credentials{User: "u", Password: "p"}
	tests := []struct {
		name       string
		opts       func(t *testing.T) Options
		wantStatus int
	}{
		{"anonymous", func(*testing.T) Options { return Options{} }, http.StatusOK},
		{"basic auth", func(*testing.T) Options { return Options{BasicAuth: creds} }, http.StatusUnauthorized},
		{"token auth", func(t *testing.T) Options {
			return Options{TokenAuth: StartTokenServer(t, TokenServerOptions{Credentials: creds})}
		}, http.StatusUnauthorized},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := Start(t, tc.opts(t))
			resp, err := http.Get(r.URL + "/v2/")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.wantStatus {
				t.Errorf("GET /v2/ without credentials: %d, want %d", resp.StatusCode, tc.wantStatus)
			}
			if n := r.CountRequests(t, http.MethodGet, "/v2/"); n < 2 { // Start's own probe and ours
				t.Errorf("access log: %d GET /v2/, want at least 2: %+v", n, r.Requests(t))
			}
		})
	}
}
