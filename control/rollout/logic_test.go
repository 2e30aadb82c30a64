package rollout

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/berthhq/berth/control/store"
	"github.com/berthhq/berth/control/wire"
)

var t0 = time.Date(2026, 5, 6, 7, 0, 0, 0, time.UTC)

func TestCumulative(t *testing.T) {
	for _, c := range []struct {
		n     int
		waves []float64
		want  []int
	}{
		{40, []float64{10, 50, 100}, []int{4, 20, 40}}, // SPEC's example
		{1, []float64{1, 10, 50, 100}, []int{1, 1, 1, 1}},
		{0, []float64{1, 10, 50, 100}, []int{0, 0, 0, 0}},
		{3, []float64{33.333333333333336, 66.66666666666667, 100}, []int{1, 2, 3}},
		{100000, []float64{1, 10, 50, 100}, []int{1000, 10000, 50000, 100000}},
		{101, []float64{1, 10, 50, 100}, []int{2, 11, 51, 101}},
		{7, []float64{0.001, 99.999, 100}, []int{1, 7, 7}},
		{10, []float64{100}, []int{10}},
	} {
		if got := cumulative(c.n, c.waves); !slices.Equal(got, c.want) {
			t.Errorf("cumulative(%d, %v) = %v, want %v", c.n, c.waves, got, c.want)
		}
	}
	// Whole percentages: exactly the integer ceiling, whatever the
	// floating point product's last bit says.
	for n := 0; n <= 1000; n++ {
		for p := 1; p <= 100; p++ {
			want := (n*p + 99) / 100
			if got := cumulative(n, []float64{float64(p), 100})[0]; got != want {
				t.Fatalf("cumulative(%d, %d%%) = %d, want %d", n, p, got, want)
			}
		}
	}
	for _, p := range []float64{0.1, 0.7, 2.3, 14.1, 28.9, 57.7} {
		for n := 0; n <= 2000; n++ {
			// p has one decimal: n*p/100 = n*(10p)/1000, exactly.
			tenth := int(p*10 + 0.5)
			want := (n*tenth + 999) / 1000
			if got := cumulative(n, []float64{p, 100})[0]; got != want {
				t.Fatalf("cumulative(%d, %v%%) = %d, want %d", n, p, got, want)
			}
		}
	}
}

func TestWaveOf(t *testing.T) {
	cum := []int{4, 20, 40}
	for _, c := range []struct{ rank, want int }{{0, 0}, {3, 0}, {4, 1}, {19, 1}, {20, 2}, {39, 2}, {40, 2}} {
		if got := waveOf(c.rank, cum); got != c.want {
			t.Errorf("waveOf(%d) = %d, want %d", c.rank, got, c.want)
		}
	}
}

func TestPlaceMembersOrderAndJoiners(t *testing.T) {
	var hosts []store.Facts
	for i := 0; i < 40; i++ {
		hosts = append(hosts, store.Facts{Host: fmt.Sprintf("vm-%02d", i)})
	}
	waves := []float64{10, 50, 100}
	members, _ := placeMembers("r-1", nil, hosts, waves)
	count := map[int]int{}
	for i, m := range members {
		if i > 0 && members[i-1].Hash >= m.Hash {
			t.Fatalf("members not in hash order at %d", i)
		}
		if m.Hash != orderHash("r-1", m.Host) {
			t.Fatalf("%s hash %s", m.Host, m.Hash)
		}
		count[m.Wave]++
	}
	if diff := cmp.Diff(map[int]int{0: 4, 1: 16, 2: 20}, count); diff != "" {
		t.Errorf("wave sizes (-want +got):\n%s", diff)
	}
	// Another rollout orders the same hosts otherwise.
	other, _ := placeMembers("r-2", nil, hosts, waves)
	if slices.EqualFunc(members[:4], other[:4], func(a, b store.MemberFacts) bool { return a.Host == b.Host }) {
		t.Errorf("two rollouts put the same hosts first")
	}
	// Wave 0 told; 40 hosts join: pending hosts are placed by their rank
	// among all 80, told ones keep their wave.
	for i := range members {
		if members[i].Wave == 0 {
			members[i].State = wire.HostTold
		}
	}
	var joiners []store.Facts
	for i := 40; i < 80; i++ {
		joiners = append(joiners, store.Facts{Host: fmt.Sprintf("vm-%02d", i)})
	}
	all, _ := placeMembers("r-1", members, joiners, waves)
	cum := cumulative(80, waves)
	for i, m := range all {
		switch {
		case m.State == wire.HostTold && m.Wave != 0:
			t.Errorf("told host %s moved to wave %d", m.Host, m.Wave)
		case m.State == wire.HostPending && m.Wave != waveOf(i, cum):
			t.Errorf("pending %s at rank %d in wave %d, want %d", m.Host, i, m.Wave, waveOf(i, cum))
		}
	}
}

