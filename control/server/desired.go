package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/berthhq/berth/internal/clip"

	"github.com/berthhq/berth/control/auth"
	"github.com/berthhq/berth/control/store"
	"github.com/berthhq/berth/control/wire"
)

// The long poll of GET /v1/agents/{id}/desired.
//
// A poll holds its connection and one goroutine while it waits, and
// nothing else of the server's: no slot, no buffer. The connection's
// deadlines are moved past the wait (the server's own are a minute), and a
// server shutting down answers every open poll 304 at once, with
// Connection: close, so that the agents ask again (another replica, or
// this one restarted) instead of holding the shutdown for minutes.
const (
	// DefaultPollsPerIdentity bounds the polls one identity has open: an
	// agent keeps one; a stolen token cannot hold thousands.
	DefaultPollsPerIdentity = 4
	// pollSlack is how much longer than its wait a poll's connection may
	// take, for the store's answer and the response to be written.
	pollSlack = 30 * time.Second
	// maxETagLen bounds the entity tags of If-None-Match looked at; a
	// longer one matches nothing.
	maxETagLen = 128
)

// getDesired is GET /v1/agents/{id}/desired: what the host should run,
// with its ETag; with If-None-Match it waits (?wait=, default
// wire.DefaultWait, at most wire.MaxWait) until the answer differs, and
// answers 304 when it has not by then.
func (s *Server) getDesired(w http.ResponseWriter, r *http.Request) error {
	ro, err := s.rollouts(r)
	if err != nil {
		return err
	}
	p, err := s.authenticate(w, r)
	if err != nil {
		return err
	}
	host, err := pathHost(r)
	if err != nil {
		return err
	}
	if err := s.allowDesired(r.Context(), p, host); err != nil {
		return err
	}
	tags := parseIfNoneMatch(r.Header.Values("If-None-Match"))
	wait, err := parseWait(r.URL.Query(), len(tags) > 0)
	if err != nil {
		return err
	}
	if len(tags) == 0 {
		d, etag, err := ro.Desired(r.Context(), host)
		if err != nil {
			return fmt.Errorf("desired state of %s: %w", host, err)
		}
		return writeDesired(w, d, etag)
	}
	return s.pollDesired(w, r, ro, p, host, tags, wait)
}

// allowDesired lets only host's own identity read its desired state: an
// agent token naming it, or the Entra identity bound to it (bound on
// first use, as reports are).
func (s *Server) allowDesired(ctx context.Context, p auth.Principal, host string) error {
	if p.Method != auth.MethodNone && p.Role != store.RoleAgent {
		return apiErrorf(http.StatusForbidden, wire.CodeForbidden, "an %s token cannot read a host's desired state; only the host's own identity can (GET /v1/hosts/%s shows the host)", p.Role, host)
	}
	return s.allowAs(ctx, p, host, "read the desired state of")
}

// pollDesired answers a conditional GET: at once when the answer is not
// one of tags, else when it changes, else 304 after wait.
func (s *Server) pollDesired(w http.ResponseWriter, r *http.Request, ro Rollouts, p auth.Principal, host string, tags []string, wait time.Duration) error {
	ctx := r.Context()
	have := tags[0]
	if len(tags) > 1 || have == "*" {
		// Several tags, or "any": the one to wait on is the current
		// answer's, if it is among them.
		d, etag, err := ro.Desired(ctx, host)
		if err != nil {
			return fmt.Errorf("desired state of %s: %w", host, err)
		}
		if !matchAny(tags, etag) {
			return writeDesired(w, d, etag)
		}
		have = etag
	}
	if wait <= 0 {
		d, etag, err := ro.Desired(ctx, host)
		if err != nil {
			return fmt.Errorf("desired state of %s: %w", host, err)
		}
		return s.answerPoll(w, d, etag, have)
	}
	id := identityOf(p)
	if !s.polls.enter(id) {
		return &apiError{status: http.StatusTooManyRequests, code: wire.CodeRateLimited, retryAfter: jitter(5, 30),
			msg: fmt.Sprintf("%s has %d long polls open already, the most one identity may; an agent needs one", id, s.polls.max)}
	}
	defer s.polls.leave(id)
	s.extendDeadlines(w, wait+pollSlack)
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(s.draining, cancel)
	defer stop()
	d, etag, err := ro.WaitDesired(pctx, host, have, wait)
	if err != nil {
		if s.draining.Err() != nil && ctx.Err() == nil {
			w.Header().Set("Connection", "close")
			return s.answerPoll(w, wire.Desired{}, have, have)
		}
		return fmt.Errorf("wait for the desired state of %s: %w", host, err)
	}
	return s.answerPoll(w, d, etag, have)
}

