package server

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/berthhq/berth/internal/clip"

	"github.com/berthhq/berth/control/auth"
	"github.com/berthhq/berth/control/store"
	"github.com/berthhq/berth/control/wire"
)

// requireOperator authenticates the request and refuses anyone but an
// operator (or anyone at all under --auth none).
func (s *Server) requireOperator(w http.ResponseWriter, r *http.Request) (auth.Principal, error) {
	p, err := s.authenticate(w, r)
	if err != nil {
		return p, err
	}
	if p.Method != auth.MethodNone && p.Role != store.RoleOperator {
		return p, apiErrorf(http.StatusForbidden, wire.CodeForbidden, "%s %s needs an operator token; an %s token cannot read the fleet (berth-control token issue --operator NAME)", r.Method, r.URL.Path, p.Role)
	}
	return p, nil
}

// getHosts is GET /v1/hosts.
func (s *Server) getHosts(w http.ResponseWriter, r *http.Request) error {
	if _, err := s.requireOperator(w, r); err != nil {
		return err
	}
	f, err := ParseHostFilter(r.URL.Query())
	if err != nil {
		return err
	}
	page, err := s.st.Hosts(r.Context(), f, s.now())
	if err != nil {
		return err
	}
	if page.Hosts == nil {
		page.Hosts = []wire.Host{}
	}
	return writeJSON(w, page)
}

// getHost is GET /v1/hosts/{id}.
func (s *Server) getHost(w http.ResponseWriter, r *http.Request) error {
	if _, err := s.requireOperator(w, r); err != nil {
		return err
	}
	id := r.PathValue("id")
	q := r.URL.Query()
	for k := range q {
		if k != "history" {
			return apiErrorf(http.StatusBadRequest, wire.CodeBadRequest, "unknown query parameter %q; GET /v1/hosts/{id} takes history", clip.String(k, quoteLen))
		}
	}
	n := DefaultHistory
	if v := q.Get("history"); v != "" {
		h, err := strconv.Atoi(v)
		if err != nil || h < 0 {
			return apiErrorf(http.StatusBadRequest, wire.CodeBadRequest, "history=%q: want a whole number from 0 to %d", clip.String(v, quoteLen), MaxHistory)
		}
		if h > MaxHistory {
			return apiErrorf(http.StatusBadRequest, wire.CodeBadRequest, "history=%d is over the maximum of %d", h, MaxHistory)
		}
		n = h
	}
	d, err := s.st.Host(r.Context(), id, s.now(), n)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return apiErrorf(http.StatusNotFound, wire.CodeNotFound, "no host %q: it has never reported (check the id with GET /v1/hosts)", clip.String(id, quoteLen))
		}
		return fmt.Errorf("read host %s: %w", id, err)
	}
	if d.History == nil {
		d.History = []wire.HealthPoint{}
	}
	if d.Events == nil {
		d.Events = []wire.EventRecord{}
	}
	return writeJSON(w, d)
}

// deleteHost is DELETE /v1/hosts/{id}[?dropHistory=true]: forget the
// host, so that its next records are taken whatever their numbers (an
// agent whose numbering went back, a host wedged by a stolen token), and
// drop its heartbeats and events when asked.
func (s *Server) deleteHost(w http.ResponseWriter, r *http.Request) error {
	p, err := s.requireOperator(w, r)
	if err != nil {
		return err
	}
	id := r.PathValue("id")
	drop, err := parseDropHistory(r.URL.Query())
	if err != nil {
		return err
	}
	f, err := s.st.Forget(r.Context(), id, drop)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return apiErrorf(http.StatusNotFound, wire.CodeNotFound, "no host %q to forget: it has no record here (check the id with GET /v1/hosts)", clip.String(id, quoteLen))
		}
		return fmt.Errorf("forget host %s: %w", id, err)
	}
	s.log.Info("host forgotten", "request", requestID(w), "host", id, "by", p.Subject, "history_dropped", drop,
		"heartbeats", f.Heartbeats, "events", f.Events)
	return writeJSON(w, f)
}

// parseDropHistory reads the query of DELETE /v1/hosts/{id}: at most one
// dropHistory, true or false.
func parseDropHistory(q url.Values) (bool, error) {
	for k, vs := range q {
		if k != "dropHistory" {
			return false, apiErrorf(http.StatusBadRequest, wire.CodeBadRequest, "unknown query parameter %q; DELETE /v1/hosts/{id} takes dropHistory", clip.String(k, quoteLen))
		}
		if len(vs) != 1 {
			return false, apiErrorf(http.StatusBadRequest, wire.CodeBadRequest, "dropHistory given %d times; give it once", len(vs))
		}
	}
	switch v := q.Get("dropHistory"); v {
	case "", "false":
		return false, nil
	case "true":
		return true, nil
	default:
		return false, apiErrorf(http.StatusBadRequest, wire.CodeBadRequest, "dropHistory=%q: want true or false", clip.String(v, quoteLen))
	}
}