// facts is a host reporting engine docker version in state at report.
func facts(version, state string, report time.Time) store.Facts {
	return store.Facts{Host: "h", Exists: true, State: state, Flavor: "docker", EngineVersion: version,
		AgentVersion: "1.0.0", LastReport: report, Interval: 10 * time.Second}
}

func TestClassify(t *testing.T) {
	tg := target{wire.KindEngine, "docker", "2.0.0"}
	bake := time.Minute
	told := store.Member{Host: "h", State: wire.HostTold, Told: t0}
	updated := store.Member{Host: "h", State: wire.HostUpdated, Told: t0, HealthySince: t0.Add(10 * time.Second)}
	healthy := store.Member{Host: "h", State: wire.HostHealthy, Told: t0, HealthySince: t0}
	rejected := func(f store.Facts, v string, at time.Time) store.Facts {
		f.Rejected = []wire.Rejected{{Kind: wire.KindEngine, Version: v, Reason: wire.RejectedRolledBack, Time: at}}
		return f
	}
	now := t0.Add(20 * time.Second)
	for _, c := range []struct {
		name      string
		m         store.Member
		f         store.Facts
		now       time.Time
		want      string
		wantSince time.Time
	}{
		{"not yet moved", told, facts("1.0.0", "Healthy", now), now, wire.HostTold, time.Time{}},
		{"on target, Healthy: bake starts", told, facts("2.0.0", "Healthy", now), now, wire.HostUpdated, now},
		{"on target, Degraded", told, facts("2.0.0", "Degraded", now), now, wire.HostUpdated, time.Time{}},
		{"baking, seen Degraded: bake resets", updated, facts("2.0.0", "Degraded", now), now, wire.HostUpdated, time.Time{}},
		{"baked", updated, facts("2.0.0", "Healthy", t0.Add(70*time.Second)), t0.Add(70 * time.Second), wire.HostHealthy, updated.HealthySince},
		{"not quite baked", updated, facts("2.0.0", "Healthy", t0.Add(69*time.Second)), t0.Add(69 * time.Second), wire.HostUpdated, updated.HealthySince},
		{"other flavor is not the target", told, store.Facts{Exists: true, State: "Healthy", Flavor: "containerd", EngineVersion: "2.0.0", LastReport: now, Interval: 10 * time.Second}, now, wire.HostTold, time.Time{}},
		{"rejected the target", told, rejected(facts("1.0.0", "Healthy", now), "2.0.0", t0.Add(5*time.Second)), now, wire.HostFailed, time.Time{}},
		{"rejected it in an older rollout", told, rejected(facts("1.0.0", "Healthy", now), "2.0.0", t0.Add(-time.Hour)), now, wire.HostTold, time.Time{}},
		{"rejected another version", told, rejected(facts("1.0.0", "Healthy", now), "3.0.0", now), now, wire.HostTold, time.Time{}},
		{"Unhealthy on the target", updated, facts("2.0.0", "Unhealthy", now), now, wire.HostFailed, time.Time{}},
		{"Unhealthy on the old version", told, facts("1.0.0", "Unhealthy", now), now, wire.HostTold, time.Time{}},
		{"silent 3 intervals after told", told, facts("1.0.0", "Healthy", t0.Add(-time.Second)), t0.Add(31 * time.Second), wire.HostFailed, time.Time{}},
		{"silent just under 3 intervals", told, facts("1.0.0", "Healthy", t0.Add(-time.Second)), t0.Add(30 * time.Second), wire.HostTold, time.Time{}},
		{"silent 3 intervals after its last report", told, facts("1.0.0", "Healthy", t0.Add(20*time.Second)), t0.Add(51 * time.Second), wire.HostFailed, time.Time{}},
		{"forgotten host, silent", told, store.Facts{}, t0.Add(4 * time.Minute), wire.HostFailed, time.Time{}},
		{"healthy stays healthy when Degraded", healthy, facts("2.0.0", "Degraded", now), now, wire.HostHealthy, t0},
		{"healthy stays healthy when silent", healthy, facts("2.0.0", "Healthy", t0), t0.Add(time.Hour), wire.HostHealthy, t0},
		{"healthy fails when it rejects", healthy, rejected(facts("1.0.0", "Healthy", now), "2.0.0", now), now, wire.HostFailed, time.Time{}},
		{"pending is left alone", store.Member{State: wire.HostPending}, facts("2.0.0", "Healthy", now), now, wire.HostPending, time.Time{}},
		{"failed is final", store.Member{State: wire.HostFailed}, facts("2.0.0", "Healthy", now), now, wire.HostFailed, time.Time{}},
	} {
		got, since := classify(c.m, c.f, tg, bake, c.now)
		if got != c.want || !since.Equal(c.wantSince) {
			t.Errorf("%s: %s since %v, want %s since %v", c.name, got, since, c.want, c.wantSince)
		}
	}
	agent := target{wire.KindAgent, "", "1.1.0"}
	f := facts("1.0.0", "Healthy", now)
	f.AgentVersion = "1.1.0"
	if got, _ := classify(told, f, agent, 0, now); got != wire.HostHealthy {
		t.Errorf("agent on its target with no bake: %s, want healthy", got)
	}
}

