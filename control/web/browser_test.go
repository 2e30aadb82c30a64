package web

import (
	"context"
	"net/http/httptest"
	"net/url"
	"regexp"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/google/go-cmp/cmp"

	"github.com/berthhq/berth/control/wire"
	"github.com/berthhq/berth/internal/testenv/chromium"
)

// TestBrowser drives the page in Debian's Chromium: the fleet table and the
// chart, a click through to the Unhealthy host and what its page shows,
// then the auto-refresh turning a watched host Unhealthy. Screenshots of
// both pages go to the test's artifact directory (go test -artifacts
// -outputdir DIR keeps them; the test logs the paths).
func TestBrowser(t *testing.T) {
	browser := chromium.Start(t)
	ctx, cancel := context.WithTimeout(browser, 20*time.Second)
	defer cancel()

	now := time.Now()
	hosts := []seedHost{
		{
			ID: "web-1", State: "Healthy", Flavor: "docker", Engine: "27.3.1", Agent: "0.4.0",
			Labels:   map[string]string{"ring": "canary"},
			Checks:   []wire.Check{{Name: "engine", Status: "ok", Time: now}},
			Received: now.Add(-3 * time.Second),
		},
		{
			ID: "web-2", State: "Degraded", Flavor: "containerd", Engine: "1.7.22", Agent: "0.4.0",
			Labels:   map[string]string{"ring": "prod"},
			Checks:   []wire.Check{{Name: "cache", Status: "warn", Message: "blob tier slow", Time: now}},
			Received: now.Add(-2 * time.Second),
		},
		{
			ID: "web-3", State: "Unhealthy", Flavor: "docker", Engine: "26.1.4", Agent: "0.3.9",
			Labels: map[string]string{"ring": "prod", "team": "<script>alert(1)</script>"},
			Checks: []wire.Check{
				{Name: "engine", Status: "fail", Message: "dockerd is not answering on its socket", Time: now},
				{Name: "cache", Status: "ok", Time: now},
			},
			Events: []wire.Event{
				{Kind: "engine.upgrade.started", Message: "upgrading docker", Fields: map[string]string{"to": "27.3.1"}},
				{Kind: "engine.restart.failed", Message: "dockerd exited with status 1", Fields: map[string]string{"attempt": "3"}},
			},
			Received: now.Add(-time.Second),
		},
	}
	st := seed(t, hosts)
	// The pages reload every second, so the last step sees a change soon.
	srv := httptest.NewServer(New(Options{Store: st, Refresh: time.Second}))
	defer srv.Close()

	// The fleet, paused so the page holds still while it is read.
	must(t, chromedp.Do(ctx,
		chromedp.Navigate(srv.URL+"/?refresh=off"),
		chromedp.WaitVisible(chromedp.CSS("#fleet")),
	))
	waitLoaded(t, ctx)
	type row struct{ ID, State, Engine, Agent, Last, Title string }
	rows := eval[[]row](t, ctx, `[...document.querySelectorAll("#fleet tbody tr[data-host]")].map(tr => ({
		ID: tr.dataset.host,
		State: tr.querySelector(".state").textContent,
		Engine: tr.querySelector(".engine").textContent,
		Agent: tr.querySelector(".agent").textContent,
		Last: tr.querySelector(".last").textContent,
		Title: tr.querySelector(".last").title,
	}))`)
	relRE := regexp.MustCompile(`^(just now|\d+ s ago)$`)
	absRE := regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$`)
	for i := range rows {
		if !relRE.MatchString(rows[i].Last) || !absRE.MatchString(rows[i].Title) {
			t.Errorf("row %s: last report %q (title %q), want seconds ago and an absolute time", rows[i].ID, rows[i].Last, rows[i].Title)
		}
		rows[i].Last, rows[i].Title = "", ""
	}
	wantRows := []row{
		{ID: "web-1", State: "Healthy", Engine: "docker 27.3.1", Agent: "0.4.0"},
		{ID: "web-2", State: "Degraded", Engine: "containerd 1.7.22", Agent: "0.4.0"},
		{ID: "web-3", State: "Unhealthy", Engine: "docker 26.1.4", Agent: "0.3.9"},
	}
	if diff := cmp.Diff(wantRows, rows); diff != "" {
		t.Errorf("fleet rows (-want +got):\n%s", diff)
	}
	// The hostile label is text in the page, not a script that ran.
	if got := eval[string](t, ctx, `document.querySelector('#fleet tr[data-host="web-3"] .labels').textContent`); !regexp.MustCompile(`team=<script>alert\(1\)</script>`).MatchString(got) {
		t.Errorf("web-3's labels read %q", got)
	}
	if n := eval[int](t, ctx, `document.querySelectorAll("script").length`); n != 0 {
		t.Errorf("the page holds %d script elements", n)
	}

	// The chart: a bar per state and per engine version, drawn to scale.
	type barInfo struct {
		Label string
		Count string
		Width float64
	}
	bars := func(id string) []barInfo {
		return eval[[]barInfo](t, ctx, `[...document.querySelectorAll("#`+id+` g.bar")].map(g => ({
			Label: g.dataset.label, Count: g.dataset.count, Width: g.querySelector("rect").getBBox().width}))`)
	}
	wantState := []barInfo{{"Healthy", "1", 200}, {"Degraded", "1", 200}, {"Unhealthy", "1", 200}, {"Initializing", "0", 0}, {"Stale", "0", 0}}
	if diff := cmp.Diff(wantState, bars("chart-state")); diff != "" {
		t.Errorf("chart by state (-want +got):\n%s", diff)
	}
	wantEngine := []barInfo{{"27.3.1", "1", 200}, {"26.1.4", "1", 200}, {"1.7.22", "1", 200}}
	if diff := cmp.Diff(wantEngine, bars("chart-engine")); diff != "" {
		t.Errorf("chart by engine version (-want +got):\n%s", diff)
	}
	chromium.SaveScreenshot(t, ctx, "fleet.png")

	// Click through to the Unhealthy host.
	must(t, chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`#fleet tr[data-host="web-3"] td.id a`)),
		chromedp.WaitVisible(chromedp.CSS("#checks")),
	))
	waitLoaded(t, ctx)
	loc, err := chromedp.Run(ctx, chromedp.Location())
	must(t, err)
	if u, err := url.Parse(loc); err != nil || u.Path != "/hosts/web-3" || u.Query().Get("refresh") != "off" {
		t.Errorf("after the click the browser is at %s, want /hosts/web-3?refresh=off", loc)
	}
	state, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#state")))
	must(t, err)
	if state != "Unhealthy" {
		t.Errorf("the host page says %q, want Unhealthy", state)
	}
	type check struct{ Name, Status, Message, Colour string }
	checks := eval[[]check](t, ctx, `[...document.querySelectorAll("#checks tbody tr")].map(tr => ({
		Name: tr.querySelector(".name").textContent,
		Status: tr.querySelector("span.status").textContent,
		Message: tr.querySelector(".message").textContent,
		Colour: getComputedStyle(tr.querySelector("span.status")).backgroundColor,
	}))`)
	wantChecks := []check{
		{"engine", "fail", "dockerd is not answering on its socket", "rgb(198, 40, 40)"},
		{"cache", "ok", "", "rgb(46, 125, 50)"},
	}
	if diff := cmp.Diff(wantChecks, checks); diff != "" {
		t.Errorf("checks (-want +got):\n%s", diff)
	}
	type event struct{ Kind, Message, Fields string }
	events := eval[[]event](t, ctx, `[...document.querySelectorAll("#events tbody tr")].map(tr => ({
		Kind: tr.querySelector(".kind").textContent,
		Message: tr.querySelector(".message").textContent,
		Fields: tr.querySelector(".fields").textContent.trim(),
	}))`)
	wantEvents := []event{
		{"engine.restart.failed", "dockerd exited with status 1", "attempt=3"},
		{"engine.upgrade.started", "upgrading docker", "to=27.3.1"},
	}
	if diff := cmp.Diff(wantEvents, events); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	chromium.SaveScreenshot(t, ctx, "host-web-3.png")

	// An operator watching web-1 sees it turn Unhealthy without touching
	// the page.
	must(t, chromedp.Do(ctx,
		chromedp.Navigate(srv.URL+"/hosts/web-1"),
		chromedp.WaitVisible(chromedp.CSS("#state")),
	))
	turned := hosts[0]
	turned.State = "Unhealthy"
	turned.Checks = []wire.Check{{Name: "engine", Status: "fail", Message: "dockerd died", Time: time.Now()}}
	turned.Received = time.Now()
	ingest(t, st, turned, 2)
	deadline := time.Now().Add(8 * time.Second)
	for {
		// A reload may be under way: an error or a missing element just
		// means "look again".
		got, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(document.getElementById("state") || {}).textContent || ""`))
		if err == nil && got == "Unhealthy" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("web-1's page still says %q (err %v) 8 s after it reported Unhealthy", got, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitLoaded waits for the page's load event: an element can be in the DOM
// before the stylesheet that colours it has arrived.
func waitLoaded(t *testing.T, ctx context.Context) {
	t.Helper()
	_, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.readyState === "complete"`))
	must(t, err)
}

// eval runs a JavaScript expression in the page and decodes its value.
func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
