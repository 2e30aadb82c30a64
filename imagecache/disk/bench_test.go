package disk

import (
	"context"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"github.com/berthhq/berth/imagecache/tiertest"
	"github.com/berthhq/berth/internal/measure"
)

// benchRuns is how many times each measurement is repeated; medians are
// reported, since the machine is shared and noisy.
const benchRuns = 7

// benchSize is the blob read: a large Windows layer.
const benchSize = 256 << 20

// BenchmarkDiskOpen measures the read throughput of a disk-tier hit (Open,
// read to the end) against reading the same file with os.Open, both from
// the page cache: the tier's overhead over the raw limit.
func BenchmarkDiskOpen(b *testing.B) {
	d, err := New(Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	ctx := context.Background()
	const seed = 7
	dg := tiertest.GeneratorDigest(seed, benchSize)
	if err := d.Put(ctx, dg, benchSize, tiertest.Generator(seed, benchSize)); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	tier := func() time.Duration {
		start := time.Now()
		rc, _, err := d.Open(ctx, dg, 0)
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, struct{ io.Reader }{rc}, buf)
		rc.Close()
		if err != nil || n != benchSize {
			b.Fatalf("read %d bytes: %v", n, err)
		}
		return time.Since(start)
	}
	raw := func() time.Duration {
		start := time.Now()
		f, err := os.Open(d.blobPath(dg.Hex()))
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, struct{ io.Reader }{f}, buf)
		f.Close()
		if err != nil || n != benchSize {
			b.Fatalf("read %d bytes: %v", n, err)
		}
		return time.Since(start)
	}
	tier()
	raw()
	b.ResetTimer()
	var t, r []time.Duration
	for range benchRuns {
		t = append(t, tier())
		r = append(r, raw())
	}
	b.StopTimer()
	ratio := measure.Median(r).Seconds() / measure.Median(t).Seconds()
	b.ReportMetric(measure.MBps(benchSize, measure.Median(t)), "tier-MB/s")
	b.ReportMetric(measure.MBps(benchSize, measure.Median(r)), "raw-MB/s")
	b.ReportMetric(ratio, "ratio")
	fmt.Printf("\ndisk-tier hit of a %d MiB blob: %.0f MB/s vs os.Open of the same file %.0f MB/s (medians of %d, page cache warm): ratio %.2f\n",
		benchSize>>20, measure.MBps(benchSize, measure.Median(t)), measure.MBps(benchSize, measure.Median(r)), benchRuns, ratio)
}