// getCounts is GET /v1/counts.
func (s *Server) getCounts(w http.ResponseWriter, r *http.Request) error {
	if _, err := s.requireOperator(w, r); err != nil {
		return err
	}
	if len(r.URL.RawQuery) > 0 {
		return apiErrorf(http.StatusBadRequest, wire.CodeBadRequest, "GET /v1/counts takes no query parameters")
	}
	c, err := s.st.Counts(r.Context(), s.now())
	if err != nil {
		return fmt.Errorf("count hosts: %w", err)
	}
	return writeJSON(w, c)
}

// getHealthz is GET /healthz: 200 while the store answers, 503 when it
// does not. It needs no token, so that a load balancer can probe it, and
// says nothing about the fleet.
func (s *Server) getHealthz(w http.ResponseWriter, r *http.Request) error {
	if err := s.st.Ping(r.Context()); err != nil {
		s.log.Warn("health probe: the store does not answer", "err", err)
		return &apiError{status: http.StatusServiceUnavailable, code: wire.CodeUnavailable, msg: "the store does not answer", retryAfter: 5}
	}
	return writeJSON(w, healthz{Status: "ok"})
}

type healthz struct {
	Status string `json:"status"`
}

// Query parameters of GET /v1/hosts.
var hostParams = []string{"label", "state", "engineVersion", "agentVersion", "sort", "limit", "cursor"}

// hostParamAliases maps other spellings of GET /v1/hosts's parameters to
// theirs.
var hostParamAliases = map[string]string{
	"engine": "engineVersion", "engine_version": "engineVersion", "engine-version": "engineVersion",
	"agent": "agentVersion", "agent_version": "agentVersion", "agent-version": "agentVersion",
	"labels": "label",
}

// ParseHostFilter reads the query of GET /v1/hosts: label=KEY=VALUE
// (repeatable; all must match), state, engineVersion, agentVersion, sort,
// limit and cursor. Unknown parameters, a label without "=", a repeated
// single-valued parameter and a limit that is not a number from 1 to
// wire.MaxLimit are errors answered 400; the store checks the rest.
func ParseHostFilter(q url.Values) (wire.HostFilter, error) {
	var f wire.HostFilter
	// The web page's short names and the snake and kebab spellings a
	// script might guess are the same filters.
	canon := url.Values{}
	for k, vs := range q {
		if c, ok := hostParamAliases[k]; ok {
			k = c
		}
		canon[k] = append(canon[k], vs...)
	}
	for k, vs := range canon {
		switch k {
		case "label":
			for _, v := range vs {
				key, val, ok := strings.Cut(v, "=")
				if !ok || key == "" {
					return f, apiErrorf(http.StatusBadRequest, wire.CodeBadRequest, "label=%q: want label=KEY=VALUE", clip.String(v, quoteLen))
				}
				if f.Labels == nil {
					f.Labels = map[string]string{}
				}
				if old, dup := f.Labels[key]; dup && old != val {
					return f, apiErrorf(http.StatusBadRequest, wire.CodeBadRequest, "label %q given twice with different values; no host can match both", clip.String(key, quoteLen))
				}
				f.Labels[key] = val
			}
			continue
		case "state", "engineVersion", "agentVersion", "sort", "limit", "cursor":
		default:
			return f, apiErrorf(http.StatusBadRequest, wire.CodeBadRequest, "unknown query parameter %q; GET /v1/hosts takes %s", clip.String(k, quoteLen), strings.Join(hostParams, ", "))
		}
		if len(vs) > 1 {
			return f, apiErrorf(http.StatusBadRequest, wire.CodeBadRequest, "%s given %d times; give it once", k, len(vs))
		}
		v := vs[0]
		switch k {
		case "state":
			// Operators type states in any case; the store's are
			// capitalised.
			f.State = v
			for _, st := range []string{"Healthy", "Degraded", "Unhealthy", "Initializing", wire.StateStale} {
				if strings.EqualFold(v, st) {
					f.State = st
				}
			}
		case "engineVersion":
			f.EngineVersion = v
		case "agentVersion":
			f.AgentVersion = v
		case "sort":
			f.Sort = v
		case "cursor":
			f.Cursor = v
		case "limit":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > wire.MaxLimit {
				return f, apiErrorf(http.StatusBadRequest, wire.CodeBadRequest, "limit=%q: want a whole number from 1 to %d", clip.String(v, quoteLen), wire.MaxLimit)
			}
			f.Limit = n
		}
	}
	return f, nil
}
