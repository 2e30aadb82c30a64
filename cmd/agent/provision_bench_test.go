//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"

	"github.com/berthhq/berth/engine/docker"
	"github.com/berthhq/berth/internal/measure"
	"github.com/berthhq/berth/internal/testenv/azurite"
	"github.com/berthhq/berth/internal/testenv/dockerd"
	"github.com/berthhq/berth/packaging/tufrepo"
)

// provisionBenchRuns: each run starts a host from zero, so fewer than benchRuns.
const provisionBenchRuns = 3

// BenchmarkProvisionOverhead compares `berth-agent provision` from zero to
// ready (engine installed from Azurite, one image prewarmed through the
// cache from its Azurite tier, the agent started detached) with the same
// raw steps done directly: the package downloaded with azblob and unpacked
// with archive/tar, dockerd started until its API answers, the image
// pulled by dockerd from the registry (target ratio: at most 1.2).
func BenchmarkProvisionOverhead(b *testing.B) {
	p := newProvisionRig(b, verA)
	// A first provision fills the cache's Azurite tier with the image.
	if code, _, stderr := p.provision(); code != 0 {
		b.Fatalf("warm-up provision: exit %d\n%s", code, stderr)
	}
	blob := packageBlob(b, p.repo, verA)
	client := azuriteClient(b, p.az)
	var ours, raw []time.Duration
	for range provisionBenchRuns {
		p.unready(true, verA)
		_, _ = p.host.Docker(context.Background(), "rmi", "-f", p.image)
		dockerd.KillUnder(filepath.Join(p.host.Dir, "engines"), syscall.SIGTERM, 20*time.Second)
		start := time.Now()
		if code, _, stderr := p.provision(); code != 0 {
			b.Fatalf("provision: exit %d\n%s", code, stderr)
		}
		ours = append(ours, time.Since(start))

		p.unready(true, verA)
		_, _ = p.host.Docker(context.Background(), "rmi", "-f", p.image)
		dockerd.KillUnder(filepath.Join(p.host.Dir, "engines"), syscall.SIGTERM, 20*time.Second)
		raw = append(raw, rawProvision(b, p, client, blob))
	}
	ratio := measure.Median(ours).Seconds() / measure.Median(raw).Seconds()
	b.ReportMetric(ratio, "ratio")
	fmt.Printf("\n(c) provision from zero to ready %.2fs vs download + extract + start dockerd + pull %.2fs (medians of %d; runs %v vs %v): ratio %.2f; target <= 1.2: %s\n",
		measure.Median(ours).Seconds(), measure.Median(raw).Seconds(), provisionBenchRuns, measure.Round(ours), measure.Round(raw), ratio, measure.Verdict(ratio <= 1.2))
}

// packageBlob is the Azurite blob of version v's package.
func packageBlob(b *testing.B, repo, v string) string {
	targets, err := tufrepo.List(repo)
	if err != nil {
		b.Fatal(err)
	}
	for _, t := range targets {
		if t.Package.Version == v {
			return tufrepo.RemotePath(t.Path, t.SHA256)
		}
	}
	b.Fatalf("no package of %s in %s", v, repo)
	return ""
}

func azuriteClient(b *testing.B, az *azurite.Server) *azblob.Client {
	cred, err := azblob.NewSharedKeyCredential(azurite.Account, azurite.Key)
	if err != nil {
		b.Fatal(err)
	}
	client, err := azblob.NewClientWithSharedKeyCredential(az.ServiceURL(), cred, nil)
	if err != nil {
		b.Fatal(err)
	}
	return client
}

// rawProvision does the peer's steps on the rig's host and returns their
// time; the dockerd it starts is stopped after.
func rawProvision(b *testing.B, p *provisionRig, client *azblob.Client, blob string) time.Duration {
	ctx := context.Background()
	dir := b.TempDir()
	conf := maps.Clone(p.host.Settings)
	conf["hosts"] = []any{p.host.Endpoint}
	data, err := json.Marshal(conf)
	if err != nil {
		b.Fatal(err)
	}
	confFile := filepath.Join(dir, "daemon.json")
	if err := os.WriteFile(confFile, data, 0o644); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	if err := downloadAndUntar(ctx, client, blob, dir); err != nil {
		b.Fatal(err)
	}
	bin := filepath.Join(dir, "out", "docker")
	cmd := exec.Command(filepath.Join(bin, "dockerd"), "--config-file", confFile)
	cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	c, err := docker.NewClient(p.host.Endpoint)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	for c.Ping(ctx) != nil {
		if time.Since(start) > time.Minute {
			b.Fatal("raw dockerd does not answer within a minute")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if out, err := p.host.Docker(ctx, "pull", p.image); err != nil {
		b.Fatalf("raw pull: %v: %s", err, out)
	}
	return time.Since(start)
}
