package store

import (
	"slices"
	"strings"
	"sync"
)

// memberCache keeps each active rollout's members as this store last
// read or wrote them, with the revision of the rollout row they go
// with. Every write of a rollout's members moves its revision (they are
// written only by CreateRollout and EvalRollout, with the row), so an
// entry whose revision is the row's is exact: a step of a rollout of
// 100,000 hosts then reads only its hosts' facts, not its members again.
// An entry is replaced only after its transaction committed; any other
// replica's write moves the revision and the next step reads afresh.
type memberCache struct {
	mu sync.Mutex
	m  map[string]cachedMembers
}

type cachedMembers struct {
	rev     int64
	members []Member // in hash order
}

// get returns a copy of rollout id's members at revision rev, if cached.
func (c *memberCache) get(id string, rev int64) ([]MemberFacts, bool) {
	c.mu.Lock()
	e, ok := c.m[id]
	c.mu.Unlock()
	if !ok || e.rev != rev {
		return nil, false
	}
	out := make([]MemberFacts, len(e.members))
	for i, m := range e.members {
		out[i].Member = m
	}
	return out, true
}

// put caches members (read at revision rev) for rollout id.
func (c *memberCache) put(id string, rev int64, members []MemberFacts) {
	ms := make([]Member, len(members))
	for i, m := range members {
		ms[i] = m.Member
	}
	c.store(id, cachedMembers{rev: rev, members: ms})
}

// apply moves rollout id's entry from revision rev to rev+1 with the
// members changed written over it, once that write committed; the entry
// is dropped when it was not at rev, or when the rollout is no longer
// active (no step reads it again).
func (c *memberCache) apply(id string, rev int64, changed []Member, active bool) {
	c.mu.Lock()
	e, ok := c.m[id]
	c.mu.Unlock()
	if !ok || e.rev != rev || !active {
		c.drop(id)
		return
	}
	at := make(map[string]int, len(e.members))
	for i, m := range e.members {
		at[m.Hash] = i
	}
	ms := slices.Clone(e.members)
	added := false
	for _, m := range changed {
		if i, ok := at[m.Hash]; ok {
			ms[i] = m
			continue
		}
		ms, added = append(ms, m), true
	}
	if added {
		slices.SortFunc(ms, func(a, b Member) int { return strings.Compare(a.Hash, b.Hash) })
	}
	c.store(id, cachedMembers{rev: rev + 1, members: ms})
}

func (c *memberCache) store(id string, e cachedMembers) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]cachedMembers{}
	}
	c.m[id] = e
}

func (c *memberCache) drop(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, id)
}
