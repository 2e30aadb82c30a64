// Package desiredtest is a stand-in for the control endpoint's GET
// /v1/agents/{id}/desired, speaking the protocol as SPEC and control/wire
// describe it: the JSON body with a quoted ETag (a hash of the body),
// If-None-Match + ?wait= long polls that answer as soon as the state
// differs and 304 once the wait passes, and, when tokens are set, a bearer
// token per agent (401 for an unknown one, 403 for another host's state).
// Tests of the agent's side use it where the real server would bring the
// whole control plane; the end-to-end tests use the real one.
package desiredtest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/berthhq/berth/control/wire"
)

// Peer is the stand-in; serve it with httptest.NewServer.
type Peer struct {
	// Tokens maps a bearer token to the agent it may read; nil lets any
	// request read any agent's state (control.auth none).
	Tokens map[string]string
	// Other answers every request that is not a desired-state read (the
	// reports); nil answers them 404.
	Other http.Handler

	mu    sync.Mutex
	state map[string]wire.Desired
	gen   chan struct{} // closed and replaced on every change
	raw   func(w http.ResponseWriter, r *http.Request) bool
	waits []string
}

// New returns a Peer whose every agent has no opinion.
func New() *Peer {
	return &Peer{state: map[string]wire.Desired{}, gen: make(chan struct{})}
}

// Set changes agent's desired state and wakes its long polls.
func (p *Peer) Set(agent string, d wire.Desired) {
	if d.Rollouts == nil {
		d.Rollouts = []string{}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.state[agent] = d
	close(p.gen)
	p.gen = make(chan struct{})
}

// Misbehave makes f answer each desired-state read first; f returns false
// to let the Peer answer. nil restores the Peer.
func (p *Peer) Misbehave(f func(w http.ResponseWriter, r *http.Request) bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.raw = f
}

// Waits lists the ?wait= of every desired-state read so far ("" for none).
func (p *Peer) Waits() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.waits...)
}

// ServeHTTP answers GET /v1/agents/{id}/desired; the rest goes to Other.
func (p *Peer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	agent, ok := strings.CutSuffix(strings.TrimPrefix(r.URL.Path, "/v1/agents/"), "/desired")
	if !ok || r.Method != http.MethodGet || !strings.HasPrefix(r.URL.Path, "/v1/agents/") {
		if p.Other == nil {
			http.NotFound(w, r)
			return
		}
		p.Other.ServeHTTP(w, r)
		return
	}
	p.mu.Lock()
	p.waits = append(p.waits, r.URL.Query().Get("wait"))
	raw := p.raw
	who, known := p.Tokens[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")]
	p.mu.Unlock()
	if raw != nil && raw(w, r) {
		return
	}
	switch {
	case p.Tokens != nil && !known:
		WriteError(w, http.StatusUnauthorized, "unauthenticated", "no valid token")
		return
	case p.Tokens != nil && who != agent:
		WriteError(w, http.StatusForbidden, "forbidden", "another host's desired state")
		return
	}
	var wait time.Duration
	if s := r.URL.Query().Get("wait"); s != "" {
		var err error
		if wait, err = time.ParseDuration(s); err != nil || wait < 0 {
			WriteError(w, http.StatusBadRequest, "invalid", "wait is not a duration")
			return
		}
		wait = min(wait, wire.MaxWait)
	}
	p.answer(w, r, agent, wait)
}

// answer writes agent's state when it differs from If-None-Match, waiting
// up to wait for it to; else 304.
func (p *Peer) answer(w http.ResponseWriter, r *http.Request, agent string, wait time.Duration) {
	inm, _ := strconv.Unquote(r.Header.Get("If-None-Match"))
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		p.mu.Lock()
		d, ok := p.state[agent]
		gen := p.gen
		p.mu.Unlock()
		if !ok {
			d.Rollouts = []string{}
		}
		body, _ := json.Marshal(d)
		sum := sha256.Sum256(body)
		etag := hex.EncodeToString(sum[:16])
		if etag != inm {
			w.Header().Set("ETag", strconv.Quote(etag))
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			w.Write(body)
			return
		}
		select {
		case <-gen:
		case <-deadline.C:
			w.WriteHeader(http.StatusNotModified)
			return
		case <-r.Context().Done():
			return
		}
	}
}

// WriteError answers with the endpoint's JSON error shape.
func WriteError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(wire.Error{Code: code, Message: msg})
}
