package web

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/berthhq/berth/control/rollout"
	"github.com/berthhq/berth/control/wire"
)

// fakeRollouts serves rollouts held in memory, newest first; tests change
// them with set while the page is being read.
type fakeRollouts struct {
	mu   sync.Mutex
	list []wire.Rollout
	err  error
}

func (f *fakeRollouts) List(context.Context) (wire.RolloutList, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return wire.RolloutList{}, f.err
	}
	return wire.RolloutList{Rollouts: slices.Clone(f.list)}, nil
}

func (f *fakeRollouts) Get(_ context.Context, id string) (wire.Rollout, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return wire.Rollout{}, f.err
	}
	for _, r := range f.list {
		if r.ID == id {
			return r, nil
		}
	}
	return wire.Rollout{}, wire.ErrNotFound
}

// set replaces the rollout with r's id, or adds it first.
func (f *fakeRollouts) set(r wire.Rollout) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.list {
		if f.list[i].ID == r.ID {
			f.list[i] = r
			return
		}
	}
	f.list = append([]wire.Rollout{r}, f.list...)
}

func ptr[T any](v T) *T { return &v }

// byState fills every host state, as the wire promises.
func byState(counts map[string]int) map[string]int {
	m := make(map[string]int, len(wire.HostStates))
	for _, s := range wire.HostStates {
		m[s] = counts[s]
	}
	return m
}

// testRollouts are the rollouts of the handler tests: one running in its
// second wave whose operator and hosts typed markup, one halted, one
// completed.
func testRollouts(now time.Time) []wire.Rollout {
	at := func(d time.Duration) time.Time { return now.Add(-d) }
	running := wire.Rollout{
		ID: "ro-3",
		RolloutSpec: wire.RolloutSpec{
			Selector: map[string]string{"pool": "web", "team": "<script>alert(1)</script>"},
			Kind:     wire.KindEngine, Flavor: "docker", Version: "27.4.0",
			Waves: []float64{10, 50, 100}, Bake: wire.Duration(10 * time.Minute),
			MaxFailures: ptr(2), MaxFailurePercent: ptr(12.5), RollbackOnHalt: true,
		},
		State: wire.RolloutRunning, CreatedBy: "alice<b>", Created: at(30 * time.Minute), Updated: at(5 * time.Minute),
		Wave: 1, Hosts: 20,
		ByState: byState(map[string]int{wire.HostPending: 10, wire.HostTold: 3, wire.HostUpdated: 4, wire.HostHealthy: 2, wire.HostFailed: 1}),
		WaveStatus: []wire.WaveStatus{
			{Percent: 10, Hosts: 2, ByState: byState(map[string]int{wire.HostHealthy: 2}), Started: ptr(at(30 * time.Minute)), Done: ptr(at(18 * time.Minute))},
			{Percent: 50, Hosts: 8, ByState: byState(map[string]int{wire.HostTold: 3, wire.HostUpdated: 4, wire.HostFailed: 1}), Started: ptr(at(18 * time.Minute))},
			{Percent: 100, Hosts: 10, ByState: byState(map[string]int{wire.HostPending: 10})},
		},
		History: []wire.Decision{
			{Seq: 1, Time: at(30 * time.Minute), Who: "alice<b>", Action: wire.ActionCreate, Wave: -1, To: wire.RolloutRunning, Reason: "CVE fix <img src=x onerror=alert(2)>"},
			{Seq: 2, Time: at(30 * time.Minute), Who: "controller", Action: wire.ActionStart, Wave: 0, Reason: "2 hosts told 27.4.0"},
			{Seq: 3, Time: at(18 * time.Minute), Who: "controller", Action: wire.ActionAdvance, Wave: 1, From: wire.RolloutRunning, To: wire.RolloutRunning,
				Reason: "wave 1 of 3 baked (10m0s): 2 healthy; wave 2 (50%) starts: 8 hosts told"},
		},
		Versions: []wire.VersionSample{
			{Time: at(30 * time.Minute), Counts: map[string]int{"27.3.1": 19, "": 1}},
			{Time: at(25 * time.Minute), Counts: map[string]int{"27.3.1": 17, "27.4.0": 2, "": 1}},
			{Time: at(10 * time.Minute), Counts: map[string]int{"27.3.1": 12, "27.4.0": 6, "<svg onload=alert(5)>": 1, "": 1}},
		},
	}
	halted := wire.Rollout{
		ID: "ro-2",
		RolloutSpec: wire.RolloutSpec{
			Selector: map[string]string{"ring": "canary"}, Kind: wire.KindAgent, Version: "0.5.0",
			Waves: []float64{50, 100}, Bake: wire.Duration(time.Minute),
		},
		State: wire.RolloutHalted, CreatedBy: "bob", Created: at(3 * time.Hour), Updated: at(170 * time.Minute),
		Wave: 0, Hosts: 4,
		ByState: byState(map[string]int{wire.HostPending: 2, wire.HostHealthy: 1, wire.HostFailed: 1}),
		WaveStatus: []wire.WaveStatus{
			{Percent: 50, Hosts: 2, ByState: byState(map[string]int{wire.HostHealthy: 1, wire.HostFailed: 1}), Started: ptr(at(3 * time.Hour))},
			{Percent: 100, Hosts: 2, ByState: byState(map[string]int{wire.HostPending: 2})},
		},
		History: []wire.Decision{
			{Seq: 1, Time: at(3 * time.Hour), Who: "bob", Action: wire.ActionCreate, Wave: -1, To: wire.RolloutRunning},
			{Seq: 2, Time: at(170 * time.Minute), Who: "controller", Action: wire.ActionHalt, Wave: 0, From: wire.RolloutRunning, To: wire.RolloutHalted,
				Reason: "1 failed host is more than 0: h-9 rejected 0.5.0 (blacklisted)"},
		},
	}
	done := wire.Rollout{
		ID: "ro-1",
		RolloutSpec: wire.RolloutSpec{
			Selector: map[string]string{"ring": "canary"}, Kind: wire.KindAgent, Version: "0.4.0",
			Waves: []float64{100}, Bake: wire.Duration(time.Minute),
		},
		State: wire.RolloutCompleted, CreatedBy: "bob", Created: at(48 * time.Hour), Updated: at(47 * time.Hour),
		Wave: 0, Hosts: 4, ByState: byState(map[string]int{wire.HostHealthy: 4}),
		WaveStatus: []wire.WaveStatus{{Percent: 100, Hosts: 4, ByState: byState(map[string]int{wire.HostHealthy: 4}),
			Started: ptr(at(48 * time.Hour)), Done: ptr(at(47 * time.Hour))}},
		Versions: []wire.VersionSample{{Time: at(48 * time.Hour), Counts: map[string]int{"0.3.9": 4}}, {Time: at(47*time.Hour + 30*time.Minute), Counts: map[string]int{"0.4.0": 4}}},
	}
	return []wire.Rollout{running, halted, done}
}

