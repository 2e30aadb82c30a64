//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/berthhq/berth/control/wire"
	"github.com/berthhq/berth/internal/testenv"
	"github.com/berthhq/berth/internal/testenv/chromium"
	"github.com/berthhq/berth/internal/testenv/dockerd"
	"github.com/berthhq/berth/internal/testenv/entra"
	"github.com/berthhq/berth/internal/testenv/postgres"
)

// startDockerd starts Debian's dockerd in the test's own folders (an
// engine the agent watches but does not manage) and returns its endpoint
// and the process, for the test to stop.
func startDockerd(t *testing.T) (string, *proc) {
	t.Helper()
	host := dockerd.NewHost(t)
	bin := testenv.NeedBinary(t, "dockerd")
	s := host.Settings
	p := startProc(t, nil, bin,
		"--data-root", s["data-root"].(string), "--exec-root", s["exec-root"].(string),
		"--pidfile", s["pidfile"].(string), "-H", host.Endpoint,
		"--bridge=none", "--iptables=false", "--ip6tables=false")
	t.Cleanup(func() {
		if !p.exited() {
			_ = p.stop(30 * time.Second)
		}
	})
	waitFor(t, 60*time.Second, "dockerd to answer", func() bool {
		if p.exited() {
			t.Fatalf("dockerd exited: %v\n%s", p.err, p.logs)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := host.Docker(ctx, "version")
		return err == nil
	})
	return host.Endpoint, p
}

// fakeIMDS answers the VM id as Azure's Instance Metadata Service does.
func fakeIMDS(t *testing.T, vmID string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Metadata") != "true" || r.URL.Path != "/metadata/instance/compute/vmId" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		fmt.Fprint(w, vmID)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestReportsEndToEnd is issue 4's end-to-end test, once per store: an
// agent with a managed identity (a loopback Entra that azidentity is
// pointed at) and its VM id from IMDS reports to berth-control; the host
// appears with its state; stopping dockerd turns it Unhealthy on /healthz,
// in `hosts show` and on the web page within one report interval.
func TestReportsEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts dockerd, PostgreSQL, Chromium")
	}
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			var db string
			if backend == "sqlite" {
				db = "sqlite://" + filepath.Join(t.TempDir(), "control.db")
			} else {
				db = postgres.Start(t).NewDatabase(t)
			}
			testReportsEndToEnd(t, backend, db)
		})
	}
}

