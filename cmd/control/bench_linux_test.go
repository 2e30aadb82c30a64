//go:build linux

package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berthhq/berth/control/store"
	"github.com/berthhq/berth/control/wire"
	"github.com/berthhq/berth/internal/azstore"
	"github.com/berthhq/berth/internal/measure"
	"github.com/berthhq/berth/internal/testenv"
	"github.com/berthhq/berth/internal/testenv/azurite"
	"github.com/berthhq/berth/internal/testenv/dockerd"
	"github.com/berthhq/berth/internal/testenv/postgres"
	"github.com/berthhq/berth/packaging/enginebundle/enginebundletest"
	"github.com/berthhq/berth/packaging/tufrepo"
	"github.com/berthhq/berth/telemetry/report"
)

// Issue 4's benchmark (a): the ingest rate of berth-control serve (its own
// process) on SQLite and on PostgreSQL (fsync on), loaded by simulated
// hosts that send through the agent's own report.Client: one heartbeat of
// 10 checks per report, gzip, a bearer token of its own per host. Target:
// >= 5,000 reports/s, and p99 <= 50 ms at 2,000 reports/s.

const (
	benchHosts   = 1000
	benchWorkers = 256
	benchRuns    = 3
	benchSpan    = 8 * time.Second
	pacedRate    = 2000
)

// staticToken is a simulated host's issued token.
type staticToken string

func (s staticToken) Token(context.Context, bool) (string, error) { return string(s), nil }

// simHost is one simulated agent: its client and its next number.
type simHost struct {
	mu     sync.Mutex
	id     string
	client *report.Client
	seq    uint64
}

// send posts one heartbeat and returns how long the endpoint took.
func (h *simHost) send(ctx context.Context) (time.Duration, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seq++
	now := time.Now().UTC()
	hb := &wire.Heartbeat{State: "Healthy", AgentVersion: "bench", IntervalSeconds: 60,
		Engine: wire.Engine{Flavor: "docker", Version: "27.5.1", Active: true, Healthy: true},
		Labels: map[string]string{"pool": "bench", "region": "westeurope"}, OSBuild: "Debian GNU/Linux 12"}
	for i := range 10 {
		hb.Checks = append(hb.Checks, wire.Check{Name: fmt.Sprintf("check-%d", i), Status: "ok", Message: "fine", Time: now})
	}
	start := time.Now()
	_, err := h.client.Send(ctx, wire.Batch{Agent: h.id, Records: []wire.Record{{Seq: h.seq, Kind: wire.KindHeartbeat, Time: now, Heartbeat: hb}}})
	return time.Since(start), err
}

