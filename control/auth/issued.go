package auth

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/berthhq/berth/control/store"
)

// IssuedPrefix starts every token berth-control token issue prints.
const IssuedPrefix = "berth_"

// Cache lifetimes of issued-token lookups. The endpoint must serve
// thousands of requests a second, so a token found in the store is
// trusted without asking again: for IssuedCacheTTL when the store tells
// of revocations (RevocationFeed, as *store.Store does), else for
// TokenCacheTTL. IssuedCacheTTL is longer than a host's report interval
// (60 s by default), so that a host's every report does not cost a
// lookup; a revocation is still honoured within RevocationPoll on every
// replica, because each reads the tokens revoked since its last read that
// often and drops them. Should that read fail, cached tokens older than
// TokenCacheTTL are looked up again. Unknown and revoked tokens are
// remembered only for TokenNegativeTTL, which spares the store an agent
// retrying a dead token in a loop. A verified Entra token is remembered
// for TokenCacheTTL (never past its exp), so a signing key Entra
// withdraws stops it within that time. The caches hold SHA-256 sums,
// never tokens: at most 2,097,152 issued tokens (about 250 bytes each)
// and 65,536 others.
const (
	TokenCacheTTL    = 30 * time.Second
	IssuedCacheTTL   = 10 * time.Minute
	RevocationPoll   = 5 * time.Second
	TokenNegativeTTL = 5 * time.Second
)

// revocationSkew is how far back each read of revocations reaches beyond
// the previous one: a token's revocation time comes from the clock of the
// process that revoked it (berth-control token revoke, anywhere), which
// may lag this one's.
const revocationSkew = 10 * time.Minute

const (
	// maxIssued bounds an issued token's length; store secrets are far
	// shorter, so a longer one is refused without a lookup.
	maxIssued = 256
	// maxCached bounds the cache of failures and of Entra tokens: beyond
	// it expired entries go first, then arbitrary ones.
	maxCached = 1 << 16
	// maxValid bounds the cache of valid issued tokens, one a host: a
	// fleet of a million hosts fits in it twice.
	maxValid = 1 << 21
)

// RevocationFeed tells which issued tokens were revoked after a time
// (unix milliseconds); *store.Store satisfies it. A TokenLookup that is
// one too lets valid tokens be cached for IssuedCacheTTL.
type RevocationFeed interface {
	RevokedSince(ctx context.Context, sinceMs int64) ([]string, error)
}

// tokenCache authenticates issued tokens through a TokenLookup, caching
// the answers: valid tokens in valid, failures in failed.
type tokenCache struct {
	lookup TokenLookup
	feed   RevocationFeed // nil: valid tokens are cached for TokenCacheTTL
	now    func() time.Time
	failed *cache

	mu    sync.RWMutex
	valid map[[sha256.Size]byte]validEntry
	rev   revocations
}

// validEntry is a valid issued token in the cache.
type validEntry struct {
	id, subject string
	role        store.Role
	at, until   int64 // unix nanoseconds: looked up, trusted until
}

func (e validEntry) principal() Principal {
	p := Principal{Role: e.role, Subject: e.subject, Method: MethodToken, TokenID: e.id}
	if e.role == store.RoleAgent {
		p.Agent = e.subject
	}
	return p
}

func newTokenCache(l TokenLookup, now func() time.Time) *tokenCache {
	c := &tokenCache{lookup: l, now: now, failed: newCache(), valid: map[[sha256.Size]byte]validEntry{}}
	c.feed, _ = l.(RevocationFeed)
	c.rev.recent = map[string]struct{}{}
	return c
}

func (c *tokenCache) authenticate(ctx context.Context, secret string) (Principal, error) {
	if len(secret) > maxIssued {
		return Principal{}, unauthenticated("issued token is %d bytes, longer than any berth-control issues", len(secret))
	}
	h := sha256.Sum256([]byte(secret))
	now := c.now()
	c.poll(ctx, now)
	if e, ok := c.cached(h, now); ok {
		return e.principal(), nil
	}
	if e, ok := c.failed.get(h, now); ok {
		return e.p, e.err
	}
	tok, err := c.lookup.LookupToken(ctx, secret)
	p, err := issuedPrincipal(tok, err)
	if err != nil {
		if errors.Is(err, ErrUnavailable) {
			// Not cached: the store failing says nothing about the token.
			return Principal{}, err
		}
		c.failed.put(h, cacheEntry{err: err, until: now.Add(TokenNegativeTTL)}, now)
		return Principal{}, err
	}
	c.keep(h, validEntry{id: tok.ID, subject: p.Subject, role: p.Role, at: now.UnixNano()}, now)
	return p, nil
}

// issuedPrincipal is what a token the store returned (with its error)
// authenticates as.
func issuedPrincipal(tok store.Token, err error) (Principal, error) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return Principal{}, unauthenticated("unknown issued token")
	case errors.Is(err, store.ErrRevoked):
		return Principal{}, unauthenticated("issued token was revoked")
	case err != nil:
		return Principal{}, fmt.Errorf("%w: %w: look up issued token: %w", ErrUnauthenticated, ErrUnavailable, err)
	case tok.Revoked != nil:
		return Principal{}, unauthenticated("issued token was revoked at %s", tok.Revoked.UTC().Format(time.RFC3339))
	case tok.Subject == "":
		return Principal{}, unauthenticated("issued token %s has no subject", claim(tok.ID))
	case tok.Role == store.RoleAgent:
		return Principal{Role: store.RoleAgent, Subject: tok.Subject, Agent: tok.Subject, Method: MethodToken, TokenID: tok.ID}, nil
	case tok.Role == store.RoleOperator:
		return Principal{Role: store.RoleOperator, Subject: tok.Subject, Method: MethodToken, TokenID: tok.ID}, nil
	}
	return Principal{}, unauthenticated("issued token %s has unknown role %s", claim(tok.ID), claim(string(tok.Role)))
}

