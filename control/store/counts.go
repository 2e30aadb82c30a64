package store

import (
	"context"
	"maps"
	"sync"
	"time"

	"github.com/berthhq/berth/control/wire"
)

// countsCache keeps the last Counts read from the database. Counting
// reads every host (the Stale ones are known only by reading their last
// report against the clock), which at a million hosts takes a second or
// more; a dashboard asks for it every few seconds. So Counts answers from
// the copy while it is younger than Options.CountsMaxAge, and from the
// older copy while one goroutine reads a new one in the background: no
// caller waits for a count but the first.
type countsCache struct {
	mu         sync.Mutex
	c          wire.Counts
	at         time.Time // when c was read; zero before the first
	refreshing bool
	closed     bool
}

// get answers from the copy, refreshing it as above.
func (cc *countsCache) get(ctx context.Context, s *Store, now time.Time) (wire.Counts, error) {
	cc.mu.Lock()
	if cc.at.IsZero() || cc.closed {
		cc.mu.Unlock()
		c, err := s.countHosts(ctx, now)
		if err == nil {
			cc.put(c, time.Now())
		}
		return c, err
	}
	c := cloneCounts(cc.c)
	if time.Since(cc.at) >= s.countsMaxAge && !cc.refreshing {
		cc.refreshing = true
		s.bg.Add(1)
		go cc.refresh(s)
	}
	cc.mu.Unlock()
	return c, nil
}

// refresh reads the counts again for the copy; the store's background
// context ends it when the store closes.
func (cc *countsCache) refresh(s *Store) {
	defer s.bg.Done()
	ctx, cancel := context.WithTimeout(s.bgCtx, groupTimeout)
	defer cancel()
	c, err := s.countHosts(ctx, time.Now())
	if err != nil {
		s.log.Warn("counting the hosts failed; the counts stay as they were", "err", err)
	} else {
		cc.put(c, time.Now())
	}
	cc.mu.Lock()
	cc.refreshing = false
	cc.mu.Unlock()
}

func (cc *countsCache) put(c wire.Counts, at time.Time) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if at.After(cc.at) {
		cc.c, cc.at = cloneCounts(c), at
	}
}

// close stops new refreshes, before the store waits for its goroutines.
func (cc *countsCache) close() {
	cc.mu.Lock()
	cc.closed = true
	cc.mu.Unlock()
}

// cloneCounts copies c's maps, so that no caller shares the copy's.
func cloneCounts(c wire.Counts) wire.Counts {
	c.ByState, c.ByEngineVersion, c.ByAgentVersion = maps.Clone(c.ByState), maps.Clone(c.ByEngineVersion), maps.Clone(c.ByAgentVersion)
	return c
}