func TestOverThreshold(t *testing.T) {
	for _, c := range []struct {
		name           string
		count          *int
		pct            *float64
		failed, told   int
		want           bool
		wantSubstrings string
	}{
		{"none set, no failure", nil, nil, 0, 10, false, ""},
		{"none set, first failure halts", nil, nil, 1, 10, true, "first failure"},
		{"count 2, 2 failed", ip(2), nil, 2, 10, false, ""},
		{"count 2, 3 failed", ip(2), nil, 3, 10, true, "maxFailures 2"},
		{"count 0, 1 failed", ip(0), nil, 1, 10, true, "maxFailures 0"},
		{"percent 5, 1 of 20", nil, fp(5), 1, 20, false, ""},
		{"percent 5, 2 of 20", nil, fp(5), 2, 20, true, "10.0%"},
		{"percent only: count not applied", nil, fp(50), 5, 10, false, ""},
		{"both: count trips", ip(1), fp(90), 2, 100, true, "maxFailures 1"},
		{"both: percent trips", ip(10), fp(5), 3, 20, true, "maxFailurePercent 5"},
		{"both: neither", ip(10), fp(50), 3, 20, false, ""},
	} {
		s := wire.RolloutSpec{MaxFailures: c.count, MaxFailurePercent: c.pct}
		got, why := overThreshold(s, c.failed, c.told)
		if got != c.want || (c.want && !strings.Contains(why, c.wantSubstrings)) {
			t.Errorf("%s: %v %q, want %v mentioning %q", c.name, got, why, c.want, c.wantSubstrings)
		}
	}
}

