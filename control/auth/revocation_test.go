package auth_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/berthhq/berth/control/auth"
	"github.com/berthhq/berth/control/store"
)

// countingStore is a real store that counts the authenticator's lookups
// and reads of revocations, and can fail the reads.
type countingStore struct {
	*store.Store
	mu             sync.Mutex
	lookups, polls int
	failPolls      bool
}

func (s *countingStore) LookupToken(ctx context.Context, secret string) (store.Token, error) {
	s.mu.Lock()
	s.lookups++
	s.mu.Unlock()
	return s.Store.LookupToken(ctx, secret)
}

func (s *countingStore) RevokedSince(ctx context.Context, sinceMs int64) ([]string, error) {
	s.mu.Lock()
	s.polls++
	fail := s.failPolls
	s.mu.Unlock()
	if fail {
		return nil, errors.New("connection refused")
	}
	return s.Store.RevokedSince(ctx, sinceMs)
}

func (s *countingStore) counts() (lookups, polls int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lookups, s.polls
}

// TestIssuedTokenRevocation: a valid issued token is trusted from the
// cache for longer than a host's report interval (a fleet's every report
// would otherwise cost a lookup), yet its revocation is honoured within
// RevocationPoll, and a cache that cannot read revocations falls back to
// looking tokens up every TokenCacheTTL.
func TestIssuedTokenRevocation(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, "sqlite://"+filepath.Join(t.TempDir(), "control.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cs := &countingStore{Store: st}
	clk := newClock()
	a, err := auth.New(ctx, auth.Options{Methods: []auth.Method{auth.MethodToken}, Tokens: cs, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	tok, secret, err := st.IssueToken(ctx, store.RoleAgent, "host-1", clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	_, other, err := st.IssueToken(ctx, store.RoleAgent, "host-2", clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	authOK := func(secret, when string) {
		t.Helper()
		p, err := a.Authenticate(ctx, "Bearer "+secret)
		if err != nil || p.Role != store.RoleAgent {
			t.Fatalf("%s: %+v, %v; want an agent", when, p, err)
		}
	}
	wantLookups := func(want int, when string) {
		t.Helper()
		if got, _ := cs.counts(); got != want {
			t.Fatalf("%s: %d lookups, want %d", when, got, want)
		}
	}

	authOK(secret, "first report")
	authOK(other, "first report")
	wantLookups(2, "first reports")
	// A host at the default 60 s interval, reporting for a while: no
	// lookups, a read of revocations every RevocationPoll at most.
	for range 8 {
		clk.Add(time.Minute)
		authOK(secret, "a minute later")
		authOK(other, "a minute later")
	}
	wantLookups(2, "eight minutes of reports")
	if _, polls := cs.counts(); polls < 8 || polls > 9 {
		t.Errorf("%d reads of revocations over 8 minutes of two hosts' reports, want 8 or 9 (one per poll that is due)", polls)
	}

	// Revoked: refused once RevocationPoll has passed, at the latest.
	if err := st.RevokeToken(ctx, tok.ID, clk.Now()); err != nil {
		t.Fatal(err)
	}
	clk.Add(auth.RevocationPoll)
	_, err = a.Authenticate(ctx, "Bearer "+secret)
	checkErr(t, err, "revoked")
	wantLookups(3, "after the revocation")
	authOK(other, "the other host after the revocation")
	wantLookups(3, "the other host after the revocation")

	// Past the cache's lifetime every token is looked up again.
	clk.Add(auth.IssuedCacheTTL)
	authOK(other, "past the cache's lifetime")
	wantLookups(4, "past the cache's lifetime")

	// Revocations unreadable: a cached token is trusted only for
	// TokenCacheTTL, then looked up again.
	cs.mu.Lock()
	cs.failPolls = true
	cs.mu.Unlock()
	clk.Add(auth.TokenCacheTTL - time.Second)
	authOK(other, "revocations unreadable, within TokenCacheTTL")
	wantLookups(4, "revocations unreadable, within TokenCacheTTL")
	clk.Add(2 * time.Second)
	authOK(other, "revocations unreadable, past TokenCacheTTL")
	wantLookups(5, "revocations unreadable, past TokenCacheTTL")
}
