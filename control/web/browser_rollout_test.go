package web

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/google/go-cmp/cmp"

	"github.com/berthhq/berth/control/rollout"
	"github.com/berthhq/berth/control/store"
	"github.com/berthhq/berth/control/wire"
	"github.com/berthhq/berth/internal/testenv/chromium"
)

// liveHost is a simulated agent: it acts on its desired engine version
// at once, or, told a version it is broken on, stays where it is and
// reports the version rejected, as the agent's health-gated upgrade does.
type liveHost struct {
	id       string
	engine   string
	seq      uint64
	broken   map[string]bool
	rejected []wire.Rejected
}

// liveFleet is simulated hosts reporting through store.Ingest, as the
// server's report handler does, to a store a rollout.Service decides on.
type liveFleet struct {
	st  *store.Store
	svc *rollout.Service
	mu  sync.Mutex
	hs  []*liveHost
}

// beat makes every host act on its desired state and report once.
func (f *liveFleet) beat(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, h := range f.hs {
		d, _, err := f.svc.Desired(ctx, h.id)
		if err != nil {
			return fmt.Errorf("desired state of %s: %w", h.id, err)
		}
		if v := d.Engine; v != nil && v.Version != h.engine {
			if !h.broken[v.Version] {
				h.engine = v.Version
			} else if !slices.ContainsFunc(h.rejected, func(r wire.Rejected) bool { return r.Version == v.Version }) {
				h.rejected = append(h.rejected, wire.Rejected{Kind: wire.KindEngine, Version: v.Version,
					Reason: wire.RejectedRolledBack, Message: "dockerd did not turn healthy", Time: time.Now()})
			}
		}
		h.seq++
		now := time.Now()
		b := wire.Batch{Agent: h.id, Records: []wire.Record{{Seq: h.seq, Kind: wire.KindHeartbeat, Time: now, Heartbeat: &wire.Heartbeat{
			State: "Healthy", Engine: wire.Engine{Flavor: "docker", Version: h.engine, Active: true, Healthy: true},
			AgentVersion: "0.4.0", Labels: map[string]string{"pool": "web"}, IntervalSeconds: 1,
			OS: "linux", Arch: "amd64", Rejected: slices.Clone(h.rejected),
		}}}}
		if _, err := f.st.Ingest(ctx, b, now); err != nil {
			return fmt.Errorf("ingest %s: %w", h.id, err)
		}
	}
	return nil
}

// breakOn makes every host fail on version v.
func (f *liveFleet) breakOn(v string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, h := range f.hs {
		h.broken[v] = true
	}
}

// startLive starts a rollout.Service on a fresh SQLite store, n hosts on
// engine docker from beating every 250 ms, the controller, and the page
// with both; all stop when the test ends.
func startLive(t *testing.T, n int, from string) (*liveFleet, *httptest.Server) {
	t.Helper()
	st := openStore(t)
	f := &liveFleet{st: st, svc: rollout.New(rollout.Options{Store: st, Tick: 100 * time.Millisecond, Holder: "browser-test"})}
	for i := range n {
		f.hs = append(f.hs, &liveHost{id: fmt.Sprintf("web-%02d", i), engine: from, broken: map[string]bool{}})
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := f.beat(ctx); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := f.svc.Run(ctx); err != nil {
			t.Errorf("rollout controller: %v", err)
		}
	}()
	go func() {
		defer wg.Done()
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if err := f.beat(ctx); err != nil && ctx.Err() == nil {
				t.Errorf("simulated hosts: %v", err)
				return
			}
		}
	}()
	srv := httptest.NewServer(New(Options{Store: st, Rollouts: f.svc, Refresh: time.Second}))
	t.Cleanup(func() {
		srv.Close()
		cancel()
		wg.Wait()
	})
	return f, srv
}