// fleet issues tokens for benchHosts agents in the store at dsn and
// returns their clients for the endpoint at url.
func fleet(b *testing.B, dsn, url string) []*simHost {
	b.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, dsn, store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	hc := report.NewHTTPClient(nil)
	if tr, ok := hc.HTTPClient.Transport.(*http.Transport); ok {
		// Each simulated host would hold its own connection.
		tr.MaxIdleConnsPerHost = benchWorkers * 2
	}
	hosts := make([]*simHost, benchHosts)
	for i := range hosts {
		id := fmt.Sprintf("bench-%05d", i)
		_, secret, err := st.IssueToken(ctx, store.RoleAgent, id, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		c, err := report.NewClient(report.ClientOptions{URL: url, Tokens: staticToken(secret), HTTP: hc})
		if err != nil {
			b.Fatal(err)
		}
		hosts[i] = &simHost{id: id, client: c}
	}
	return hosts
}

// flat sends as fast as benchWorkers callers can for benchSpan and
// returns reports per second and the p99 latency.
func flat(b *testing.B, hosts []*simHost) (float64, time.Duration) {
	var n atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	ctx, cancel := context.WithTimeout(context.Background(), benchSpan)
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	for w := range benchWorkers {
		wg.Go(func() {
			var mine []time.Duration
			// Worker w owns hosts w, w+workers, …, so a host's numbers go
			// out in order.
			for i := w; ctx.Err() == nil; i += benchWorkers {
				d, err := hosts[i%len(hosts)].send(ctx)
				if err != nil {
					if ctx.Err() == nil {
						b.Errorf("send: %v", err)
					}
					break
				}
				n.Add(1)
				mine = append(mine, d)
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	return float64(n.Load()) / time.Since(start).Seconds(), percentile(lat, 0.99)
}

// paced sends pacedRate reports a second on a fixed schedule for benchSpan
// and returns the p50 and p99 latency, each measured from the moment the
// report was due, so that a slow answer delays nothing unseen.
func paced(b *testing.B, hosts []*simHost) (time.Duration, time.Duration) {
	every := time.Second / pacedRate
	total := int(benchSpan / every)
	lat := make([]time.Duration, total)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range total {
		due := start.Add(time.Duration(i) * every)
		time.Sleep(time.Until(due))
		wg.Go(func() {
			if _, err := hosts[i%len(hosts)].send(context.Background()); err != nil {
				b.Errorf("send: %v", err)
			}
			lat[i] = time.Since(due)
		})
	}
	wg.Wait()
	return percentile(lat, 0.5), percentile(lat, 0.99)
}

// roundMS rounds durations to 0.1 ms for printing.
func roundMS(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(100 * time.Microsecond)
	}
	return out
}

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// BenchmarkIngest is issue 4's (a).
func BenchmarkIngest(b *testing.B) {
	// The load generator simulates a fleet with short-lived garbage per
	// report; it should not take CPU from the endpoint by collecting it.
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	for _, backend := range []string{"sqlite", "postgres"} {
		var dsn string
		if backend == "sqlite" {
			dsn = "sqlite://" + filepath.Join(b.TempDir(), "control.db")
		} else {
			dsn = postgres.StartWith(b, postgres.Options{Fsync: true}).NewDatabase(b)
		}
		control := startControl(b, dsn, "--auth", "token")
		hosts := fleet(b, dsn, control.URL)
		paced(b, hosts[:100]) // warm connections and the server
		var rates []float64
		var p99s, pp50s, pp99s []time.Duration
		for range benchRuns {
			r, p99 := flat(b, hosts)
			rates, p99s = append(rates, r), append(p99s, p99)
			p50, pp99 := paced(b, hosts)
			pp50s, pp99s = append(pp50s, p50), append(pp99s, pp99)
		}
		slices.Sort(rates)
		rate := rates[len(rates)/2]
		pp99 := measure.Median(pp99s)
		fmt.Printf("\n(a) berth-control on %s, %d simulated hosts through report.Client: %.0f reports/s flat out with %d callers (p99 %v; runs %.0f; target >= 5000: %s); at %d/s p50 %v, p99 %v (runs %v; target p99 <= 50ms: %s)\n",
			backend, benchHosts, rate, benchWorkers, measure.Median(p99s).Round(time.Millisecond), rates, measure.Verdict(rate >= 5000),
			pacedRate, measure.Median(pp50s).Round(100*time.Microsecond), pp99.Round(100*time.Microsecond), roundMS(pp99s), measure.Verdict(pp99 <= 50*time.Millisecond))
		b.ReportMetric(rate, backend+"-reports/s")
		b.ReportMetric(float64(pp99.Microseconds())/1000, backend+"-p99-ms@2000/s")
		control.stop()
	}
}

// Issue 4's benchmark (b): berth-agent run idle — the engine installed
// from a signed package in Azurite and running under the agent, the cache
// listening, reports every 10 s to berth-control — its resident memory and
// CPU over 5 minutes (BERTH_BENCH_IDLE shortens it for a quick run).
// Target: <= 40 MiB RSS and <= 1% of one core.
func BenchmarkAgentIdle(b *testing.B) {
	span := 5 * time.Minute
	if v := os.Getenv("BERTH_BENCH_IDLE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("BERTH_BENCH_IDLE: %v", err)
		}
		span = d
	}
	const version = "20.10.24-1"
	host := dockerd.NewHost(b)
	az := azurite.Start(b)
	work := b.TempDir()
	repo := filepath.Join(work, "repo")
	if err := tufrepo.Init(repo); err != nil {
		b.Fatal(err)
	}
	pkg := enginebundletest.Docker(b, work, version, false)
	if _, err := tufrepo.Add(repo, tufrepo.Package{Kind: "engine", Flavor: "docker", Version: version, OS: "linux", Arch: "amd64"}, pkg); err != nil {
		b.Fatal(err)
	}
	keyFile := az.KeyFile(b)
	if err := tufrepo.Publish(context.Background(), repo, az.ContainerURL("releases"), azstore.Credential{Auth: "shared-key", KeyFile: keyFile}); err != nil {
		b.Fatal(err)
	}
	db := "sqlite://" + filepath.Join(work, "control.db")
	control := startControl(b, db, "--auth", "token")
	tokenFile := filepath.Join(work, "agent.token")
	if err := os.WriteFile(tokenFile, []byte(control.issue("agent", "idle-host")), 0o600); err != nil {
		b.Fatal(err)
	}
	agent := newAgent(b, map[string]any{
		"agent":   map[string]any{"id": "idle-host"},
		"control": map[string]any{"url": control.URL, "auth": "token", "tokenFile": tokenFile, "reportInterval": "10s"},
		"engine": map[string]any{"endpoint": host.Endpoint, "settings": host.Settings, "version": version,
			"releases": map[string]any{"url": az.ContainerURL("releases"), "auth": "shared-key", "keyFile": keyFile,
				"rootFile": filepath.Join(repo, "metadata", "root.json")}},
		"cache": map[string]any{"listen": testenv.FreePort(b)},
	})
	// The state folder must be the dockerd.Host's: its cleanup stops the
	// engine the agent starts there.
	agent.setStateDir(b, host.Dir)
	agent.start()
	waitFor(b, 2*time.Minute, "the engine to be installed and the host Healthy", func() bool {
		code, state := agent.healthz()
		return code == http.StatusOK && state == "Healthy"
	})
	time.Sleep(20 * time.Second) // settle: first reports, caches filled
	pid := agent.p.cmd.Process.Pid
	cpu0, t0 := cpuTime(b, pid), time.Now()
	var rss []int64
	for time.Since(t0) < span {
		rss = append(rss, rssBytes(b, pid))
		time.Sleep(5 * time.Second)
	}
	cpu := (cpuTime(b, pid) - cpu0).Seconds() / time.Since(t0).Seconds()
	rss = append(rss, rssBytes(b, pid))
	slices.Sort(rss)
	med, top := rss[len(rss)/2], rss[len(rss)-1]
	fmt.Printf("\n(b) berth-agent run idle over %v (engine running under it, cache listening, reports every 10s): RSS median %.1f MiB, max %.1f MiB (target <= 40 MiB: %s); CPU %.2f%% of one core (target <= 1%%: %s)\n",
		span, float64(med)/(1<<20), float64(top)/(1<<20), measure.Verdict(top <= 40<<20), 100*cpu, measure.Verdict(cpu <= 0.01))
	b.ReportMetric(float64(top)/(1<<20), "max-RSS-MiB")
	b.ReportMetric(100*cpu, "CPU-%")
	if err := agent.p.stop(30 * time.Second); err != nil {
		b.Errorf("berth-agent run: %v", err)
	}
}

// rssBytes reads a process's resident set from /proc.
func rssBytes(b *testing.B, pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb << 10
		}
	}
	b.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// cpuTime reads a process's user and system CPU time from /proc.
func cpuTime(b *testing.B, pid int) time.Duration {
	d, ok := procCPU(pid)
	if !ok {
		b.Fatalf("read /proc/%d/stat", pid)
	}
	return d
}
