//go:build linux

package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berthhq/berth/control/wire"
	"github.com/berthhq/berth/internal/measure"
)

// BenchmarkDesiredPolls is issue 11's memory figure of (a): berth-control
// serve (its own process, SQLite) with 10,000 long polls of the desired
// state open (BERTH_BENCH_POLLS changes the count), each its own
// connection; its resident memory before and with them, and how long
// SIGTERM takes to stop it with them open. Target: <= 300 MiB.
func BenchmarkDesiredPolls(b *testing.B) {
	n := 10_000
	if v := os.Getenv("BERTH_BENCH_POLLS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			b.Fatalf("BERTH_BENCH_POLLS=%q: want a count", v)
		}
	}
	control := startControl(b, "sqlite://"+filepath.Join(b.TempDir(), "control.db"), "--auth", "none")
	pid := control.p.cmd.Process.Pid
	tr := &http.Transport{MaxIdleConnsPerHost: n, DisableCompression: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	resp, err := hc.Get(control.URL + wire.DesiredPath("poll-0"))
	if err != nil || resp.StatusCode != http.StatusOK {
		b.Fatalf("first GET of the desired state: %v %v", err, resp)
	}
	resp.Body.Close()
	etag := resp.Header.Get("ETag")
	time.Sleep(time.Second)
	before := rssBytes(b, pid)

	var sent, answered, closed atomic.Int64
	statuses := sync.Map{}
	var wg sync.WaitGroup
	ctx := context.Background()
	start := time.Now()
	for i := range n {
		wg.Go(func() {
			trace := &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { sent.Add(1) }}
			req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodGet,
				control.URL+wire.DesiredPath(fmt.Sprintf("poll-%05d", i))+"?wait=5m", nil)
			req.Header.Set("If-None-Match", etag)
			resp, err := hc.Do(req)
			if err != nil {
				statuses.Store(err.Error(), true)
				return
			}
			resp.Body.Close()
			answered.Add(1)
			if resp.Close {
				closed.Add(1)
			}
			statuses.Store(resp.StatusCode, true)
		})
	}
	waitFor(b, 2*time.Minute, "every poll to be sent", func() bool { return sent.Load() == int64(n) })
	opened := time.Since(start)
	// The burst of opening them leaves freed heap that the runtime gives
	// back to the system over the next seconds: the figure is the RSS
	// once settled (the largest of the last 5 samples over 30 s), the
	// first sample says the peak.
	var samples []int64
	for range 30 {
		time.Sleep(time.Second)
		samples = append(samples, rssBytes(b, pid))
	}
	peak, with := samples[0], slices.Max(samples[len(samples)-5:])
	if a := answered.Load(); a > 0 {
		b.Fatalf("%d polls were answered before anything changed", a)
	}
	stopStart := time.Now()
	control.stop()
	stopped := time.Since(stopStart)
	wg.Wait()
	var seen []string
	statuses.Range(func(k, _ any) bool { seen = append(seen, fmt.Sprint(k)); return true })
	per := float64(with-before) / float64(n)
	fmt.Printf("\n(a) berth-control serve (SQLite, --auth none) with %d long polls open (sent in %v): RSS %.1f MiB before, %.1f MiB 1 s after, %.1f MiB settled (30 s), %.1f KiB a poll (target <= 300 MiB: %s); SIGTERM stopped it in %v with them open; %d answered, %d with Connection: close, statuses %v\n",
		n, opened.Round(time.Millisecond), float64(before)/(1<<20), float64(peak)/(1<<20), float64(with)/(1<<20), per/1024, measure.Verdict(with <= 300<<20),
		stopped.Round(time.Millisecond), answered.Load(), closed.Load(), seen)
	b.ReportMetric(float64(with)/(1<<20), "RSS-MiB")
	b.ReportMetric(per/1024, "KiB/poll")
}