// newRolloutHandler serves the test fleet and testRollouts.
func newRolloutHandler(t testing.TB, o Options) (http.Handler, *fakeRollouts) {
	t.Helper()
	f := &fakeRollouts{list: testRollouts(testNow)}
	if o.Rollouts == nil {
		o.Rollouts = f
	}
	return newTestHandler(t, o), f
}

var rolloutRowRE = regexp.MustCompile(`<tr data-rollout="([^"]*)">`)

func TestRolloutsHiddenWithoutController(t *testing.T) {
	h := newTestHandler(t, Options{})
	for _, page := range []string{"/rollouts", "/rollouts/ro-1"} {
		if code, _ := get(t, h, page); code != http.StatusNotFound {
			t.Errorf("GET %s without rollouts = %d, want 404", page, code)
		}
	}
	with, _ := newRolloutHandler(t, Options{})
	_, body := get(t, with, "/")
	if !strings.Contains(body, `<li><a href="/rollouts">Rollouts</a></li>`) {
		t.Errorf("the fleet page has no Rollouts link:\n%s", body)
	}
}

func TestRolloutsNeedAnOperator(t *testing.T) {
	ss := newSessions()
	h, _ := newRolloutHandler(t, ss.options())
	for _, page := range []string{"/rollouts", "/rollouts/ro-3"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, page, nil))
		if want := "/login?next=" + url.QueryEscape(page); rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != want {
			t.Errorf("GET %s without a token = %d to %q, want 303 to %s", page, rec.Code, rec.Header().Get("Location"), want)
		}
		req := httptest.NewRequest(http.MethodGet, page, nil)
		req.Header.Set("Authorization", "Bearer op-good")
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Errorf("GET %s as an operator = %d", page, rec.Code)
		}
	}
}

