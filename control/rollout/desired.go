package rollout

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"

	"github.com/berthhq/berth/control/store"
	"github.com/berthhq/berth/control/wire"
)

// defaultFlavor is the engine flavor of a pinned host that reports none
// and no rollout named one: agent.yaml's default.
const defaultFlavor = "docker"

// computeDesired is a host's desired state, per kind: its pin; else the
// newest rollout (by creation) in which it was told (the target) or
// rolled back (what it ran before; no opinion when it ran nothing);
// else no opinion. Rollouts lists the rollouts that decided, in kind
// order (engine, agent). A nil input (a host the store does not know)
// has no opinion.
func computeDesired(in *store.DesiredInput) wire.Desired {
	d := wire.Desired{Rollouts: []string{}}
	if in == nil {
		return d
	}
	ms := slices.Clone(in.Memberships)
	slices.SortFunc(ms, func(a, b store.Membership) int {
		return cmp.Or(b.Created.Compare(a.Created), cmp.Compare(b.Rollout, a.Rollout))
	})
	if v := in.Pin.Engine; v != "" {
		flavor := in.Flavor
		for _, m := range ms {
			if flavor == "" && m.Kind == wire.KindEngine {
				flavor = m.Flavor
			}
		}
		d.Engine = &wire.DesiredEngine{Flavor: cmp.Or(flavor, defaultFlavor), Version: v}
	} else if m, ok := deciding(ms, wire.KindEngine); ok {
		flavor, version := m.Flavor, m.Version
		if m.State == wire.HostRolledBack {
			flavor, version = m.PrevFlavor, m.PrevVersion
		}
		if version != "" {
			d.Engine = &wire.DesiredEngine{Flavor: cmp.Or(flavor, in.Flavor, defaultFlavor), Version: version}
			d.Rollouts = append(d.Rollouts, m.Rollout)
		}
	}
	if v := in.Pin.Agent; v != "" {
		d.Agent = &wire.DesiredAgent{Version: v}
	} else if m, ok := deciding(ms, wire.KindAgent); ok {
		version := m.Version
		if m.State == wire.HostRolledBack {
			version = m.PrevVersion
		}
		if version != "" {
			d.Agent = &wire.DesiredAgent{Version: version}
			d.Rollouts = append(d.Rollouts, m.Rollout)
		}
	}
	return d
}

// deciding is the first of ms (newest first) of kind in which the host
// was told or rolled back.
func deciding(ms []store.Membership, kind string) (store.Membership, bool) {
	for _, m := range ms {
		if m.Kind == kind && (touched(m.State) || m.State == wire.HostRolledBack) {
			return m, true
		}
	}
	return store.Membership{}, false
}

// etagOf is the ETag of a desired state: the hex SHA-256 of its JSON,
// cut to 128 bits.
func etagOf(d wire.Desired) string {
	b, _ := json.Marshal(d) // plain strings and slices always encode
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}
