package auth

import (
	"testing"
	"time"
)

// TestTrust: when a cached valid issued token may be used without a
// lookup.
func TestTrust(t *testing.T) {
	const at = int64(1_000 * time.Hour)
	e := validEntry{at: at, until: at + int64(IssuedCacheTTL)}
	s := int64(time.Second)
	for _, tt := range []struct {
		name       string
		now, fresh int64
		want       bool
	}{
		{"just looked up, revocations never read", at, 0, true},
		{"within TokenCacheTTL, revocations never read", at + int64(TokenCacheTTL) - s, 0, true},
		{"past TokenCacheTTL, revocations never read", at + int64(TokenCacheTTL), 0, false},
		{"past TokenCacheTTL, revocations read just now", at + 5*60*s, at + 5*60*s, true},
		{"past TokenCacheTTL, revocations read one poll ago", at + 5*60*s, at + 5*60*s - int64(RevocationPoll), true},
		{"past TokenCacheTTL, revocations last read two polls ago", at + 5*60*s, at + 5*60*s - int64(2*RevocationPoll), false},
		{"at the end of its life, revocations read", at + int64(IssuedCacheTTL), at + int64(IssuedCacheTTL), false},
	} {
		if got := trust(e, tt.now, tt.fresh); got != tt.want {
			t.Errorf("%s: trust = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestDrop: a read of revocations drops the tokens it names first, and
// keeps naming them to keep, which then refuses to cache them.
func TestDrop(t *testing.T) {
	c := newTokenCache(nil, time.Now)
	now := time.Now()
	for i, id := range []string{"a", "b", "c"} {
		c.keep([32]byte{byte(i)}, validEntry{id: id}, now)
	}
	c.drop([]string{"b", "x"})
	if _, ok := c.valid[[32]byte{1}]; ok || len(c.valid) != 2 {
		t.Fatalf("after revoking b: %v, want a and c", c.valid)
	}
	c.keep([32]byte{9}, validEntry{id: "b"}, now)
	if _, ok := c.valid[[32]byte{9}]; ok {
		t.Errorf("b cached again while the revocations name it")
	}
	c.drop(nil)
	c.keep([32]byte{9}, validEntry{id: "b"}, now)
	if _, ok := c.valid[[32]byte{9}]; !ok {
		t.Errorf("b not cached after the revocations stopped naming it")
	}
}
