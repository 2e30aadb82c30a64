//go:build linux

package main

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"

	"github.com/berthhq/berth/agent"
	"github.com/berthhq/berth/agent/config"
	"github.com/berthhq/berth/engine/docker"

	"github.com/berthhq/berth/internal/measure"
	"github.com/berthhq/berth/internal/testenv/azurite"
	"github.com/berthhq/berth/packaging/tufrepo"
)

// benchRuns is how many times each measurement is repeated; medians are
// reported, since the machine is shared and noisy.
const benchRuns = 5

// BenchmarkUpgradeDowntime measures how long the engine API does not answer
// while the agent upgrades the engine with a container running (target:
// at most 3 s), and checks the container keeps running.
func BenchmarkUpgradeDowntime(b *testing.B) {
	r := newRig(b, verA, verB)
	r.mustRun("engine", "install", verA)
	r.mustRun("engine", "install", verB)
	pid := r.startContainer("keep")
	c, err := docker.NewClient(r.host.Endpoint)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	var gaps, totals []time.Duration
	for i := range benchRuns {
		to := verB
		if i%2 == 1 {
			to = verA
		}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		var longest time.Duration
		wg.Add(1)
		go func() {
			defer wg.Done()
			last := time.Now()
			for ctx.Err() == nil {
				pctx, pcancel := context.WithTimeout(ctx, time.Second)
				err := c.Ping(pctx)
				pcancel()
				now := time.Now()
				if err == nil {
					longest = max(longest, now.Sub(last))
					last = now
				}
				time.Sleep(10 * time.Millisecond)
			}
		}()
		start := time.Now()
		r.mustRun("engine", "upgrade", to)
		totals = append(totals, time.Since(start))
		time.Sleep(200 * time.Millisecond) // let the poller see the new engine
		cancel()
		wg.Wait()
		gaps = append(gaps, longest)
		if got := r.containerPID("keep"); got != pid {
			b.Fatalf("upgrade %d: container pid %d, want %d: it did not survive", i, got, pid)
		}
	}
	med := measure.Median(gaps)
	b.ReportMetric(med.Seconds(), "downtime-s")
	b.ReportMetric(measure.Median(totals).Seconds(), "upgrade-s")
	fmt.Printf("\n(a) engine API downtime during an upgrade, container kept running: median %.2fs (runs %v; whole upgrade median %.2fs); target <= 3s: %s\n",
		med.Seconds(), measure.Round(gaps), measure.Median(totals).Seconds(), measure.Verdict(med <= 3*time.Second))
}

// BenchmarkInstallOverhead compares installing a package from Azurite
// (metadata refresh, download, SHA-256 and length check, safe unpack, all
// durable) with only downloading the same blob with azblob and unpacking it
// with archive/tar (target ratio: at most 1.2).
func BenchmarkInstallOverhead(b *testing.B) {
	r := newRig(b, verA, verB)
	ctx := context.Background()
	cfg, err := config.Load(r.config)
	if err != nil {
		b.Fatal(err)
	}
	m, err := agent.OpenEngine(ctx, cfg, agent.Options{})
	if err != nil {
		b.Fatal(err)
	}
	if err := m.Install(ctx, verA); err != nil { // an active engine: later installs only unpack
		b.Fatal(err)
	}
	targets, err := tufrepo.List(r.repo)
	if err != nil {
		b.Fatal(err)
	}
	var blob string
	for _, t := range targets {
		if t.Package.Version == verB {
			blob = tufrepo.RemotePath(t.Path, t.SHA256)
		}
	}
	cred, err := azblob.NewSharedKeyCredential(azurite.Account, azurite.Key)
	if err != nil {
		b.Fatal(err)
	}
	client, err := azblob.NewClientWithSharedKeyCredential(r.az.ServiceURL(), cred, nil)
	if err != nil {
		b.Fatal(err)
	}
	verDir := filepath.Join(r.host.Dir, "engines", "docker", verB)
	var ours, plain []time.Duration
	for range benchRuns {
		if err := os.RemoveAll(verDir); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if err := m.Install(ctx, verB); err != nil {
			b.Fatal(err)
		}
		ours = append(ours, time.Since(start))

		dir := b.TempDir()
		start = time.Now()
		if err := downloadAndUntar(ctx, client, blob, dir); err != nil {
			b.Fatal(err)
		}
		plain = append(plain, time.Since(start))
		os.RemoveAll(dir)
	}
	ratio := measure.Median(ours).Seconds() / measure.Median(plain).Seconds()
	b.ReportMetric(ratio, "ratio")
	fmt.Printf("\n(b) install from Azurite %.2fs vs azblob download + archive/tar %.2fs (medians of %d; runs %v vs %v): ratio %.2f; target <= 1.2: %s\n",
		measure.Median(ours).Seconds(), measure.Median(plain).Seconds(), benchRuns, measure.Round(ours), measure.Round(plain), ratio, measure.Verdict(ratio <= 1.2))
}

// downloadAndUntar is the peer: azblob's DownloadFile, then archive/tar.
func downloadAndUntar(ctx context.Context, c *azblob.Client, blob, dir string) error {
	tgz := filepath.Join(dir, "pkg.tgz")
	f, err := os.Create(tgz)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := c.DownloadFile(ctx, "releases", blob, f, nil); err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	gz, err := gzip.NewReader(f)
	if err != nil {
		return err
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		p := filepath.Join(dir, "out", h.Name)
		if h.Typeflag == tar.TypeDir {
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		out, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode))
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, tr); err != nil {
			out.Close()
			return err
		}
		if err := out.Close(); err != nil {
			return err
		}
	}
}
