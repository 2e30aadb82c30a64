package rollout_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthhq/berth/control/rollout"
	"github.com/berthhq/berth/control/store"
	"github.com/berthhq/berth/control/wire"
	"github.com/berthhq/berth/internal/testenv/postgres"
)

// BenchmarkWaveEvaluation runs a rollout of 100,000 stored hosts (waves
// 1, 10, 50, 100) to completion, the hosts reporting through
// store.Ingest, and times every controller step: each reads all members
// with their hosts' facts and the selector's joiners, classifies them
// and writes what changed (the advancing steps tell 9,000, 40,000 and
// 50,000 hosts in one transaction). It prints the median and the
// slowest step, and each advance; the target is 1 s per step.
func BenchmarkWaveEvaluation(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) {
		benchWaves(b, "sqlite://"+filepath.Join(b.TempDir(), "control.db"))
	})
	b.Run("postgres", func(b *testing.B) {
		pg := postgres.StartWith(b, postgres.Options{Fsync: true})
		benchWaves(b, pg.NewDatabase(b))
	})
}

const benchHosts = 100_000

// benchFleet reports many hosts in parallel, as many agents do.
type benchFleet struct {
	st  *store.Store
	seq []uint64
	ver []string
}

func (f *benchFleet) report(b *testing.B, hosts []int, now time.Time) {
	var wg sync.WaitGroup
	work := make(chan int)
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				f.seq[i]++
				rec := wire.Record{Seq: f.seq[i], Kind: wire.KindHeartbeat, Time: now, Heartbeat: &wire.Heartbeat{
					State: "Healthy", Engine: wire.Engine{Flavor: "docker", Version: f.ver[i], Active: true, Healthy: true},
					AgentVersion: "1.0.0", Labels: map[string]string{"pool": "web"}, IntervalSeconds: 600, OS: "linux", Arch: "amd64",
				}}
				if _, err := f.st.Ingest(context.Background(), wire.Batch{Agent: fmt.Sprintf("vm-%06d", i), Records: []wire.Record{rec}}, now); err != nil {
					b.Error(err)
				}
			}
		}()
	}
	for _, i := range hosts {
		work <- i
	}
	close(work)
	wg.Wait()
}

func benchWaves(b *testing.B, dsn string) {
	ctx := context.Background()
	st, err := store.Open(ctx, dsn, store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	clk := &clock{now: T0}
	f := &benchFleet{st: st, seq: make([]uint64, benchHosts), ver: make([]string, benchHosts)}
	all := make([]int, benchHosts)
	for i := range all {
		all[i], f.ver[i] = i, "1.0.0"
	}
	t0 := time.Now()
	f.report(b, all, clk.Now())
	b.Logf("%d hosts stored in %v", benchHosts, time.Since(t0).Round(time.Millisecond))
	svc := rollout.New(rollout.Options{Store: st, Now: clk.Now})
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		spec := wire.RolloutSpec{Selector: map[string]string{"pool": "web"}, Kind: wire.KindEngine, Flavor: "docker",
			Version: fmt.Sprintf("2.0.%d", n), Waves: []float64{1, 10, 50, 100}, Bake: wire.Duration(time.Minute)}
		t0 = time.Now()
		r, err := svc.Create(ctx, "bench", spec)
		if err != nil {
			b.Fatal(err)
		}
		b.Logf("create over %d hosts: %v", r.Hosts, time.Since(t0).Round(time.Millisecond))
		steps, cpu, advances := runBench(b, svc, f, r.ID, spec.Version, clk)
		slices.Sort(steps)
		slices.Sort(cpu)
		median, slowest := steps[len(steps)/2], steps[len(steps)-1]
		b.ReportMetric(float64(median.Microseconds())/1000, "median-ms/step")
		b.ReportMetric(float64(slowest.Microseconds())/1000, "max-ms/step")
		b.ReportMetric(float64(cpu[len(cpu)/2].Microseconds())/1000, "median-cpu-ms/step")
		b.Logf("%d steps over %d hosts: median %v (CPU %v), slowest %v (CPU %v); advancing steps %v (target ≤ 1s each); load average %s",
			len(steps), benchHosts, median.Round(time.Millisecond), cpu[len(cpu)/2].Round(time.Millisecond),
			slowest.Round(time.Millisecond), cpu[len(cpu)-1].Round(time.Millisecond), advances, loadAvg())
	}
}

// runBench steps rollout id to its end, the told hosts moving to version
// and reporting once they have, and returns each step's time and those
// of the steps that advanced or completed.
func runBench(b *testing.B, svc *rollout.Service, f *benchFleet, id, version string, clk *clock) (steps, cpu, advances []time.Duration) {
	ctx := context.Background()
	for i := 0; i < 40; i++ {
		clk.Add(40 * time.Second)
		f.report(b, f.move(b, id, version), clk.Now())
		before, _ := svc.Get(ctx, id)
		t0, c0 := time.Now(), cpuTime()
		if _, err := svc.Evaluate(ctx, id); err != nil {
			b.Fatal(err)
		}
		took := time.Since(t0)
		steps = append(steps, took)
		cpu = append(cpu, cpuTime()-c0)
		after, _ := svc.Get(ctx, id)
		if len(after.History) > len(before.History) {
			advances = append(advances, took.Round(time.Millisecond))
		}
		if after.State != wire.RolloutRunning {
			if after.State != wire.RolloutCompleted {
				b.Fatalf("rollout %s", after.State)
			}
			return steps, cpu, advances
		}
	}
	b.Fatal("rollout did not complete in 40 steps")
	return nil, nil, nil
}

// loadAvg is the machine's 1-minute load average, for the figures'
// context ("" where unknown).
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Fields(string(b))[0]
}

// move moves the hosts rollout id told to version, as their agents would,
// and returns them.
func (f *benchFleet) move(b *testing.B, id, version string) []int {
	var todo []string
	for h, v := range f.ver {
		if v != version {
			todo = append(todo, fmt.Sprintf("vm-%06d", h))
		}
	}
	var moved []int
	for len(todo) > 0 {
		n := min(len(todo), 5000)
		ins, err := f.st.DesiredInputs(context.Background(), todo[:n])
		if err != nil {
			b.Fatal(err)
		}
		for _, host := range todo[:n] {
			for _, m := range ins[host].Memberships {
				if m.Rollout == id && m.State == wire.HostTold {
					var h int
					fmt.Sscanf(host, "vm-%06d", &h)
					f.ver[h] = version
					moved = append(moved, h)
				}
			}
		}
		todo = todo[n:]
	}
	return moved
}
