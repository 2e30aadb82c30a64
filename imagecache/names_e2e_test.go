package imagecache_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/berthhq/berth/imagecache"
	"github.com/berthhq/berth/imagecache/cas"
	"github.com/berthhq/berth/imagecache/imagetest"
	"github.com/berthhq/berth/imagecache/upstream"
	"github.com/berthhq/berth/internal/units"

	"github.com/berthhq/berth/internal/testenv/registry"
)

// heapAndRSS returns the live heap after a collection, and the process's
// resident set (0 where /proc is not there).
func heapAndRSS() (heap, rss uint64) {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				rss = kb << 10
			}
		}
	}
	return ms.HeapAlloc, rss
}

// each runs fn for 0…n-1 on `workers` goroutines.
func each(n, workers int, fn func(i int)) {
	work := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				fn(i)
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
}

// getStatus GETs url, reads the body away, and checks the status is one
// of want. Safe on any goroutine.
func getStatus(t *testing.T, hc *http.Client, url string, want ...int) {
	resp, err := hc.Get(url)
	if err != nil {
		t.Errorf("GET %s: %v", url, err)
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if !slices.Contains(want, resp.StatusCode) {
		t.Errorf("GET %s: %s, want one of %v", url, resp.Status, want)
	}
}

// TestManyRegistryNamesBoundedMemory is issue 9's third attack: every
// distinct registry name (?ns= or a path prefix) made an upstream client
// kept for ever (RSS 25 → 127 MB after 12,000 names). 10,000 distinct
// names must grow the heap by at most 16 MiB. The names are loopback
// addresses where nothing listens, so that each is refused at once.
func TestManyRegistryNamesBoundedMemory(t *testing.T) {
	const names = 10000
	cfg := imagecache.Config{Enabled: true, Listen: "127.0.0.1:0", Local: imagecache.LocalConfig{MaxSize: 64 * units.MiB}}
	s, err := imagecache.NewService(cfg, t.TempDir(), nil, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: time.Minute}
	ask := func(i int) {
		// 127.0.<a>.<b>:9, nothing listens there: refused at once.
		url := fmt.Sprintf("http://%s/v2/team/app/manifests/v1?ns=127.0.%d.%d:9", s.Addr(), 1+i/250, 1+i%250)
		getStatus(t, hc, url, http.StatusBadGateway, http.StatusNotFound)
	}
	each(200, 64, ask) // warm: pools, buffers, the first clients
	heap0, rss0 := heapAndRSS()
	start := time.Now()
	each(names, 256, ask)
	hc.CloseIdleConnections()
	heap1, rss1 := heapAndRSS()
	grew := int64(heap1) - int64(heap0)
	t.Logf("%d distinct registry names in %v: heap %d → %d MiB (%+.1f MiB), RSS %d → %d MiB (%+.1f MiB)", names, time.Since(start).Round(time.Millisecond),
		heap0>>20, heap1>>20, float64(grew)/(1<<20), rss0>>20, rss1>>20, (float64(rss1)-float64(rss0))/(1<<20))
	if grew > 16<<20 {
		t.Errorf("the heap grew by %.1f MiB over %d distinct registry names; want at most 16 MiB", float64(grew)/(1<<20), names)
	}
	if !raceEnabled && rss1 > rss0 && rss1-rss0 > 16<<20 {
		t.Errorf("RSS grew by %.1f MiB over %d distinct registry names; want at most 16 MiB", float64(rss1-rss0)/(1<<20), names)
	}
}

// TestRegistryMetricLabelsBounded: 2,000 registry names that all answer
// (a wildcard registry) must not make 10,000 metric series: registries
// the config does not name share one `other` series.
func TestRegistryMetricLabelsBounded(t *testing.T) {
	const names = 2000
	reg := registry.Start(t, registry.Options{})
	imagetest.Seed(t, reg.URL, "team/app", "v1", imagetest.RandomLayer(1000))
	up, err := upstream.New(upstream.Options{Registry: reg.Addr, Config: upstream.Config{Endpoint: reg.URL}})
	if err != nil {
		t.Fatal(err)
	}
	pr := prometheus.NewRegistry()
	srv := serveCache(t, imagecache.Options{
		Tiers:      []cas.Tier{newDiskTier(t)},
		Upstream:   func(string) (imagecache.Upstream, error) { return up, nil }, // every name answers
		SpoolDir:   t.TempDir(),
		Metrics:    imagecache.NewMetrics(pr),
		Registries: []string{reg.Addr},
	})
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 32}, Timeout: time.Minute}
	each(names, 32, func(i int) {
		url := fmt.Sprintf("%s/v2/team/app/manifests/v1?ns=r%d.example", srv.URL, i)
		if i == 0 {
			url = srv.URL + "/v2/" + reg.Addr + "/team/app/manifests/v1"
		}
		getStatus(t, hc, url, http.StatusOK)
	})
	series := map[string]int{}
	mfs, err := pr.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "registry" {
					series[mf.GetName()]++
				}
			}
		}
	}
	t.Logf("series with a registry label after %d names: %v", names, series)
	for name, n := range series {
		if n > 2 { // the configured registry and `other`
			t.Errorf("%s has %d series after %d registry names; want the configured registry's and one `other`", name, n, names)
		}
	}
}
