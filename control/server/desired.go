package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
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
	// agent keeps one; a stolen token cannot hold thousands (see
	// pollSlots: a poll past the bound ends the oldest).
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
	conn := s.takeConn(w, r)
	if conn != nil {
		// The request's context ends with this handler; the taken poll
		// lives on until its answer.
		ctx = s.draining
	}
	pctx, cancel := context.WithCancel(ctx)
	slot := s.polls.enter(id, cancel)
	if conn != nil {
		setStatus(w, http.StatusSwitchingProtocols, 0)
		go s.waitTaken(pctx, conn, ro, takenPoll{id: id, slot: slot, end: cancel, host: host, have: have, wait: wait,
			rec: pollRecord{id: requestID(w), path: r.URL.Path}})
		return nil
	}
	defer cancel()
	defer s.polls.leave(id, slot)
	s.extendDeadlines(w, wait+pollSlack)
	stop := context.AfterFunc(s.draining, cancel)
	defer stop()
	d, etag, err := ro.WaitDesired(pctx, host, have, wait)
	if err != nil {
		// Ended by shutdown or by a newer poll of the same identity, not
		// by the client: nothing changed, as far as this poll knows.
		if pctx.Err() != nil && ctx.Err() == nil {
			if s.draining.Err() != nil {
				w.Header().Set("Connection", "close")
			}
			return s.answerPoll(w, wire.Desired{}, have, have)
		}
		return fmt.Errorf("wait for the desired state of %s: %w", host, err)
	}
	return s.answerPoll(w, d, etag, have)
}

// takeConn takes the connection of a long poll over HTTP/1 away from
// net/http (nil when it cannot: HTTP/2, HEAD, a test's recorder). The
// poll then waits in a goroutine of its own holding the connection and
// little else, while net/http's goroutines, its 10 KiB of buffers and the
// request are freed: most of a poll's memory. The price is the
// connection: the answer closes it, and the agent opens another for its
// next poll.
func (s *Server) takeConn(w http.ResponseWriter, r *http.Request) net.Conn {
	if r.Method != http.MethodGet || r.ProtoMajor != 1 {
		return nil
	}
	s.hijacked.Add(1)
	// A long poll's client sends nothing more before the answer; what
	// it may have pipelined goes with the connection.
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		s.hijacked.Done()
		return nil
	}
	return conn
}

// pollRecord is what a taken poll keeps of its request, for the log.
type pollRecord struct{ id, path string }

// takenPoll is a poll waiting on a taken connection.
type takenPoll struct {
	id         identity
	slot       *pollSlot
	end        context.CancelFunc
	host, have string
	wait       time.Duration
	rec        pollRecord
}

// waitTaken waits for the host's desired state to differ from what the
// agent has and answers on conn, which it closes. The server owns it: it
// counts in s.hijacked, and ctx ends with shutdown (or a newer poll of
// the same identity), which answers 304 at once.
func (s *Server) waitTaken(ctx context.Context, conn net.Conn, ro Rollouts, p takenPoll) {
	defer s.hijacked.Done()
	defer s.polls.leave(p.id, p.slot)
	defer p.end()
	defer conn.Close()
	d, etag, err := ro.WaitDesired(ctx, p.host, p.have, p.wait)
	switch {
	case err != nil && ctx.Err() != nil:
		s.writeRaw(conn, p.rec, http.StatusNotModified, p.have, nil)
	case err != nil:
		s.log.Error("request failed", "request", p.rec.id, "path", p.rec.path, "err", fmt.Errorf("wait for the desired state of %s: %w", p.host, err))
		s.writeRaw(conn, p.rec, http.StatusInternalServerError, "", errorBody(wire.CodeInternal, "internal error (request "+p.rec.id+"); the server log has the details"))
	case etag == p.have:
		s.writeRaw(conn, p.rec, http.StatusNotModified, etag, nil)
	default:
		if d.Rollouts == nil {
			d.Rollouts = []string{}
		}
		b, _ := json.Marshal(d) // strings and slices of strings always encode
		s.writeRaw(conn, p.rec, http.StatusOK, etag, append(b, '\n'))
	}
}

// setStatus tells the access log the status and size of an answer
// written around net/http.
func setStatus(w http.ResponseWriter, status int, n int64) {
	if sw, ok := w.(*statusWriter); ok {
		sw.status, sw.wroteHeader, sw.bytes = status, true, n
	}
}

// rawWriteTimeout bounds writing an answer on a taken connection.
const rawWriteTimeout = 10 * time.Second

// writeRaw writes an HTTP/1.1 answer on a taken connection (which is
// closed after it) and logs it as the access log would.
func (s *Server) writeRaw(conn net.Conn, rec pollRecord, status int, etag string, body []byte) {
	h := http.Header{}
	h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	h.Set("Cache-Control", "no-store")
	h.Set("Connection", "close")
	if etag != "" {
		h.Set("ETag", quoteETag(etag))
	}
	if body != nil {
		h.Set("Content-Type", "application/json")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Length", strconv.Itoa(len(body)))
	}
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "HTTP/1.1 %d %s\r\n", status, http.StatusText(status))
	_ = h.Write(&buf)
	buf.WriteString("\r\n")
	buf.Write(body)
	_ = conn.SetWriteDeadline(time.Now().Add(rawWriteTimeout))
	_, err := conn.Write(buf.Bytes())
	level := slog.LevelDebug
	if status >= 400 || err != nil {
		level = slog.LevelInfo
	}
	s.log.Log(context.Background(), level, "long poll answered", "request", rec.id, "path", rec.path, "status", status, "bytes", len(body), "err", err)
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
