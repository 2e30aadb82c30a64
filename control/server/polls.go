package server

import (
	"context"
	"slices"
	"sync"
)

// pollSlots are the long polls each identity has open. One identity
// holds at most max: a poll past that ends the identity's oldest at once
// (answered 304), rather than being refused. An agent whose earlier polls
// were cut off — a restart, a new network, a taken connection whose
// closing the server cannot see — is then never turned away, while a
// stolen token still cannot hold more than max connections.
type pollSlots struct {
	mu  sync.Mutex
	m   map[identity][]*pollSlot
	max int
}

// pollSlot is one open poll; end ends its wait.
type pollSlot struct{ end context.CancelFunc }

// enter records a poll of id whose wait end ends, ending id's oldest
// when id has max. The zero identity (--auth none) is not bounded.
func (p *pollSlots) enter(id identity, end context.CancelFunc) *pollSlot {
	s := &pollSlot{end: end}
	if id == (identity{}) {
		return s
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	list := append(p.m[id], s)
	if len(list) > p.max {
		list[0].end()
		list = slices.Delete(list, 0, 1)
	}
	p.m[id] = list
	return s
}

// leave forgets a poll that ended.
func (p *pollSlots) leave(id identity, s *pollSlot) {
	if id == (identity{}) {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	list := p.m[id]
	if i := slices.Index(list, s); i >= 0 {
		list = slices.Delete(list, i, i+1)
	}
	if len(list) == 0 {
		delete(p.m, id)
		return
	}
	p.m[id] = list
}
