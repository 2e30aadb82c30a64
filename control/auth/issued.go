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
// trusted for TokenCacheTTL without asking again: a revoked token keeps
// working for up to TokenCacheTTL on each replica that saw it. Unknown and
// revoked tokens are remembered only for TokenNegativeTTL, which spares
// the store an agent retrying a dead token in a loop. A verified Entra
// token is likewise remembered for TokenCacheTTL (never past its exp), so
// a signing key Entra withdraws stops it within that time. The caches hold
// SHA-256 sums, never tokens, and at most 65,536 entries each.
const (
	TokenCacheTTL    = 30 * time.Second
	TokenNegativeTTL = 5 * time.Second
)

const (
	// maxIssued bounds an issued token's length; store secrets are far
	// shorter, so a longer one is refused without a lookup.
	maxIssued = 256
	// maxCached bounds the cache: beyond it expired entries go first,
	// then arbitrary ones.
	maxCached = 1 << 16
)

// tokenCache authenticates issued tokens through a TokenLookup, caching
// the answers.
type tokenCache struct {
	lookup TokenLookup
	now    func() time.Time
	cache  *cache
}

func newTokenCache(l TokenLookup, now func() time.Time) *tokenCache {
	return &tokenCache{lookup: l, now: now, cache: newCache()}
}

func (c *tokenCache) authenticate(ctx context.Context, secret string) (Principal, error) {
	if len(secret) > maxIssued {
		return Principal{}, unauthenticated("issued token is %d bytes, longer than any berth-control issues", len(secret))
	}
	h := sha256.Sum256([]byte(secret))
	now := c.now()
	if e, ok := c.cache.get(h, now); ok {
		return e.p, e.err
	}
	tok, err := c.lookup.LookupToken(ctx, secret)
	var p Principal
	switch {
	case errors.Is(err, store.ErrNotFound):
		err = unauthenticated("unknown issued token")
	case errors.Is(err, store.ErrRevoked):
		err = unauthenticated("issued token was revoked")
	case err != nil:
		// Not cached: the store failing says nothing about the token.
		return Principal{}, fmt.Errorf("%w: %w: look up issued token: %w", ErrUnauthenticated, ErrUnavailable, err)
	case tok.Revoked != nil:
		err = unauthenticated("issued token was revoked at %s", tok.Revoked.UTC().Format(time.RFC3339))
	case tok.Subject == "":
		err = unauthenticated("issued token %s has no subject", claim(tok.ID))
	case tok.Role == store.RoleAgent:
		p = Principal{Role: store.RoleAgent, Subject: tok.Subject, Agent: tok.Subject, Method: MethodToken, TokenID: tok.ID}
	case tok.Role == store.RoleOperator:
		p = Principal{Role: store.RoleOperator, Subject: tok.Subject, Method: MethodToken, TokenID: tok.ID}
	default:
		err = unauthenticated("issued token %s has unknown role %s", claim(tok.ID), claim(string(tok.Role)))
	}
	ttl := TokenCacheTTL
	if err != nil {
		ttl = TokenNegativeTTL
	}
	c.cache.put(h, cacheEntry{p: p, err: err, until: now.Add(ttl)}, now)
	return p, err
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
