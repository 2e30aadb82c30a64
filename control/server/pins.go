package server

import (
	"net/http"
	"net/url"

	"github.com/berthhq/berth/internal/clip"

	"github.com/berthhq/berth/control/wire"
)

// putPin is PUT /v1/hosts/{id}/pin: the members given are set, the other
// is kept; the answer is the host's pins after the change.
func (s *Server) putPin(w http.ResponseWriter, r *http.Request) error {
	ro, by, host, err := s.pinFor(w, r)
	if err != nil {
		return err
	}
	var p wire.Pin
	if err := decodeSmall(r, &p, false); err != nil {
		return err
	}
	if p.Engine == "" && p.Agent == "" {
		return apiErrorf(http.StatusBadRequest, wire.CodeBadRequest, `a pin names a version: {"engine": "V"} or {"agent": "V"}`)
	}
	for kind, v := range map[string]string{wire.KindEngine: p.Engine, wire.KindAgent: p.Agent} {
		if v == "" {
			continue
		}
		if err := wire.CheckVersion(v); err != nil {
			return apiErrorf(http.StatusBadRequest, wire.CodeBadRequest, "%s: %v", kind, err)
		}
	}
	got, err := ro.Pin(r.Context(), host, by, p)
	if err != nil {
		return err
	}
	return writeJSON(w, got)
}

// deletePin is DELETE /v1/hosts/{id}/pin[?kind=engine|agent]: without a
// kind, both pins go.
func (s *Server) deletePin(w http.ResponseWriter, r *http.Request) error {
	ro, by, host, err := s.pinFor(w, r)
	if err != nil {
		return err
	}
	kind, err := parsePinKind(r.URL.Query())
	if err != nil {
		return err
	}
	got, err := ro.Unpin(r.Context(), host, by, kind)
	if err != nil {
		return err
	}
	return writeJSON(w, got)
}

// pinFor authenticates an operator for a pin and reads the host's id.
func (s *Server) pinFor(w http.ResponseWriter, r *http.Request) (Rollouts, string, string, error) {
	ro, by, err := s.operatorFor(w, r)
	if err != nil {
		return nil, "", "", err
	}
	host, err := pathHost(r)
	return ro, by, host, err
}

// parsePinKind reads the query of DELETE /v1/hosts/{id}/pin: at most one
// kind, engine or agent ("" for both).
func parsePinKind(q url.Values) (string, error) {
	for k, vs := range q {
		if k != "kind" {
			return "", apiErrorf(http.StatusBadRequest, wire.CodeBadRequest, "unknown query parameter %q; DELETE /v1/hosts/{id}/pin takes kind", clip.String(k, quoteLen))
		}
		if len(vs) != 1 {
			return "", apiErrorf(http.StatusBadRequest, wire.CodeBadRequest, "kind given %d times; give it once, or not at all to remove both pins", len(vs))
		}
	}
	switch k := q.Get("kind"); k {
	case "", wire.KindEngine, wire.KindAgent:
		return k, nil
	default:
		return "", apiErrorf(http.StatusBadRequest, wire.CodeBadRequest, "kind=%q: want engine or agent, or no kind to remove both pins", clip.String(k, quoteLen))
	}
}

// pathHost is the {id} of the path, checked as an agent id so that no
// malformed id reaches the store (or, on the desired path, a binding).
func pathHost(r *http.Request) (string, error) {
	id := r.PathValue("id")
	if err := wire.CheckAgentID(id); err != nil {
		return "", apiErrorf(http.StatusBadRequest, wire.CodeBadRequest, "host id in the path: %v", err)
	}
	return id, nil
}
