package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"

	"github.com/berthhq/berth/control/auth"
	"github.com/berthhq/berth/control/rollout"
	"github.com/berthhq/berth/control/store"
	"github.com/berthhq/berth/control/wire"
)

// apiError is an error with the status and code it is answered with.
type apiError struct {
	status int
	code   string
	msg    string
	// retryAfter, in seconds, is sent as Retry-After when above 0.
	retryAfter int
}

func (e *apiError) Error() string { return e.code + ": " + e.msg }

func apiErrorf(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, msg: fmt.Sprintf(format, args...)}
}

// answer writes err as a wire.Error with the status its kind calls for.
// Errors the server does not know are 500s whose cause goes to the log,
// not to the client.
func (s *Server) answer(w http.ResponseWriter, r *http.Request, err error) {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
	case errors.Is(err, auth.ErrForbidden):
		// A genuine token that grants nothing here: another token will
		// not be any better, so not 401.
		ae = &apiError{status: http.StatusForbidden, code: wire.CodeForbidden, msg: err.Error()}
	case errors.Is(err, auth.ErrUnauthenticated):
		ae = &apiError{status: http.StatusUnauthorized, code: wire.CodeUnauthorized, msg: err.Error()}
	case errors.Is(err, store.ErrIdentityMismatch):
		ae = &apiError{status: http.StatusForbidden, code: wire.CodeForbidden, msg: err.Error()}
	case errors.Is(err, store.ErrSeqBackwards):
		ae = &apiError{status: http.StatusConflict, code: wire.CodeConflict, msg: err.Error() + "; an agent whose numbering restarted needs a new agent id or a cleared host record"}
	case errors.Is(err, store.ErrBadFilter):
		ae = &apiError{status: http.StatusBadRequest, code: wire.CodeBadRequest, msg: err.Error()}
	case errors.Is(err, store.ErrNotFound):
		ae = &apiError{status: http.StatusNotFound, code: wire.CodeNotFound, msg: err.Error()}
	case errors.Is(err, wire.ErrTooLarge):
		ae = &apiError{status: http.StatusRequestEntityTooLarge, code: wire.CodeTooLarge, msg: err.Error()}
	case errors.Is(err, wire.ErrInvalidSpec):
		ae = &apiError{status: http.StatusBadRequest, code: wire.CodeBadRequest, msg: err.Error()}
	case errors.Is(err, rollout.ErrConflict):
		ae = &apiError{status: http.StatusConflict, code: wire.CodeConflict, msg: err.Error()}
	case errors.Is(err, wire.ErrInvalid):
		ae = &apiError{status: http.StatusBadRequest, code: wire.CodeBadRequest, msg: err.Error()}
	case r.Context().Err() != nil:
		// The client went away; nobody reads the answer, but the access
		// log should not call it a server failure.
		ae = &apiError{status: 499, code: "client_closed", msg: "client closed the request"}
		s.log.Debug("client closed the request", "request", requestID(w), "path", r.URL.Path)
	case errors.Is(err, context.DeadlineExceeded):
		ae = &apiError{status: http.StatusServiceUnavailable, code: wire.CodeUnavailable, msg: "the store did not answer in time; try again later", retryAfter: jitter(5, 30)}
		s.log.Warn("store timed out", "request", requestID(w), "path", r.URL.Path, "err", err)
	default:
		id := requestID(w)
		s.log.Error("request failed", "request", id, "method", r.Method, "path", r.URL.Path, "err", err)
		ae = &apiError{status: http.StatusInternalServerError, code: wire.CodeInternal, msg: "internal error (request " + id + "); the server log has the details"}
	}
	if ae.status == http.StatusUnauthorized {
		// RFC 6750: a missing token gets the bare challenge, a bad one
		// says so.
		challenge := `Bearer realm="berth-control"`
		if r.Header.Get("Authorization") != "" {
			challenge += `, error="invalid_token"`
		}
		w.Header().Set("WWW-Authenticate", challenge)
	}
	if ae.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(ae.retryAfter))
	}
	writeError(w, ae.status, ae.code, ae.msg)
}

func requestID(w http.ResponseWriter) string {
	if sw, ok := w.(*statusWriter); ok {
		return sw.id
	}
	return ""
}

// jitter is a Retry-After between lo and hi seconds, so that thousands of
// agents told to come back do not all come back in the same second.
func jitter(lo, hi int) int { return lo + rand.IntN(hi-lo+1) }

// writeError writes the one error shape.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Del("Content-Encoding")
	w.WriteHeader(status)
	_, _ = w.Write(errorBody(code, msg))
}

// errorBody is the one error shape's JSON, with its newline.
func errorBody(code, msg string) []byte {
	b, err := json.Marshal(wire.Error{Code: code, Message: msg})
	if err != nil {
		b = []byte(`{"code":"internal","message":"cannot encode the error"}`)
	}
	return append(b, '\n')
}

// writeJSON writes v with status 200.
func writeJSON(w http.ResponseWriter, v any) error { return writeJSONStatus(w, http.StatusOK, v) }

// writeJSONStatus writes v with status.
func writeJSONStatus(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode the answer: %w", err)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
	return nil
}

// quoteLen is how much of a hostile value a message quotes.
const quoteLen = 128