func TestRolloutList(t *testing.T) {
	h, _ := newRolloutHandler(t, Options{})
	code, body := get(t, h, "/rollouts")
	if code != http.StatusOK {
		t.Fatalf("GET /rollouts = %d\n%s", code, body)
	}
	var ids []string
	for _, m := range rolloutRowRE.FindAllStringSubmatch(body, -1) {
		ids = append(ids, m[1])
	}
	if diff := cmp.Diff([]string{"ro-3", "ro-2", "ro-1"}, ids); diff != "" {
		t.Errorf("rows (-want +got):\n%s", diff)
	}
	wantIn(t, "the rollouts page", body,
		`<li><a href="/rollouts" aria-current="page">Rollouts</a></li>`,
		`<td class="id"><a href="/rollouts/ro-3">ro-3</a></td>`,
		`<td class="target">engine docker <strong class="version">27.4.0</strong></td>`,
		`<a class="chip" href="/?label=pool%3Dweb">pool=web</a>`,
		`<span class="state ro-running">running</span>`,
		`<span class="state ro-halted">halted</span>`,
		`<span class="state ro-completed">completed</span>`,
		`<td class="wave">2 of 3 (50%)</td>`,
		`<td class="wave">all 1 done</td>`,
		// 20 hosts on 200 units: 10 units a host, healthy first, pending last.
		`<rect class="seg" x="0" y="0" width="20" height="14" fill="#2e7d32" data-state="healthy" data-count="2">`,
		`<rect class="seg" x="90" y="0" width="10" height="14" fill="#c62828" data-state="failed" data-count="1">`,
		`<rect class="seg" x="100" y="0" width="100" height="14" fill="#b0bec5" data-state="pending" data-count="10">`,
		`<small class="progress-text">2 of 20 healthy, 1 failed</small>`,
		`<meta http-equiv="refresh" content="10">`,
		`title="2026-03-14 14:39:26 UTC">30 min ago by alice&lt;b&gt;</td>`,
	)
	// Paused, the links keep the page paused.
	_, body = get(t, h, "/rollouts?refresh=off")
	if !strings.Contains(body, `href="/rollouts/ro-2?refresh=off"`) || strings.Contains(body, `http-equiv="refresh"`) {
		t.Errorf("the paused list refreshes, or its links do not keep it paused")
	}

	empty := newTestHandler(t, Options{Rollouts: &fakeRollouts{}})
	if _, body := get(t, empty, "/rollouts"); !strings.Contains(body, "No rollouts yet.") {
		t.Errorf("an empty list does not say so:\n%s", body)
	}

	// Years of rollouts: the newest are listed, and the page says so.
	many := &fakeRollouts{}
	for i := range RolloutsListed + 50 {
		r := testRollouts(testNow)[2]
		r.ID = fmt.Sprintf("ro-%04d", RolloutsListed+50-i)
		many.list = append(many.list, r)
	}
	_, body = get(t, newTestHandler(t, Options{Rollouts: many}), "/rollouts")
	if n := len(rolloutRowRE.FindAllString(body, -1)); n != RolloutsListed || !strings.Contains(body, `data-rollout="ro-0250"`) || strings.Contains(body, `data-rollout="ro-0050"`) {
		t.Errorf("%d rows listed, want the newest %d", n, RolloutsListed)
	}
	wantIn(t, "a long list", body, "The newest 200 of 250 rollouts")
}

