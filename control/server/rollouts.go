package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/berthhq/berth/internal/clip"

	"github.com/berthhq/berth/control/auth"
	"github.com/berthhq/berth/control/rollout"
	"github.com/berthhq/berth/control/wire"
)

// Rollouts is what the server needs of the rollout controller;
// *rollout.Service is the implementation. Its errors say what they are
// through errors.Is: wire.ErrNotFound (404), wire.ErrInvalidSpec (400)
// and rollout.ErrConflict (409).
type Rollouts interface {
	Create(ctx context.Context, who string, spec wire.RolloutSpec) (wire.Rollout, error)
	List(ctx context.Context) (wire.RolloutList, error)
	Get(ctx context.Context, id string) (wire.Rollout, error)
	Pause(ctx context.Context, id, who, reason string) (wire.Rollout, error)
	Resume(ctx context.Context, id, who, reason string) (wire.Rollout, error)
	Abort(ctx context.Context, id, who, reason string) (wire.Rollout, error)
	Pin(ctx context.Context, host, who string, p wire.Pin) (wire.Pin, error)
	Unpin(ctx context.Context, host, who, kind string) (wire.Pin, error)
	Desired(ctx context.Context, host string) (wire.Desired, string, error)
	WaitDesired(ctx context.Context, host, etag string, wait time.Duration) (wire.Desired, string, error)
}

var _ Rollouts = (*rollout.Service)(nil)

// maxActionBytes bounds the body of pause, resume and abort, and of a
// pin: a reason of wire.MaxReasonLen with its JSON fits many times over.
const maxActionBytes = 16 << 10

// rollouts is the controller, or an error that says this server has none.
func (s *Server) rollouts(r *http.Request) (Rollouts, error) {
	if s.ro == nil {
		return nil, apiErrorf(http.StatusNotFound, wire.CodeNotFound, "%s %s: this server runs no rollouts", r.Method, clip.String(r.URL.Path, quoteLen))
	}
	return s.ro, nil
}

// operatorFor authenticates an operator for a rollout or pin call and
// returns the controller and the name the history records.
func (s *Server) operatorFor(w http.ResponseWriter, r *http.Request) (Rollouts, string, error) {
	ro, err := s.rollouts(r)
	if err != nil {
		return nil, "", err
	}
	p, err := s.requireOperator(w, r)
	if err != nil {
		return nil, "", err
	}
	return ro, who(p), nil
}

// who is the name a decision records for p.
func who(p auth.Principal) string {
	if p.Subject == "" {
		return "anonymous"
	}
	return p.Subject
}

// postRollout is POST /v1/rollouts: 201 with the rollout and its
// Location.
func (s *Server) postRollout(w http.ResponseWriter, r *http.Request) error {
	ro, by, err := s.operatorFor(w, r)
	if err != nil {
		return err
	}
	if err := checkJSONBody(r, wire.MaxSpecBytes); err != nil {
		return err
	}
	spec, err := wire.DecodeRolloutSpec(r.Body)
	if err != nil {
		return err
	}
	ro2, err := ro.Create(r.Context(), by, spec)
	if err != nil {
		return err
	}
	w.Header().Set("Location", wire.RolloutsPath+"/"+ro2.ID)
	return writeJSONStatus(w, http.StatusCreated, ro2)
}

// getRollouts is GET /v1/rollouts, newest first.
func (s *Server) getRollouts(w http.ResponseWriter, r *http.Request) error {
	ro, _, err := s.operatorFor(w, r)
	if err != nil {
		return err
	}
	if len(r.URL.RawQuery) > 0 {
		return apiErrorf(http.StatusBadRequest, wire.CodeBadRequest, "GET %s takes no query parameters", wire.RolloutsPath)
	}
	l, err := ro.List(r.Context())
	if err != nil {
		return fmt.Errorf("list rollouts: %w", err)
	}
	if l.Rollouts == nil {
		l.Rollouts = []wire.Rollout{}
	}
	return writeJSON(w, l)
}

// getRollout is GET /v1/rollouts/{id}.
func (s *Server) getRollout(w http.ResponseWriter, r *http.Request) error {
	ro, _, err := s.operatorFor(w, r)
	if err != nil {
		return err
	}
	id := r.PathValue("id")
	v, err := ro.Get(r.Context(), id)
	if err != nil {
		return rolloutError(id, err)
	}
	return writeJSON(w, v)
}

// postRolloutAction is POST /v1/rollouts/{id}/pause|resume|abort with an
// optional {"reason": "…"}.
func (s *Server) postRolloutAction(action string) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		ro, by, err := s.operatorFor(w, r)
		if err != nil {
			return err
		}
		var a wire.RolloutAction
		if err := decodeSmall(r, &a, true); err != nil {
			return err
		}
		if len(a.Reason) > wire.MaxReasonLen {
			return apiErrorf(http.StatusBadRequest, wire.CodeBadRequest, "reason: %d bytes, over the limit of %d", len(a.Reason), wire.MaxReasonLen)
		}
		do := map[string]func(context.Context, string, string, string) (wire.Rollout, error){
			wire.ActionPause: ro.Pause, wire.ActionResume: ro.Resume, wire.ActionAbort: ro.Abort,
		}[action]
		id := r.PathValue("id")
		v, err := do(r.Context(), id, by, a.Reason)
		if err != nil {
			return rolloutError(id, err)
		}
		return writeJSON(w, v)
	}
}

// rolloutError names the rollout in a 404; other errors pass as they are.
func rolloutError(id string, err error) error {
	if errors.Is(err, wire.ErrNotFound) {
		return apiErrorf(http.StatusNotFound, wire.CodeNotFound, "no rollout %q (GET %s lists them)", clip.String(id, quoteLen), wire.RolloutsPath)
	}
	return err
}

// checkJSONBody refuses a body that says it is over limit or is not JSON
// before reading it.
func checkJSONBody(r *http.Request, limit int64) error {
	if r.ContentLength > limit {
		return apiErrorf(http.StatusRequestEntityTooLarge, wire.CodeTooLarge, "body of %d bytes is over the limit of %d bytes", r.ContentLength, limit)
	}
	return checkContentType(r.Header.Get("Content-Type"))
}

// decodeSmall reads a JSON body of at most maxActionBytes into v,
// strictly. An empty body leaves v as it is when emptyOK.
func decodeSmall(r *http.Request, v any, emptyOK bool) error {
	if r.ContentLength > maxActionBytes {
		return apiErrorf(http.StatusRequestEntityTooLarge, wire.CodeTooLarge, "body of %d bytes is over the limit of %d bytes", r.ContentLength, maxActionBytes)
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, maxActionBytes+1))
	if err != nil {
		return apiErrorf(http.StatusBadRequest, wire.CodeBadRequest, "reading the body: %v", err)
	}
	if len(data) > maxActionBytes {
		return apiErrorf(http.StatusRequestEntityTooLarge, wire.CodeTooLarge, "body over the limit of %d bytes", maxActionBytes)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		if emptyOK {
			return nil
		}
		return apiErrorf(http.StatusBadRequest, wire.CodeBadRequest, "empty body; send a JSON object")
	}
	if err := checkContentType(r.Header.Get("Content-Type")); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return apiErrorf(http.StatusBadRequest, wire.CodeBadRequest, "the body is not the JSON object expected: %s", clip.String(err.Error(), 2*quoteLen))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return apiErrorf(http.StatusBadRequest, wire.CodeBadRequest, "data after the JSON object")
	}
	return nil
}
