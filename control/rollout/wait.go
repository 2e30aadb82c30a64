package rollout

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/berthhq/berth/control/wire"
)

// Desired state and its long polls.
//
// A long poll registers a waiter for its host. Whatever changes a host's
// desired state (a step, an operator's action, a pin) records the host in
// the store's change feed in the same transaction; every replica polls
// the feed every pollEvery, computes the new desired state of the changed
// hosts that have waiters, in batches, and hands each waiter its answer.
// The replica that made the change does the same at once, without
// waiting for its poll.

// pollEvery is how often a replica reads the change feed.
const pollEvery = 250 * time.Millisecond

// keepChanges is how long change records are kept: far longer than a
// replica takes between two polls, even a slow one.
const keepChanges = 10 * time.Minute

// deliverBatch bounds the hosts whose desired state one query computes.
const deliverBatch = 5000

type answer struct {
	d    wire.Desired
	etag string
}

type waiter struct {
	ch chan answer // buffered 1: the newest answer replaces an unread one
}

type waiters struct {
	mu sync.Mutex
	m  map[string]map[*waiter]struct{}
}

func (ws *waiters) add(host string) *waiter {
	w := &waiter{ch: make(chan answer, 1)}
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.m[host] == nil {
		ws.m[host] = map[*waiter]struct{}{}
	}
	ws.m[host][w] = struct{}{}
	return w
}

func (ws *waiters) remove(host string, w *waiter) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	delete(ws.m[host], w)
	if len(ws.m[host]) == 0 {
		delete(ws.m, host)
	}
}

// waiting returns which of hosts have waiters (all that have, for nil).
func (ws *waiters) waiting(hosts []string) []string {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if hosts == nil {
		return slices.Collect(maps.Keys(ws.m))
	}
	var out []string
	for _, h := range hosts {
		if ws.m[h] != nil {
			out = append(out, h)
		}
	}
	return slices.Compact(slices.Sorted(slices.Values(out)))
}

func (ws *waiters) send(host string, a answer) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	for w := range ws.m[host] {
		select {
		case <-w.ch:
		default:
		}
		w.ch <- a
	}
}

// Desired returns host's desired state and its ETag. A host the store
// does not know has no opinion on anything.
func (s *Service) Desired(ctx context.Context, host string) (wire.Desired, string, error) {
	ins, err := s.st.DesiredInputs(ctx, []string{host})
	if err != nil {
		return wire.Desired{}, "", fmt.Errorf("desired state of %s: %w", host, err)
	}
	d := computeDesired(ins[host])
	return d, etagOf(d), nil
}

// WaitDesired returns host's desired state at once when its ETag is not
// etag; else when it changes (on any replica), or when wait passes (then
// the unchanged answer) or ctx ends.
func (s *Service) WaitDesired(ctx context.Context, host, etag string, wait time.Duration) (wire.Desired, string, error) {
	// Registered before the first read: a change between the two is then
	// delivered, not lost.
	w := s.waiters.add(host)
	defer s.waiters.remove(host, w)
	d, tag, err := s.Desired(ctx, host)
	if err != nil || tag != etag {
		return d, tag, err
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case a := <-w.ch:
			if a.etag != etag {
				return a.d, a.etag, nil
			}
		case <-timer.C:
			return d, tag, nil
		case <-ctx.Done():
			return d, tag, ctx.Err()
		}
	}
}

// deliver computes the desired state of those of hosts that have waiters
// (every waiting host, for nil) and hands it to them.
func (s *Service) deliver(ctx context.Context, hosts []string) {
	if hosts != nil && len(hosts) == 0 {
		return
	}
	todo := s.waiters.waiting(hosts)
	for len(todo) > 0 {
		n := min(len(todo), deliverBatch)
		ins, err := s.st.DesiredInputs(ctx, todo[:n])
		if err != nil {
			s.log.Warn("desired state not delivered to long polls; they get it at their next poll", "hosts", len(todo), "err", err)
			return
		}
		for _, h := range todo[:n] {
			d := computeDesired(ins[h])
			s.waiters.send(h, answer{d: d, etag: etagOf(d)})
		}
		todo = todo[n:]
	}
}

// watch reads the change feed every pollEvery and delivers the changes
// until ctx ends; it prunes old change records every minute.
func (s *Service) watch(ctx context.Context) error {
	gen, err := s.st.DesiredGen(ctx)
	for err != nil {
		s.log.Warn("desired-state change feed unreadable; retrying", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
		gen, err = s.st.DesiredGen(ctx)
	}
	poll := time.NewTicker(pollEvery)
	defer poll.Stop()
	prune := time.NewTicker(time.Minute)
	defer prune.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-prune.C:
			if _, err := s.st.PruneDesiredChanges(ctx, s.now().Add(-keepChanges)); err != nil && ctx.Err() == nil {
				s.log.Warn("old desired-state changes not pruned", "err", err)
			}
		case <-poll.C:
			hosts, next, complete, err := s.st.DesiredChanges(ctx, gen)
			if err != nil {
				if ctx.Err() == nil {
					s.log.Warn("desired-state change feed unreadable", "err", err)
				}
				continue
			}
			if !complete {
				s.log.Warn("desired-state changes were pruned before this replica read them; answering every long poll again", "from", gen, "to", next)
				hosts = nil
			}
			if next != gen {
				gen = next
				s.deliver(ctx, hosts)
			}
		}
	}
}
