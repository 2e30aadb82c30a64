package web

import (
	"context"
	"fmt"
	"math"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/google/go-cmp/cmp"

	"github.com/berthhq/berth/control/wire"
	"github.com/berthhq/berth/internal/testenv/chromium"
)

// simRollout builds the wire view of a rollout from its hosts' states, the
// way the controller reports it, so that a test can move it step by step.
type simRollout struct {
	ro    wire.Rollout
	hosts []string // each host's state, in wave order
	// versions are what each host reports.
	versions []string
	clock    time.Time
}

func newSimRollout(id string, spec wire.RolloutSpec, n int, from string, start time.Time) *simRollout {
	s := &simRollout{clock: start}
	s.ro = wire.Rollout{ID: id, RolloutSpec: spec.WithDefaults(), State: wire.RolloutRunning, CreatedBy: "alice",
		Created: start, Hosts: n}
	for range n {
		s.hosts = append(s.hosts, wire.HostPending)
		s.versions = append(s.versions, from)
	}
	s.decide("alice", wire.ActionCreate, -1, "", wire.RolloutRunning, "move the web pool to "+spec.Version)
	return s
}

// waveEnd is the number of hosts in waves 0..k (ceil of the cumulative
// percentage, as SPEC sizes them).
func (s *simRollout) waveEnd(k int) int {
	return int(math.Ceil(float64(len(s.hosts)) * s.ro.Waves[k] / 100))
}

// waveHosts is how many hosts wave k adds.
func (s *simRollout) waveHosts(k int) int {
	if k == 0 {
		return s.waveEnd(0)
	}
	return s.waveEnd(k) - s.waveEnd(k-1)
}

func (s *simRollout) tick() time.Time {
	s.clock = s.clock.Add(wire.MinSampleGap)
	return s.clock
}

func (s *simRollout) decide(who, action string, wave int, from, to, why string) {
	s.ro.History = append(s.ro.History, wire.Decision{Seq: len(s.ro.History) + 1, Time: s.tick(), Who: who,
		Action: action, Wave: wave, From: from, To: to, Reason: why})
}

// startWave tells wave k's hosts: the first wave with a decision of its
// own, the others with the advance past the wave before.
func (s *simRollout) startWave(k int) {
	s.ro.Wave = k
	lo := 0
	if k > 0 {
		lo = s.waveEnd(k - 1)
	}
	for i := lo; i < s.waveEnd(k); i++ {
		s.hosts[i] = wire.HostTold
	}
	if k == 0 {
		s.decide("controller", wire.ActionStart, k, "", "", fmt.Sprintf("%d hosts told %s", s.waveEnd(k)-lo, s.ro.Version))
		return
	}
	s.decide("controller", wire.ActionAdvance, k, wire.RolloutRunning, wire.RolloutRunning, fmt.Sprintf("wave %d baked; wave %d starts: %d hosts told", k, k+1, s.waveEnd(k)-lo))
}

// set moves the hosts of wave k that are in state from to state to,
// reporting version v.
func (s *simRollout) set(k int, from, to, v string) {
	lo := 0
	if k > 0 {
		lo = s.waveEnd(k - 1)
	}
	for i := lo; i < s.waveEnd(k); i++ {
		if s.hosts[i] == from {
			s.hosts[i], s.versions[i] = to, v
		}
	}
	s.tick()
}

