package store_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berthhq/berth/control/store"
	"github.com/berthhq/berth/control/store/storetest"
	"github.com/berthhq/berth/control/wire"
	"github.com/berthhq/berth/internal/testenv/postgres"
)

func TestSQLite(t *testing.T) {
	storetest.Run(t, func(t *testing.T) string {
		return "sqlite://" + filepath.Join(t.TempDir(), "control.db")
	})
}

func TestPostgres(t *testing.T) {
	pg := postgres.Start(t)
	storetest.Run(t, func(t *testing.T) string { return pg.NewDatabase(t) })
}

func TestOpenBadDSN(t *testing.T) {
	ctx := context.Background()
	// A file where the database's folder should be: the folder cannot be
	// made.
	blocker := filepath.Join(t.TempDir(), "blocker")
	if err := os.WriteFile(blocker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ dsn, want string }{
		{"mysql://u:secret@h/db", `unsupported database scheme "mysql": want sqlite://PATH or postgres://`},
		{"control.db", `has no scheme: want sqlite://PATH or postgres://`},
		{"", `has no scheme`},
		{"sqlite://", "needs a file path"},
		{"sqlite://x.db?mode=ro", "options after ? are not supported"},
		{"sqlite://:memory:", "in-memory"},
		{"sqlite://" + filepath.Join(blocker, "dir", "x.db"), "open store: create the folder of"},
		{"postgres://u:pw@127.0.0.1:bad/db", "open store: postgres"},
	} {
		s, err := store.Open(ctx, c.dsn, store.Options{})
		if err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded", c.dsn)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("Open(%q) = %v, want it to say %q", c.dsn, err, c.want)
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("Open(%q) error shows the password: %v", c.dsn, err)
		}
	}
}

func TestOpenSQLitePathForms(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	// A folder that does not exist yet is made (the default database's
	// folder on a new control host).
	for _, dsn := range []string{"sqlite://rel.db", "sqlite://./sub/../rel2.db", "sqlite://" + filepath.Join(dir, "abs.db"), "sqlite://" + filepath.Join(dir, "new", "dir", "c.db")} {
		if dsn == "sqlite://./sub/../rel2.db" {
			os.Mkdir(filepath.Join(dir, "sub"), 0o755)
		}
		s, err := store.Open(context.Background(), dsn, store.Options{})
		if err != nil {
			t.Errorf("Open(%q): %v", dsn, err)
			continue
		}
		if err := s.Ping(context.Background()); err != nil {
			t.Errorf("Ping(%q): %v", dsn, err)
		}
		s.Close()
	}
	for _, f := range []string{"rel.db", "rel2.db", "abs.db"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("%s not created: %v", f, err)
		}
	}
}

// report is a typical report: one heartbeat with ten checks.
func report(agent string, seq uint64) wire.Batch {
	r := storetest.HB(seq, "Healthy")
	r.Heartbeat.Labels = map[string]string{"env": "prod", "berth.io/pool": "general"}
	r.Heartbeat.Cache = map[string]float64{"hits": 1234, "misses": 56, "bytes.disk": 1 << 30}
	r.Heartbeat.OSBuild = "Ubuntu 24.04.2 LTS"
	r.Heartbeat.Checks = nil
	for i := 0; i < 10; i++ {
		r.Heartbeat.Checks = append(r.Heartbeat.Checks, wire.Check{
			Name: fmt.Sprintf("check.%d", i), Status: "ok", Message: "all good here, nothing to report", Time: storetest.T0,
		})
	}
	return wire.Batch{Agent: agent, Records: []wire.Record{r}}
}

// BenchmarkIngest ingests reports from many agents by many concurrent
// callers, as the HTTP server does; it reports reports/s and the p99 of
// one Ingest's latency.
func BenchmarkIngest(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) {
		benchIngest(b, "sqlite://"+filepath.Join(b.TempDir(), "control.db"))
	})
	b.Run("postgres", func(b *testing.B) {
		// fsync on: commit throughput is what is measured.
		pg := postgres.StartWith(b, postgres.Options{Fsync: true})
		benchIngest(b, pg.NewDatabase(b))
	})
}

// BenchmarkIngestPaced offers reports at a fixed 2,000/s (open loop, each
// on its own goroutine, as HTTP requests arrive) and reports the p99 of
// one Ingest's latency at that load.
func BenchmarkIngestPaced(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) {
		benchPaced(b, "sqlite://"+filepath.Join(b.TempDir(), "control.db"), 2000)
	})
	b.Run("postgres", func(b *testing.B) {
		pg := postgres.StartWith(b, postgres.Options{Fsync: true})
		benchPaced(b, pg.NewDatabase(b), 2000)
	})
}

func benchPaced(b *testing.B, dsn string, rate int) {
	ctx := context.Background()
	s, err := store.Open(ctx, dsn, store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const agents = 2000
	lat := make([]time.Duration, b.N)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if d := time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))); d > 0 {
			time.Sleep(d)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			_, err := s.Ingest(ctx, report(fmt.Sprintf("vm-%05d", i%agents), uint64(i/agents+1)), storetest.T0)
			lat[i] = time.Since(t0)
			if err != nil {
				b.Error(err)
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "reports/s")
	b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(percentile(lat, 0.50).Microseconds())/1000, "p50-ms")
}

func benchIngest(b *testing.B, dsn string) {
	ctx := context.Background()
	s, err := store.Open(ctx, dsn, store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const agents = 2000
	seqs := make([]atomic.Uint64, agents)
	var next atomic.Uint64
	lat := make([]time.Duration, 0, 1<<16)
	latC := make(chan []time.Duration, 1024)
	b.SetParallelism(32) // many concurrent HTTP requests per core
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		var mine []time.Duration
		for pb.Next() {
			// Each agent's reports come one at a time, in order, as from
			// its outbox: an agent is claimed by one caller at a time.
			a := int(next.Add(1) % agents)
			seq := seqs[a].Add(1)
			t0 := time.Now()
			_, err := s.Ingest(ctx, report(fmt.Sprintf("vm-%05d", a), seq), storetest.T0)
			mine = append(mine, time.Since(t0))
			if err != nil && !errors.Is(err, store.ErrSeqBackwards) {
				b.Error(err)
				return
			}
		}
		latC <- mine
	})
	elapsed := time.Since(start)
	b.StopTimer()
	close(latC)
	for l := range latC {
		lat = append(lat, l...)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "reports/s")
	if len(lat) > 0 {
		b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, "p99-ms")
	}
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[int(float64(len(s)-1)*p)]
}