func ip(n int) *int         { return &n }
func fp(p float64) *float64 { return &p }

func TestComputeDesired(t *testing.T) {
	older := store.Membership{Rollout: "r-old", Kind: wire.KindEngine, Flavor: "docker", Version: "2.0.0", Created: t0,
		State: wire.HostHealthy, PrevFlavor: "docker", PrevVersion: "1.0.0"}
	newer := store.Membership{Rollout: "r-new", Kind: wire.KindEngine, Flavor: "docker", Version: "3.0.0", Created: t0.Add(time.Hour),
		State: wire.HostTold, PrevFlavor: "docker", PrevVersion: "2.0.0"}
	back := newer
	back.State = wire.HostRolledBack
	agent := store.Membership{Rollout: "r-agent", Kind: wire.KindAgent, Version: "1.1.0", Created: t0, State: wire.HostFailed, PrevVersion: "1.0.0"}
	fresh := store.Membership{Rollout: "r-fresh", Kind: wire.KindEngine, Flavor: "containerd", Version: "2.0.0", Created: t0, State: wire.HostRolledBack}
	eng := func(f, v string) *wire.DesiredEngine { return &wire.DesiredEngine{Flavor: f, Version: v} }
	for _, c := range []struct {
		name string
		in   *store.DesiredInput
		want wire.Desired
	}{
		{"unknown host", nil, wire.Desired{Rollouts: []string{}}},
		{"no rollout, no pin", &store.DesiredInput{Flavor: "docker"}, wire.Desired{Rollouts: []string{}}},
		{"newest rollout wins", &store.DesiredInput{Memberships: []store.Membership{older, newer}}, wire.Desired{Engine: eng("docker", "3.0.0"), Rollouts: []string{"r-new"}}},
		{"rolled back: what it ran before", &store.DesiredInput{Memberships: []store.Membership{back, older}}, wire.Desired{Engine: eng("docker", "2.0.0"), Rollouts: []string{"r-new"}}},
		{"rolled back from nothing: no opinion", &store.DesiredInput{Memberships: []store.Membership{fresh}}, wire.Desired{Rollouts: []string{}}},
		{"failed keeps the target", &store.DesiredInput{Memberships: []store.Membership{agent}}, wire.Desired{Agent: &wire.DesiredAgent{Version: "1.1.0"}, Rollouts: []string{"r-agent"}}},
		{"pin beats rollouts", &store.DesiredInput{Flavor: "containerd", Pin: wire.Pin{Engine: "1.5.0"}, Memberships: []store.Membership{newer, agent}},
			wire.Desired{Engine: eng("containerd", "1.5.0"), Agent: &wire.DesiredAgent{Version: "1.1.0"}, Rollouts: []string{"r-agent"}}},
		{"pin of a host reporting no flavor takes the rollout's", &store.DesiredInput{Pin: wire.Pin{Engine: "1.5.0", Agent: "0.9.0"}, Memberships: []store.Membership{fresh}},
			wire.Desired{Engine: eng("containerd", "1.5.0"), Agent: &wire.DesiredAgent{Version: "0.9.0"}, Rollouts: []string{}}},
		{"pin of a host with nothing: docker", &store.DesiredInput{Pin: wire.Pin{Engine: "1.5.0"}}, wire.Desired{Engine: eng("docker", "1.5.0"), Rollouts: []string{}}},
	} {
		got := computeDesired(c.in)
		if diff := cmp.Diff(c.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", c.name, diff)
		}
	}
	a := computeDesired(&store.DesiredInput{Memberships: []store.Membership{older}})
	b := computeDesired(&store.DesiredInput{Memberships: []store.Membership{newer}})
	if etagOf(a) == etagOf(b) || etagOf(a) != etagOf(computeDesired(&store.DesiredInput{Memberships: []store.Membership{older}})) {
		t.Errorf("etags: equal answers must share one, different ones differ")
	}
}