// cached returns the valid token h names if it may still be trusted at
// now: within its lifetime and, past TokenCacheTTL, only while the
// revocations are read (see trust).
func (c *tokenCache) cached(h [sha256.Size]byte, now time.Time) (validEntry, bool) {
	c.mu.RLock()
	e, ok := c.valid[h]
	fresh := c.rev.good
	c.mu.RUnlock()
	return e, ok && trust(e, now.UnixNano(), fresh)
}

// trust decides whether a cached valid token is trusted at now (unix
// nanoseconds), given when the revocations were last read completely
// (fresh; 0 never): until its deadline, and beyond TokenCacheTTL only if
// the last read of revocations is recent, so that no revocation can have
// been missed for longer than a lookup would miss it.
func trust(e validEntry, now, fresh int64) bool {
	switch {
	case now >= e.until:
		return false
	case now-e.at < int64(TokenCacheTTL):
		return true
	}
	return fresh != 0 && now-fresh < int64(2*RevocationPoll)
}

// keep caches a valid token, unless the revocations read meanwhile name
// it (the lookup may have read it just before its revocation).
func (c *tokenCache) keep(h [sha256.Size]byte, e validEntry, now time.Time) {
	ttl := TokenCacheTTL
	if c.feed != nil {
		ttl = IssuedCacheTTL
	}
	e.until = now.Add(ttl).UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, revoked := c.rev.recent[e.id]; revoked {
		return
	}
	if len(c.valid) >= maxValid {
		sweep(c.valid, now.UnixNano())
	}
	c.valid[h] = e
}

// sweep makes room in a full cache of valid tokens: expired entries go,
// then, if it is still full, an eighth in map order (as good as random).
func sweep(valid map[[sha256.Size]byte]validEntry, now int64) {
	for k, e := range valid {
		if now >= e.until {
			delete(valid, k)
		}
	}
	for k := range valid {
		if len(valid) < maxValid-maxValid/8 {
			break
		}
		delete(valid, k)
	}
}

// revocations is what the cache knows of revocations: recent holds the
// ids the last read returned (revoked within revocationSkew of it), so
// that a lookup racing a revocation does not cache the token and a read
// acts only on what is new to it; good is when the last complete read started
// (unix nanoseconds), next when the next is due; polling is held by the
// request that reads.
type revocations struct {
	recent  map[string]struct{}
	good    int64
	next    int64
	polling bool
}

// poll reads the revocations since the last read when RevocationPoll has
// passed, in the request that finds it due (the cache owns no
// goroutine), and drops the revoked tokens; other requests go on
// meanwhile.
func (c *tokenCache) poll(ctx context.Context, now time.Time) {
	if c.feed == nil {
		return
	}
	c.mu.Lock()
	due := !c.rev.polling && now.UnixNano() >= c.rev.next
	if due {
		c.rev.polling = true
	}
	since := c.rev.good
	c.mu.Unlock()
	if !due {
		return
	}
	if since == 0 {
		since = now.UnixNano()
	}
	// The request's own cancellation must not count as the store failing.
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), RevocationPoll)
	ids, err := c.feed.RevokedSince(pctx, time.Unix(0, since).Add(-revocationSkew).UnixMilli())
	cancel()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rev.polling, c.rev.next = false, now.Add(RevocationPoll).UnixNano()
	if err != nil {
		return
	}
	c.rev.good = now.UnixNano()
	c.drop(ids)
}

// drop makes ids, the latest read, the recent revocations, and removes
// from the cache the tokens among them that the read before did not
// name. Called with mu held.
func (c *tokenCache) drop(ids []string) {
	recent := make(map[string]struct{}, len(ids))
	fresh := map[string]bool{}
	for _, id := range ids {
		recent[id] = struct{}{}
		if _, seen := c.rev.recent[id]; !seen {
			fresh[id] = true
		}
	}
	c.rev.recent = recent
	if len(fresh) == 0 {
		return
	}
	for k, e := range c.valid {
		if fresh[e.id] {
			delete(c.valid, k)
		}
	}
}

// cache remembers what a token (by its SHA-256, so the secrets themselves
// are not kept) authenticated as, until a deadline.
type cache struct {
	mu      sync.RWMutex
	entries map[[sha256.Size]byte]cacheEntry
}

type cacheEntry struct {
	p     Principal
	err   error
	until time.Time
}

func newCache() *cache { return &cache{entries: map[[sha256.Size]byte]cacheEntry{}} }

// get returns the entry for h if it is still valid at now.
func (c *cache) get(h [sha256.Size]byte, now time.Time) (cacheEntry, bool) {
	c.mu.RLock()
	e, ok := c.entries[h]
	c.mu.RUnlock()
	return e, ok && now.Before(e.until)
}

func (c *cache) put(h [sha256.Size]byte, e cacheEntry, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= maxCached {
		for k, old := range c.entries {
			if !now.Before(old.until) {
				delete(c.entries, k)
			}
		}
		// Still full of live entries: drop an eighth, in map order (as
		// good as random), so the next inserts do not sweep again.
		for k := range c.entries {
			if len(c.entries) < maxCached-maxCached/8 {
				break
			}
			delete(c.entries, k)
		}
	}
	c.entries[h] = e
}