// answerPoll writes 304 when etag is the one the agent has, else d.
func (s *Server) answerPoll(w http.ResponseWriter, d wire.Desired, etag, have string) error {
	if etag != have {
		return writeDesired(w, d, etag)
	}
	h := w.Header()
	h.Set("ETag", quoteETag(etag))
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNotModified)
	return nil
}

// extendDeadlines lets the connection of a long poll live for d more: the
// server's read and write timeouts are a minute, and the read deadline
// also ends the wait (net/http cancels a request whose connection's
// background read fails).
func (s *Server) extendDeadlines(w http.ResponseWriter, d time.Duration) {
	rc := http.NewResponseController(w)
	at := time.Now().Add(d)
	for _, set := range []func(time.Time) error{rc.SetReadDeadline, rc.SetWriteDeadline} {
		if err := set(at); err != nil && !errors.Is(err, http.ErrNotSupported) {
			s.log.Debug("cannot extend a long poll's deadline", "request", requestID(w), "err", err)
		}
	}
}

// writeDesired writes d with its ETag.
func writeDesired(w http.ResponseWriter, d wire.Desired, etag string) error {
	if d.Rollouts == nil {
		d.Rollouts = []string{}
	}
	w.Header().Set("ETag", quoteETag(etag))
	return writeJSON(w, d)
}

func quoteETag(etag string) string { return `"` + etag + `"` }

// parseIfNoneMatch returns the entity tags of If-None-Match, unquoted,
// weak or strong alike (RFC 9110 compares them weakly here); "*" stays
// "*". Tags over maxETagLen are dropped: no answer of ours has one.
func parseIfNoneMatch(values []string) []string {
	var tags []string
	for _, v := range values {
		for t := range strings.SplitSeq(v, ",") {
			t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
			if len(t) >= 2 && t[0] == '"' && t[len(t)-1] == '"' {
				t = t[1 : len(t)-1]
			}
			if t == "" || len(t) > maxETagLen {
				continue
			}
			tags = append(tags, t)
		}
	}
	return tags
}

func matchAny(tags []string, etag string) bool {
	for _, t := range tags {
		if t == "*" || t == etag {
			return true
		}
	}
	return false
}

// parseWait reads the query of GET /v1/agents/{id}/desired: at most one
// wait, a Go duration from 0, clamped to wire.MaxWait. Without it a
// conditional GET waits wire.DefaultWait; wait=0 answers at once.
func parseWait(q url.Values, conditional bool) (time.Duration, error) {
	for k, vs := range q {
		if k != "wait" {
			return 0, apiErrorf(http.StatusBadRequest, wire.CodeBadRequest, "unknown query parameter %q; GET /v1/agents/{id}/desired takes wait", clip.String(k, quoteLen))
		}
		if len(vs) != 1 {
			return 0, apiErrorf(http.StatusBadRequest, wire.CodeBadRequest, "wait given %d times; give it once", len(vs))
		}
	}
	v, ok := q["wait"]
	if !ok {
		if conditional {
			return wire.DefaultWait, nil
		}
		return 0, nil
	}
	d, err := time.ParseDuration(v[0])
	if err != nil || d < 0 {
		return 0, apiErrorf(http.StatusBadRequest, wire.CodeBadRequest, "wait=%q: want a duration such as 60s or 5m (at most %s)", clip.String(v[0], quoteLen), wire.MaxWait)
	}
	return min(d, wire.MaxWait), nil
}
