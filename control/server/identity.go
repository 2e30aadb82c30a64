package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/berthhq/berth/control/auth"
	"github.com/berthhq/berth/control/store"
	"github.com/berthhq/berth/control/wire"
)

// bindingOf is the store binding an Entra principal writing as agent
// asks for: by its managed identity's resource when its token names one
// (so the binding follows the VM, and carries over from a binding made by
// object id before), else by its object id.
func bindingOf(p auth.Principal, agent string) store.Binding {
	byOID := "entra:" + p.Subject
	if p.Resource == "" {
		return store.Binding{Agent: agent, Subject: byOID}
	}
	return store.Binding{Agent: agent, Subject: "azure:" + p.Resource, ObjectID: p.Subject, Issued: p.Issued, Formerly: byOID}
}

// boundTTL is how long allowEntra trusts a binding it saw without asking
// the store again. A binding changes only when its resource is built
// again with a new identity (store.Binding); another replica's move is
// seen here within boundTTL.
const boundTTL = 5 * time.Minute

// boundEntry is a binding allowEntra saw: subject's identity objectID
// writes as agent.
type boundEntry struct {
	objectID, agent string
	seen            time.Time
}

// allowEntra checks that an Entra principal may act as agent, binding
// them on first use (see store.Binding); what is allowAs's.
func (s *Server) allowEntra(ctx context.Context, p auth.Principal, agent, what string) error {
	b := bindingOf(p, agent)
	now := time.Now()
	s.boundMu.RLock()
	e, ok := s.bound[b.Subject]
	s.boundMu.RUnlock()
	if ok && e.objectID == b.ObjectID && now.Sub(e.seen) < boundTTL {
		if e.agent == agent {
			return nil
		}
		return apiErrorf(http.StatusForbidden, wire.CodeForbidden, "token for host %s cannot %s host %s (identity %s is bound to host %s)", e.agent, what, agent, b.Subject, e.agent)
	}
	if err := s.st.Bind(ctx, b); err != nil {
		if errors.Is(err, store.ErrIdentityMismatch) {
			return apiErrorf(http.StatusForbidden, wire.CodeForbidden, "identity %s cannot %s host %s: %v", b.Subject, what, agent, err)
		}
		return fmt.Errorf("bind identity %s to host %s: %w", b.Subject, agent, err)
	}
	s.boundMu.Lock()
	if len(s.bound) >= maxBound {
		clear(s.bound)
	}
	s.bound[b.Subject] = boundEntry{objectID: b.ObjectID, agent: agent, seen: now}
	s.boundMu.Unlock()
	return nil
}