func TestRolloutPage(t *testing.T) {
	h, _ := newRolloutHandler(t, Options{})
	code, body := get(t, h, "/rollouts/ro-3")
	if code != http.StatusOK {
		t.Fatalf("GET /rollouts/ro-3 = %d\n%s", code, body)
	}
	wantIn(t, "the rollout page", body,
		`<span id="state" class="state ro-running">running</span>`,
		`<dd id="target">engine docker <strong>27.4.0</strong></dd>`,
		`<dd id="wave">2 of 3 (50%)</dd>`,
		`<dd id="waves">10%, 50%, 100%</dd>`,
		`<dd id="bake">10m0s</dd>`,
		`<dd id="threshold">when more than 2 hosts, or more than 12.5% of the hosts told, failed</dd>`,
		`<dd id="on-halt">touched hosts go back to their previous version</dd>`,
		`<li data-state="failed"><span class="state hs-failed">failed</span> <span class="n">1</span></li>`,
		`<tr data-wave="2" class="current" aria-current="step">`,
		`<td class="num" data-state="updated">4</td>`,
		`<td class="phase">done</td>`, `<td class="phase">in progress</td>`, `<td class="phase">waiting</td>`,
		`<td class="who"><em>controller</em></td>`,
		`<td class="action">advance</td>`,
		`<td class="reason">wave 1 of 3 baked (10m0s): 2 healthy; wave 2 (50%) starts: 8 hosts told</td>`,
		"<td class=\"action\">advance</td>\n<td class=\"num\">2</td>\n<td class=\"change\"></td>",
		`<td class="change">running</td>`,
		// The versions chart: the target band at the bottom, with its count.
		// 30 min over 600 units: the second sample, 5 min in, at 140.
		`<polygon class="band" points="40.0,176.0 140.0,176.0 140.0,160.0 440.0,160.0 440.0,128.0 640.0,128.0`,
		`data-version="27.4.0" data-last="6"`,
		`data-version="27.3.1" data-last="12"`,
		`data-version="" data-last="1"`,
		`<text x="40" y="16" dx="2" dy="-4">W1</text>`,
		`<text x="280" y="16" dx="2" dy="-4">W2</text>`,
		`<text x="640" y="192" text-anchor="end">15:09:26 UTC</text>`,
		`27.4.0 (target) <span class="n">6</span>`,
	)

	_, body = get(t, h, "/rollouts/ro-2")
	wantIn(t, "the halted rollout's page", body,
		`<td class="phase">halted</td>`,
		`<td class="change">running → halted</td>`,
		`<td class="reason">1 failed host is more than 0: h-9 rejected 0.5.0 (blacklisted)</td>`,
		`<dd id="threshold">at the first failed host</dd>`,
		`<dd id="on-halt">hosts stay where they are</dd>`,
		`<p class="empty" id="versions-empty">No version counts yet.</p>`,
	)
	// A completed rollout's chart ends where it did, not now.
	_, body = get(t, h, "/rollouts/ro-1")
	if !strings.Contains(body, `text-anchor="end">16:09:26 UTC</text>`) || strings.Contains(body, `aria-current="step"`) {
		t.Errorf("the completed rollout's chart does not end at its last update, or a wave is still current")
	}
}

func TestUnknownRollout(t *testing.T) {
	h, _ := newRolloutHandler(t, Options{})
	code, body := get(t, h, "/rollouts/nope%3Cb%3E")
	if code != http.StatusNotFound || !strings.Contains(body, "There is no rollout with id &#34;nope&lt;b&gt;&#34;.") {
		t.Errorf("GET an unknown rollout = %d, not the 404 that names it:\n%s", code, body)
	}
}

// TestRolloutHostileInert checks that what operators typed (selector,
// reason, name) and hosts reported (versions) reaches the page as text.
func TestRolloutHostileInert(t *testing.T) {
	h, f := newRolloutHandler(t, Options{})
	evil := f.list[0]
	evil.ID = `ro-"><script>alert(6)</script>`
	f.set(evil)
	for _, page := range []string{"/rollouts", "/rollouts/ro-3", "/rollouts/ro-%22%3E%3Cscript%3Ealert(6)%3C%2Fscript%3E"} {
		code, body := get(t, h, page)
		if code != http.StatusOK {
			t.Fatalf("GET %s = %d\n%s", page, code, body)
		}
		for _, bad := range []string{"<script", "<img", "<svg onload", "<b>"} {
			if strings.Contains(body, bad) {
				t.Errorf("GET %s: the page holds live markup %q", page, bad)
			}
		}
		if !strings.Contains(body, "team=&lt;script&gt;alert(1)&lt;/script&gt;") {
			t.Errorf("GET %s: the hostile selector is not shown as text", page)
		}
	}
	_, body := get(t, h, "/rollouts/ro-3")
	wantIn(t, "the rollout page", body,
		"CVE fix &lt;img src=x onerror=alert(2)&gt;",
		`<td class="who">alice&lt;b&gt;</td>`,
		`data-version="&lt;svg onload=alert(5)&gt;"`,
		`&lt;svg onload=alert(5… <span class="n">1</span>`,
	)
	_, body = get(t, h, "/rollouts")
	if !strings.Contains(body, `href="/rollouts/ro-%22%3E%3Cscript%3Ealert%286%29%3C%2Fscript%3E"`) {
		t.Errorf("the hostile id's link is not path-escaped")
	}
}