// view is the rollout as the controller would show it now.
func (s *simRollout) view() wire.Rollout {
	ro := s.ro
	ro.Updated = s.clock
	ro.ByState = byState(nil)
	ro.WaveStatus = nil
	counts := map[string]int{}
	for i, st := range s.hosts {
		ro.ByState[st]++
		counts[s.versions[i]]++
	}
	lo := 0
	for k, p := range ro.Waves {
		ws := wire.WaveStatus{Percent: p, Hosts: s.waveEnd(k) - lo, ByState: byState(nil)}
		for _, st := range s.hosts[lo:s.waveEnd(k)] {
			ws.ByState[st]++
		}
		for _, d := range ro.History {
			switch {
			case (d.Action == wire.ActionStart || d.Action == wire.ActionAdvance) && d.Wave == k:
				ws.Started = &d.Time
			case d.Action == wire.ActionAdvance && d.Wave == k+1, d.Action == wire.ActionComplete && d.Wave == k:
				ws.Done = &d.Time
			}
		}
		ro.WaveStatus = append(ro.WaveStatus, ws)
		lo = s.waveEnd(k)
	}
	ro.Versions = append(s.ro.Versions, wire.VersionSample{Time: s.clock, Counts: counts})
	s.ro.Versions = ro.Versions
	return ro
}