// TestBrowserRollout follows real rollouts in Chromium, as an operator
// watching the page would: a rollout.Service on SQLite moves ten simulated
// hosts, which report through store.Ingest, from engine 27.3.1 to 27.4.0
// in waves of 10, 50 and 100%, each baked 3 s, to completion; then a
// rollout to a 27.5.0 that every host fails on halts in its first wave,
// the later waves never told. The pages follow on their own refresh;
// screenshots of each step go to the test's artifact directory (go test
// -artifacts -outputdir DIR keeps them).
func TestBrowserRollout(t *testing.T) {
	browser := chromium.Start(t)
	ctx, cancel := context.WithTimeout(browser, 2*time.Minute)
	defer cancel()
	f, srv := startLive(t, 10, "27.3.1")

	must(t, chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/rollouts")))
	waitFor(t, ctx, "#count", "No rollouts")
	spec := wire.RolloutSpec{Selector: map[string]string{"pool": "web"}, Kind: wire.KindEngine, Flavor: "docker",
		Version: "27.4.0", Waves: []float64{10, 50, 100}, Bake: wire.Duration(3 * time.Second)}
	good, err := f.svc.Create(ctx, "alice", spec)
	must(t, err)
	row := fmt.Sprintf(`#rollouts tr[data-rollout=%q]`, good.ID)
	waitFor(t, ctx, row+" td.id", good.ID)
	screenshot(t, ctx, "rollouts-created.png")
	must(t, chromedp.Do(ctx, chromedp.Click(chromedp.CSS(row+" td.id a"))))
	waitFor(t, ctx, "#rollout-id", good.ID)
	screenshot(t, ctx, "rollout-started.png")

	// A wave bakes 3 s and the page reloads every second: it shows each
	// wave in turn, never going back, until the rollout completes.
	seen := watchWaves(t, ctx, "completed")
	if want := []string{"1 of 3 (10%)", "2 of 3 (50%)", "3 of 3 (100%)", "all 3 done"}; !slices.Equal(seen, want) {
		t.Errorf("the page showed the waves %q, want %q", seen, want)
	}
	checkRolloutPage(t, ctx, rolloutSeen{
		Progress: "10 of 10 healthy",
		Waves:    []string{"done", "done", "done"},
		Actions:  []string{"create", "start-wave", "advance", "advance", "complete"},
		Bands:    lastSample(t, ctx, f.svc, good.ID),
		Colour:   "rgb(46, 125, 50)",
	})
	screenshot(t, ctx, "rollout-completed.png")

	// A version every host fails on: the first failure halts it.
	f.breakOn("27.5.0")
	spec.Version = "27.5.0"
	bad, err := f.svc.Create(ctx, "bob", spec)
	must(t, err)
	must(t, chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/rollouts/"+bad.ID)))
	waitFor(t, ctx, "#rollout-id", bad.ID)
	watchWaves(t, ctx, "halted")
	checkRolloutPage(t, ctx, rolloutSeen{
		Progress: "0 of 10 healthy, 1 failed",
		Waves:    []string{"halted", "waiting", "waiting"},
		Actions:  []string{"create", "start-wave", "halt"},
		Colour:   "rgb(198, 40, 40)",
	})
	for wave, want := range map[int]string{2: "4", 3: "5"} {
		if got := eval[string](t, ctx, fmt.Sprintf(`document.querySelector('#waves-table tr[data-wave="%d"] td[data-state="pending"]').textContent`, wave)); got != want {
			t.Errorf("wave %d has %s hosts pending, want all %s: none is told", wave, got, want)
		}
	}
	screenshot(t, ctx, "rollout-halted.png")
	// The list has both, newest first.
	must(t, chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/rollouts")))
	waitLoaded(t, ctx)
	type listRow struct{ ID, State, Hosts string }
	rows := eval[[]listRow](t, ctx, `[...document.querySelectorAll("#rollouts tbody tr[data-rollout]")].map(tr => ({
		ID: tr.dataset.rollout, State: tr.querySelector(".state").textContent, Hosts: tr.querySelector(".progress-text").textContent}))`)
	want := []listRow{{bad.ID, "halted", "0 of 10 healthy, 1 failed"}, {good.ID, "completed", "10 of 10 healthy"}}
	if diff := cmp.Diff(want, rows); diff != "" {
		t.Errorf("the rollouts list (-want +got):\n%s", diff)
	}
	screenshot(t, ctx, "rollouts-end.png")
}

// watchWaves reads the rollout page as it refreshes itself until its state
// is final, for at most 60 s, and returns the waves it showed in order;
// the wave never goes back.
func watchWaves(t *testing.T, ctx context.Context, final string) []string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var seen []string
	for {
		// A reload may be under way: an error just means "look again".
		got, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[
			(document.getElementById("state") || {}).textContent || "",
			(document.getElementById("wave") || {}).textContent || ""]`))
		if err == nil && len(got) == 2 && got[1] != "" {
			if len(seen) == 0 || seen[len(seen)-1] != got[1] {
				seen = append(seen, got[1])
			}
			if got[0] == final {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the rollout is not %s after 60 s: the page showed the waves %q, now %q (err %v)", final, seen, got, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for i := 1; i < len(seen); i++ {
		if waveOrder(seen[i]) < waveOrder(seen[i-1]) {
			t.Errorf("the wave went back: %q", seen)
		}
	}
	return seen
}

// waveOrder is the wave a wave text names: "2 of 3 (50%)" is 2, "all 3
// done" is 4.
func waveOrder(s string) int {
	var n, of int
	if _, err := fmt.Sscanf(s, "all %d done", &of); err == nil {
		return of + 1
	}
	fmt.Sscanf(s, "%d of", &n)
	return n
}

// lastSample is the count of the last version sample the service recorded
// for rollout id, as the chart's bands show it; the samples are at most
// one every wire.MinSampleGap, so a rollout of a few seconds may end
// before its last move is sampled.
func lastSample(t *testing.T, ctx context.Context, svc *rollout.Service, id string) map[string]string {
	t.Helper()
	r, err := svc.Get(ctx, id)
	must(t, err)
	if len(r.Versions) == 0 {
		t.Fatalf("rollout %s has no version sample", id)
	}
	out := map[string]string{}
	for v, n := range r.Versions[len(r.Versions)-1].Counts {
		out[v] = strconv.Itoa(n)
	}
	if _, ok := out[r.Version]; !ok {
		out[r.Version] = "0" // the target's band is there from the start
	}
	return out
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

// screenshot keeps a full-page PNG of the tab in the test's artifact
// directory. The page reloads itself every second, and a screenshot taken
// in the middle of a reload fails (a page of no width): it is taken again
// once the page has loaded.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	var err error
	for range 10 {
		var png []byte
		if png, err = chromedp.Run(ctx, chromedp.FullScreenshot(100)); err == nil {
			path := filepath.Join(t.ArtifactDir(), name)
			must(t, os.WriteFile(path, png, 0o644))
			t.Logf("screenshot: %s", path)
			return
		}
		_, _ = chromedp.Run(ctx, chromedp.Poll[bool](`document.readyState === "complete"`))
	}
	t.Fatalf("screenshot %s: %v", name, err)
}
