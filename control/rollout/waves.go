package rollout

import (
	"crypto/sha256"
	"encoding/hex"
	"math"
	"slices"
	"strings"

	"github.com/berthhq/berth/control/store"
	"github.com/berthhq/berth/control/wire"
)

// orderHash is the hex SHA-256 of the rollout id, a NUL and the host id:
// the stable order in which a rollout's hosts fill its waves. Another
// rollout orders the same hosts otherwise, so that the same few hosts
// are not always the first to take a new version.
func orderHash(rollout, host string) string {
	sum := sha256.Sum256([]byte(rollout + "\x00" + host))
	return hex.EncodeToString(sum[:])
}

// cumulative returns how many of n hosts waves 0..k hold together, for
// each k: ceil(n × p_k / 100). The product is computed in floating point,
// so a value a hair above a whole number (40 × 10 / 100 may come out as
// 4.000000000000001) is taken as that number; the last wave holds all n.
func cumulative(n int, waves []float64) []int {
	out := make([]int, len(waves))
	for k, p := range waves {
		x := float64(n) * p / 100
		c := int(math.Ceil(x - 1e-9*max(1, x)))
		c = min(max(c, 0), n)
		if k > 0 {
			c = max(c, out[k-1])
		}
		out[k] = c
	}
	if len(out) > 0 {
		out[len(out)-1] = n
	}
	return out
}

// waveOf is the wave of the host at rank (from 0) in the order, given the
// cumulative sizes.
func waveOf(rank int, cum []int) int {
	for k, c := range cum {
		if rank < c {
			return k
		}
	}
	return len(cum) - 1
}

// placeMembers merges joiners into members (both kept in hash order) and
// gives every pending host the wave its rank among all the members now
// decides; a host already told keeps its wave. It returns the members
// and the indexes of those added or moved.
func placeMembers(id string, members []store.Member, joiners []string, waves []float64) ([]store.Member, []int) {
	joined := map[string]bool{}
	for _, h := range joiners {
		members = append(members, store.Member{Host: h, Hash: orderHash(id, h), Wave: -1, State: wire.HostPending})
		joined[h] = true
	}
	if len(joiners) > 0 {
		slices.SortFunc(members, func(a, b store.Member) int { return strings.Compare(a.Hash, b.Hash) })
	}
	cum := cumulative(len(members), waves)
	var changed []int
	for i := range members {
		m := &members[i]
		if m.State != wire.HostPending {
			continue
		}
		if w := waveOf(i, cum); w != m.Wave || joined[m.Host] {
			m.Wave = w
			changed = append(changed, i)
		}
	}
	return members, changed
}