func testReportsEndToEnd(t *testing.T, backend, db string) {
	const audience = "api://berth-control"
	const interval = 3 * time.Second
	fe := entra.Start(t, entra.Options{})
	fe.UseFor(t) // the agent inherits the managed identity endpoint
	vmID := "4a1b6c2e-" + backend + "-e2e"
	imds := fakeIMDS(t, vmID)

	control := startControl(t, db, "--auth", "entra,token",
		"--entra-tenant", fe.Tenant, "--entra-audience", audience, "--entra-authority", fe.URL)
	operator := []string{"BERTH_TOKEN=" + control.issue("operator", "e2e")}
	endpoint, dockerd := startDockerd(t)

	agent := newAgent(t, map[string]any{
		"agent":   map[string]any{"labels": map[string]string{"pool": "e2e", "store": backend}},
		"control": map[string]any{"url": control.URL, "auth": "managed-identity", "audience": audience, "reportInterval": interval.String()},
		"engine":  map[string]any{"managed": false, "endpoint": endpoint},
		"cache":   map[string]any{"enabled": false},
	}, "BERTH_IMDS_ENDPOINT="+imds)
	agent.start()

	show := func() wire.HostDetail {
		t.Helper()
		// The CLI prints the interval as a duration string ("3s"), the
		// rest as the API's HostDetail.
		var shown struct {
			wire.HostDetail
			Interval string `json:"interval"`
		}
		out := control.cli(operator, "hosts", "show", vmID, "--server", control.URL, "--output", "json")
		if err := json.Unmarshal([]byte(out), &shown); err != nil {
			t.Fatalf("hosts show --output json: %v\n%s", err, out)
		}
		h := shown.HostDetail
		var err error
		if h.Interval, err = time.ParseDuration(shown.Interval); err != nil {
			t.Fatalf("hosts show --output json: interval %q is not a duration: %v", shown.Interval, err)
		}
		return h
	}
	var h wire.HostDetail
	waitFor(t, 60*time.Second, "the host to report Healthy", func() bool {
		page := control.cli(operator, "hosts", "list", "--label", "pool=e2e", "--server", control.URL, "--output", "json")
		if !strings.Contains(page, vmID) {
			return false
		}
		h = show()
		return h.State == "Healthy"
	})
	if code, state := agent.healthz(); code != http.StatusOK || state != "Healthy" {
		t.Errorf("/healthz = %d %s while control shows Healthy", code, state)
	}
	if h.Labels["pool"] != "e2e" || h.Labels["store"] != backend {
		t.Errorf("labels at control = %v", h.Labels)
	}
	if !h.Engine.Active || !h.Engine.Healthy || h.Engine.Version == "" {
		t.Errorf("engine at control = %+v, want the running dockerd", h.Engine)
	}
	if !slices.ContainsFunc(h.Events, func(e wire.EventRecord) bool { return e.Kind == "agent.started" }) {
		t.Errorf("events at control lack agent.started: %+v", h.Events)
	}
	if h.Interval != interval {
		t.Errorf("interval at control = %v, want %v", h.Interval, interval)
	}

	// The web page, as an operator signs in and looks.
	browser := chromium.Start(t)
	var token string
	for _, kv := range operator {
		token = strings.TrimPrefix(kv, "BERTH_TOKEN=")
	}
	if err := chromedp.Do(browser,
		chromedp.Navigate(control.URL+"/login"),
		chromedp.WaitVisible(chromedp.CSS(`input[name="token"]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name="token"]`), token),
		chromedp.Submit(chromedp.CSS(`input[name="token"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#fleet`)),
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`#fleet tr[data-host=%q] td.id a`, vmID))),
		chromedp.WaitVisible(chromedp.CSS(`#state`)),
	); err != nil {
		t.Fatalf("sign in and open the host on the web page: %v", err)
	}
	pageState := func() string {
		ctx, cancel := context.WithTimeout(browser, 5*time.Second)
		defer cancel()
		if err := chromedp.Do(ctx, chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(`#state`))); err != nil {
			return ""
		}
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#state`)))
		if err != nil {
			return ""
		}
		return strings.TrimSpace(s)
	}
	if s := pageState(); s != "Healthy" {
		t.Errorf("web page shows %q, want Healthy", s)
	}

	// Stop dockerd: within one interval the host is Unhealthy everywhere.
	stopped := time.Now()
	if err := dockerd.stop(30 * time.Second); err != nil {
		t.Logf("dockerd: %v", err)
	}
	var atHealthz, atControl, atPage time.Duration
	deadline := stopped.Add(interval + 5*time.Second)
	for (atHealthz == 0 || atControl == 0 || atPage == 0) && time.Now().Before(deadline) {
		if atHealthz == 0 {
			if code, state := agent.healthz(); code == http.StatusServiceUnavailable && state == "Unhealthy" {
				atHealthz = time.Since(stopped)
			}
		}
		if atControl == 0 && show().State == "Unhealthy" {
			atControl = time.Since(stopped)
		}
		if atPage == 0 && pageState() == "Unhealthy" {
			atPage = time.Since(stopped)
			chromium.SaveScreenshot(t, browser, "host-unhealthy-"+backend+".png")
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("after dockerd stopped (report interval %v): /healthz Unhealthy after %v, hosts show after %v, web page after %v",
		interval, atHealthz.Round(time.Millisecond), atControl.Round(time.Millisecond), atPage.Round(time.Millisecond))
	// Within one interval, plus what delivery takes on a busy machine.
	limit := interval + 2*time.Second
	for what, at := range map[string]time.Duration{"/healthz": atHealthz, "hosts show": atControl, "the web page": atPage} {
		if at == 0 || at > limit {
			t.Errorf("%s did not show Unhealthy within %v of dockerd stopping (at %v)", what, limit, at)
		}
	}
	h = show()
	failing := slices.IndexFunc(h.Checks, func(c wire.Check) bool { return c.Status == "fail" })
	if failing < 0 {
		t.Errorf("control shows no failing check: %+v", h.Checks)
	}
	if !slices.ContainsFunc(h.Events, func(e wire.EventRecord) bool { return e.Kind == "health.changed" }) {
		t.Logf("events at control: %+v", h.Events)
	}
	if err := agent.p.stop(30 * time.Second); err != nil {
		t.Errorf("berth-agent run: %v\n%s", err, agent.p.logs)
	}
}