func TestRolloutsFail(t *testing.T) {
	var logs bytes.Buffer
	f := &fakeRollouts{err: errors.New("rollouts table gone in /var/lib/berth/control.db")}
	h := newTestHandler(t, Options{Rollouts: f, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	for _, page := range []string{"/rollouts", "/rollouts/ro-1"} {
		code, body := get(t, h, page)
		if code != http.StatusInternalServerError || strings.Contains(body, "/var/lib") {
			t.Errorf("GET %s = %d; want 500 without the store's error:\n%s", page, code, body)
		}
	}
	if !strings.Contains(logs.String(), "rollouts table gone") {
		t.Errorf("the error was not logged:\n%s", logs.String())
	}
}

func TestNewProgress(t *testing.T) {
	type seg struct {
		State       string
		X, Width, N int
	}
	for _, tc := range []struct {
		name  string
		by    map[string]int
		total int
		want  []seg
		label string
	}{
		{"empty", nil, 0, nil, "0 of 0 healthy"},
		{"thirds tile the bar", map[string]int{"pending": 1, "told": 1, "healthy": 1}, 3,
			[]seg{{"healthy", 0, 66, 1}, {"told", 66, 67, 1}, {"pending", 133, 67, 1}}, "1 of 3 healthy"},
		{"more counted than the total", map[string]int{"healthy": 3, "failed": 1}, 2,
			[]seg{{"healthy", 0, 150, 3}, {"failed", 150, 50, 1}}, "3 of 4 healthy, 1 failed"},
		{"an unknown state still counts, before pending", map[string]int{"healthy": 1, "zombie": 1, "rolled-back": 2, "pending": 4}, 8,
			[]seg{{"healthy", 0, 25, 1}, {"rolled-back", 25, 50, 2}, {"zombie", 75, 25, 1}, {"pending", 100, 100, 4}}, "1 of 8 healthy, 2 rolled-back"},
		{"negative counts are ignored", map[string]int{"healthy": -5, "told": 2}, 2,
			[]seg{{"told", 0, 200, 2}}, "-5 of 2 healthy"},
	} {
		p := newProgress(tc.by, tc.total, 200)
		var got []seg
		for _, s := range p.Segments {
			got = append(got, seg{s.State, s.X, s.Width, s.Count})
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s: segments (-want +got):\n%s", tc.name, diff)
		}
		if p.Label != tc.label {
			t.Errorf("%s: label %q, want %q", tc.name, p.Label, tc.label)
		}
	}
}

func TestVersionSeries(t *testing.T) {
	t0 := testNow
	sample := func(d time.Duration, counts map[string]int) wire.VersionSample {
		return wire.VersionSample{Time: t0.Add(d), Counts: counts}
	}
	many := map[string]int{"": 1, "2.0": 9}
	for i := 1; i <= 9; i++ {
		many["1."+string(rune('0'+i))] = i
	}
	for _, tc := range []struct {
		name    string
		samples []wire.VersionSample
		want    []string // version=last, bottom up
	}{
		{"target first, newest other next, none on top",
			[]wire.VersionSample{sample(0, map[string]int{"1.0": 3, "0.9": 1, "": 1}), sample(time.Minute, map[string]int{"2.0": 2, "1.0": 2, "": 1})},
			[]string{"2.0=2", "1.0=2", "0.9=0", "=1"}},
		{"a target no host runs yet still has its band",
			[]wire.VersionSample{sample(0, map[string]int{"1.0": 3})},
			[]string{"2.0=0", "1.0=3"}},
		{"past the limit the least seen add up in other",
			[]wire.VersionSample{sample(0, many)},
			[]string{"2.0=9", "1.9=9", "1.8=8", "1.7=7", "1.6=6", "1.5=5", "other=10", "=1"}},
	} {
		xs := make([]float64, len(tc.samples)+1)
		var got []string
		for _, s := range versionSeries("2.0", tc.samples, xs, func(n int) float64 { return float64(n) }) {
			got = append(got, s.Version+"="+strconv.Itoa(s.Last))
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s: bands (-want +got):\n%s", tc.name, diff)
		}
	}
}

// TestVersionChartBounded checks that a day of samples, one every 5 s,
// makes a chart of at most one step per unit of width, each step the last
// sample that falls in it.
func TestVersionChartBounded(t *testing.T) {
	start := testNow.Add(-24 * time.Hour)
	ro := wire.Rollout{RolloutSpec: wire.RolloutSpec{Kind: wire.KindEngine, Version: "2.0"},
		State: wire.RolloutRunning, Created: start}
	const n = 24 * time.Hour / wire.MinSampleGap
	for i := range int(n) {
		ro.Versions = append(ro.Versions, wire.VersionSample{Time: start.Add(time.Duration(i) * wire.MinSampleGap),
			Counts: map[string]int{"2.0": i, "1.0": int(n) - i}})
	}
	c := newVersionChart(ro, testNow)
	if len(c.Series) != 2 {
		t.Fatalf("%d bands, want 2", len(c.Series))
	}
	for _, s := range c.Series {
		// 4 points a step; one step per unit of the width at most.
		if pts := strings.Count(s.Points, " ") + 1; pts > 4*(vcPlotW+1) {
			t.Errorf("band %s has %d points for %d samples, want at most %d", s.Version, pts, n, 4*(vcPlotW+1))
		}
	}
	if got := c.Series[0].Last; got != int(n)-1 {
		t.Errorf("the target's last count is %d, want the last sample's %d", got, int(n)-1)
	}
}

func TestBandPoints(t *testing.T) {
	// Two samples at x 0 and 10, the chart ending at 30; a band of 2 then
	// 1 hosts above 1 host of another version; y is the count itself.
	got := bandPoints([]float64{0, 10, 30}, []int{1, 1}, []int{2, 1}, func(n int) float64 { return float64(n) })
	want := "0.0,3.0 10.0,3.0 10.0,2.0 30.0,2.0 30.0,1.0 10.0,1.0 10.0,1.0 0.0,1.0"
	if got != want {
		t.Errorf("bandPoints = %q, want %q", got, want)
	}
}

func TestThresholdAndWave(t *testing.T) {
	for _, tc := range []struct {
		spec wire.RolloutSpec
		want string
	}{
		{wire.RolloutSpec{}, "at the first failed host"},
		{wire.RolloutSpec{MaxFailures: ptr(0)}, "when more than 0 hosts failed"},
		{wire.RolloutSpec{MaxFailurePercent: ptr(5.0)}, "when more than 5% of the hosts told failed"},
	} {
		if got := threshold(tc.spec); got != tc.want {
			t.Errorf("threshold(%+v) = %q, want %q", tc.spec, got, tc.want)
		}
	}
	for _, tc := range []struct {
		ro   wire.Rollout
		want string
	}{
		{wire.Rollout{RolloutSpec: wire.RolloutSpec{Waves: []float64{1, 10, 50, 100}}, State: wire.RolloutRunning}, "1 of 4 (1%)"},
		{wire.Rollout{RolloutSpec: wire.RolloutSpec{Waves: []float64{33.3, 100}}, Wave: 7, State: wire.RolloutPaused}, "2 of 2 (100%)"},
		{wire.Rollout{RolloutSpec: wire.RolloutSpec{Waves: []float64{100}}, State: wire.RolloutCompleted}, "all 1 done"},
		{wire.Rollout{State: wire.RolloutRunning}, "—"},
	} {
		if got := waveText(tc.ro); got != tc.want {
			t.Errorf("waveText(%v, wave %d) = %q, want %q", tc.ro.Waves, tc.ro.Wave, got, tc.want)
		}
	}
}

// TestRolloutGolden holds both rollout pages' whole HTML to testdata (go
// test -run TestRolloutGolden -update rewrites them).
func TestRolloutGolden(t *testing.T) {
	h, _ := newRolloutHandler(t, Options{})
	checkGolden(t, h, "/rollouts", "rollouts.golden.html")
	checkGolden(t, h, "/rollouts/ro-3", "rollout.golden.html")
}

// wantIn fails the test for each of want that page's body lacks.
func wantIn(t *testing.T, page, body string, want ...string) {
	t.Helper()
	for _, s := range want {
		if !strings.Contains(body, s) {
			t.Errorf("%s lacks %s", page, s)
		}
	}
}

// The rollout controller is what the pages read.
var _ Rollouts = (*rollout.Service)(nil)