// TestBrowserRollout follows two rollouts in Chromium as their pages
// refresh themselves: one from creation through its three waves to
// completion, one to a halt on a failed host with the touched hosts rolled
// back. Screenshots of each step go to the test's artifact directory.
func TestBrowserRollout(t *testing.T) {
	browser := chromium.Start(t)
	ctx, cancel := context.WithTimeout(browser, 90*time.Second)
	defer cancel()
	f := &fakeRollouts{}
	srv := httptest.NewServer(New(Options{Store: seed(t, nil), Rollouts: f, Refresh: time.Second}))
	defer srv.Close()

	start := time.Now().Add(-10 * time.Minute)
	spec := wire.RolloutSpec{Selector: map[string]string{"pool": "web"}, Kind: wire.KindEngine, Flavor: "docker",
		Version: "27.4.0", Waves: []float64{10, 50, 100}, Bake: wire.Duration(time.Minute)}
	good := newSimRollout("ro-good", spec, 10, "27.3.1", start)
	good.startWave(0)
	f.set(good.view())

	must(t, chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/rollouts")))
	waitFor(t, ctx, `#rollouts tr[data-rollout="ro-good"] .wave`, "1 of 3 (10%)")
	chromium.SaveScreenshot(t, ctx, "rollouts-created.png")
	must(t, chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#rollouts tr[data-rollout="ro-good"] td.id a`))))
	waitFor(t, ctx, "#wave", "1 of 3 (10%)")
	chromium.SaveScreenshot(t, ctx, "rollout-created.png")

	// Each wave: told, updated, healthy, then the next starts; the page
	// follows on its own.
	for k := range 3 {
		good.set(k, wire.HostTold, wire.HostUpdated, "27.4.0")
		f.set(good.view())
		waitFor(t, ctx, fmt.Sprintf(`#waves-table tr[data-wave="%d"] td[data-state="updated"]`, k+1), fmt.Sprint(good.waveHosts(k)))
		good.set(k, wire.HostUpdated, wire.HostHealthy, "27.4.0")
		if k < 2 {
			good.startWave(k + 1)
			f.set(good.view())
			waitFor(t, ctx, "#wave", fmt.Sprintf("%d of 3 (%v%%)", k+2, spec.Waves[k+1]))
			if k == 0 {
				chromium.SaveScreenshot(t, ctx, "rollout-wave-2.png")
			}
			continue
		}
		good.decide("controller", wire.ActionComplete, k, wire.RolloutRunning, wire.RolloutCompleted, "every host healthy for 1m0s")
		good.ro.State = wire.RolloutCompleted
		f.set(good.view())
	}
	waitFor(t, ctx, "#state", "completed")
	checkRolloutPage(t, ctx, rolloutSeen{
		Progress: "10 of 10 healthy",
		Waves:    []string{"done", "done", "done"},
		Actions:  []string{"create", "start-wave", "advance", "advance", "complete"},
		Bands:    map[string]string{"27.4.0": "10", "27.3.1": "0"},
		Colour:   "rgb(46, 125, 50)",
	})
	chromium.SaveScreenshot(t, ctx, "rollout-completed.png")

	// A broken version: the first failed host halts it in wave 1, and the
	// touched hosts go back; wave 2's hosts are never told.
	spec.Version, spec.Waves, spec.RollbackOnHalt = "27.5.0", []float64{50, 100}, true
	bad := newSimRollout("ro-bad", spec, 4, "27.4.0", time.Now().Add(-5*time.Minute))
	bad.startWave(0)
	bad.set(0, wire.HostTold, wire.HostFailed, "27.4.0")
	bad.decide("controller", wire.ActionHalt, 0, wire.RolloutRunning, wire.RolloutHalted, "2 failed hosts is more than 0: h-1 rejected 27.5.0 (rolled-back)")
	bad.ro.State = wire.RolloutHalted
	f.set(bad.view())
	must(t, chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/rollouts/ro-bad")))
	waitFor(t, ctx, "#state", "halted")
	chromium.SaveScreenshot(t, ctx, "rollout-halted.png")
	bad.set(0, wire.HostFailed, wire.HostRolledBack, "27.4.0")
	bad.decide("controller", wire.ActionRollback, 0, wire.RolloutHalted, wire.RolloutRolledBack, "rollbackOnHalt: 2 touched hosts told 27.4.0")
	bad.ro.State = wire.RolloutRolledBack
	f.set(bad.view())
	waitFor(t, ctx, "#state", "rolled-back")
	checkRolloutPage(t, ctx, rolloutSeen{
		Progress: "0 of 4 healthy, 2 rolled-back",
		Waves:    []string{"rolled-back", "waiting"},
		Actions:  []string{"create", "start-wave", "halt", "rollback"},
		Bands:    map[string]string{"27.5.0": "0", "27.4.0": "4"},
		Colour:   "rgb(117, 117, 117)",
	})
	if got := eval[string](t, ctx, `document.querySelector('#waves-table tr[data-wave="2"] td[data-state="pending"]').textContent`); got != "2" {
		t.Errorf("wave 2 has %s pending hosts, want 2: none was told", got)
	}
	chromium.SaveScreenshot(t, ctx, "rollout-rolled-back.png")
}

// rolloutSeen is what a rollout's page shows, read in the browser.
type rolloutSeen struct {
	Progress string
	// Waves are the status of each wave; Actions the decisions, in order.
	Waves   []string
	Actions []string
	// Bands are versions chart bands with their last count; other bands
	// may be there too, and nil checks none.
	Bands map[string]string
	// Colour is the state badge's computed background.
	Colour string
}

func checkRolloutPage(t *testing.T, ctx context.Context, want rolloutSeen) {
	t.Helper()
	waitLoaded(t, ctx)
	got := eval[rolloutSeen](t, ctx, `({
		Progress: document.getElementById("progress-text").textContent,
		Waves: [...document.querySelectorAll("#waves-table tbody tr td.phase")].map(td => td.textContent),
		Actions: [...document.querySelectorAll("#decisions tbody td.action")].map(td => td.textContent),
		Bands: Object.fromEntries([...document.querySelectorAll("#versions polygon.band")].map(p => [p.dataset.version, p.dataset.last])),
		Colour: getComputedStyle(document.getElementById("state")).backgroundColor,
	})`)
	for v := range got.Bands {
		if _, ok := want.Bands[v]; !ok {
			delete(got.Bands, v)
		}
	}
	if want.Bands == nil {
		got.Bands = nil
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("the rollout's page (-want +got):\n%s", diff)
	}
	if n := eval[int](t, ctx, `document.querySelectorAll("script").length`); n != 0 {
		t.Errorf("the page holds %d script elements", n)
	}
}

// waitFor waits until the element sel reads want, across the page's own
// reloads, for at most 10 s.
func waitFor(t *testing.T, ctx context.Context, sel, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	js := fmt.Sprintf(`(document.querySelector(%q) || {}).textContent || ""`, sel)
	for {
		// A reload may be under way: an error just means "look again".
		got, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
		if err == nil && got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s reads %q (err %v), want %q", sel, got, err, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
