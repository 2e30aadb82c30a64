package imagecache_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthhq/berth/imagecache"
	"github.com/berthhq/berth/imagecache/cas"
	"github.com/berthhq/berth/imagecache/disk"
	"github.com/berthhq/berth/imagecache/imagetest"
	"github.com/berthhq/berth/imagecache/upstream"
	"github.com/berthhq/berth/internal/measure"
	"github.com/berthhq/berth/internal/testenv/registry"
)

// Issue 3's benchmarks (a) and (d), against Debian's docker-registry as the
// upstream and, for (a), distribution's own pull-through cache as the peer.
// (b), `docker pull` end to end, is in cmd/agent; (c) in imagecache/blobtier.
//
// Sizes are chosen for a 2-core machine: (a) reads a 1 GiB image of 8
// layers of 128 MiB; (d) pulls a 256 MiB image of 4 layers (112, 80, 48 and
// 16 MiB) by 32 clients at once, 8 GiB served per run.

// cacheBenchRuns is how many times each measurement is repeated; medians
// are reported, since the machine is shared and noisy.
const cacheBenchRuns = 5

// pullStreams is how many blobs a client fetches at once: dockerd's
// max-concurrent-downloads default.
const pullStreams = 3

// benchClients is (d)'s number of concurrent cold pulls.
const benchClients = 32

// benchImage is an image seeded in the upstream and the blobs a pull
// fetches (config first, then the layers in manifest order).
type benchImage struct {
	img   imagetest.Image
	blobs []imagetest.Blob
	total int64
}

func seedBench(b *testing.B, reg *registry.Server, repo string, sizes ...int) benchImage {
	b.Helper()
	layers := make([][]byte, len(sizes))
	for i, s := range sizes {
		layers[i] = imagetest.RandomLayer(s)
	}
	img := imagetest.Seed(b, reg.URL, repo, "v1", layers...)
	bi := benchImage{img: img, blobs: append([]imagetest.Blob{{Digest: img.ConfigDigest, Size: int64(len(img.Config))}}, img.Layers...)}
	for _, bl := range bi.blobs {
		bi.total += bl.Size
	}
	return bi
}

// benchCache is our cache over a fresh disk tier, fetching from the
// upstream registry, served on loopback.
type benchCache struct {
	srv   *httptest.Server
	c     *imagecache.Cache
	disk  *disk.Disk
	dir   string
	base  string // URL of the image's repository in the path-prefix form
	close func()
}

// startBenchCache starts our cache over a fresh disk tier; it fetches reg's
// images from endpoint (reg.URL, or a proxy in front of it).
func startBenchCache(b *testing.B, reg *registry.Server, endpoint, repo string) *benchCache {
	b.Helper()
	ctx := context.Background()
	dir, err := os.MkdirTemp(b.TempDir(), "cache-")
	if err != nil {
		b.Fatal(err)
	}
	d, err := disk.New(disk.Options{Dir: filepath.Join(dir, "disk")})
	if err != nil {
		b.Fatal(err)
	}
	if err := d.Start(ctx); err != nil {
		b.Fatal(err)
	}
	up, err := upstream.New(upstream.Options{Registry: reg.Addr, Config: upstream.Config{Endpoint: endpoint}})
	if err != nil {
		b.Fatal(err)
	}
	c, err := imagecache.New(imagecache.Options{
		Tiers:    []cas.Tier{d},
		Upstream: func(string) (imagecache.Upstream, error) { return up, nil },
		SpoolDir: filepath.Join(dir, "disk", "spool"),
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(c)
	bc := &benchCache{srv: srv, c: c, disk: d, dir: dir, base: srv.URL + "/v2/" + reg.Addr + "/" + repo}
	var once sync.Once
	bc.close = func() {
		once.Do(func() {
			srv.Close()
			c.Close()
			d.Close()
			os.RemoveAll(dir)
		})
	}
	b.Cleanup(bc.close)
	return bc
}

// waitOnDisk waits until the disk tier holds every blob: the cache commits
// a blob after its clients have it.
func (bc *benchCache) waitOnDisk(b *testing.B, blobs []imagetest.Blob) {
	b.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for _, bl := range blobs {
		for {
			if _, err := bc.disk.Stat(context.Background(), bl.Digest); err == nil {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("the disk tier never got %s", bl)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// benchClient is one puller: its own connections, like one dockerd.
func benchClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		MaxIdleConnsPerHost: pullStreams,
		DisableCompression:  true,
	}}
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

// onlyWriter hides io.Discard's ReaderFrom, whose 8 KiB buffer would make
// the client, not the server, the limit.
type onlyWriter struct{ io.Writer }

// fetchBlobs GETs every blob from base/blobs/<digest> with pullStreams
// blobs in flight at a time and reads each body to the end. With verify,
// it also checks each body against its digest (outside timed runs).
func fetchBlobs(hc *http.Client, base string, blobs []imagetest.Blob, verify bool) error {
	work := make(chan imagetest.Blob)
	errs := make(chan error, pullStreams)
	var wg sync.WaitGroup
	for range pullStreams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for bl := range work {
				if err := fetchBlob(hc, base+"/blobs/"+string(bl.Digest), bl, verify); err != nil {
					errs <- err
					for range work {
					}
					return
				}
			}
		}()
	}
	for _, bl := range blobs {
		work <- bl
	}
	close(work)
	wg.Wait()
	close(errs)
	return <-errs
}

func fetchBlob(hc *http.Client, url string, bl imagetest.Blob, verify bool) error {
	resp, err := hc.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, msg)
	}
	var w io.Writer = io.Discard
	var v *cas.Verifier
	if verify {
		v = cas.NewVerifier(bl.Digest, bl.Size)
		w = v
	}
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	n, err := io.CopyBuffer(onlyWriter{w}, resp.Body, *bp)
	if err != nil {
		return fmt.Errorf("GET %s: after %d bytes: %w", url, n, err)
	}
	if n != bl.Size {
		return fmt.Errorf("GET %s: %d bytes, want %d", url, n, bl.Size)
	}
	if v != nil {
		return v.Check()
	}
	return nil
}

// readFiles reads paths with pullStreams readers at a time, through the
// same buffer size as fetchBlob: the page cache's rate.
func readFiles(paths []string) (int64, error) {
	work := make(chan string)
	var mu sync.Mutex
	var total int64
	var first error
	var wg sync.WaitGroup
	for range pullStreams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bp := copyBufs.Get().(*[]byte)
			defer copyBufs.Put(bp)
			for p := range work {
				f, err := os.Open(p)
				var n int64
				if err == nil {
					n, err = io.CopyBuffer(onlyWriter{io.Discard}, struct{ io.Reader }{f}, *bp)
					f.Close()
				}
				mu.Lock()
				total += n
				if err != nil && first == nil {
					first = err
				}
				mu.Unlock()
			}
		}()
	}
	for _, p := range paths {
		work <- p
	}
	close(work)
	wg.Wait()
	return total, first
}

func timed(b *testing.B, fn func() error) time.Duration {
	b.Helper()
	start := time.Now()
	if err := fn(); err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}

// BenchmarkWarmBlobThroughput is issue 3's (a): a client fetching every
// blob of a 1 GiB, 8-layer image with 3 streams from our cache's disk tier,
// against the same client on distribution's pull-through cache
// (docker-registry with proxy.remoteurl), both warm. Target: ratio >= 1.2.
//
// Issue 9's 13 adds the true ceiling: the same files served by a plain Go
// file server (http.ServeContent, which sends with sendfile) over loopback
// to the same client. Target: ours >= 0.9 of it. The page cache's rate of
// the same bytes read in-process is printed too, as the bound of the bound.
// With BERTH_BENCH_SMALL set the image is 8 layers of 4 MiB, to check that
// it runs.
func BenchmarkWarmBlobThroughput(b *testing.B) {
	const repo = "bench/big"
	up := registry.Start(b, registry.Options{})
	layerSize := 128 << 20
	if os.Getenv("BERTH_BENCH_SMALL") != "" {
		layerSize = 4 << 20
	}
	sizes := make([]int, 8)
	for i := range sizes {
		sizes[i] = layerSize
	}
	img := seedBench(b, up, repo, sizes...)
	peer := registry.Start(b, registry.Options{ProxyRemoteURL: up.URL})
	ours := startBenchCache(b, up, up.URL, repo)
	peerBase := peer.URL + "/v2/" + repo

	// Warm both: one verified pull each; distribution stores a cold blob
	// from a second fetch of its own, in the background.
	if err := fetchBlobs(benchClient(), ours.base, img.blobs, true); err != nil {
		b.Fatal(err)
	}
	ours.waitOnDisk(b, img.blobs)
	if err := fetchBlobs(benchClient(), peerBase, img.blobs, true); err != nil {
		b.Fatal(err)
	}
	for _, bl := range img.blobs {
		if !peer.WaitBlob(b, repo, string(bl.Digest), bl.Size, 2*time.Minute) {
			b.Fatalf("distribution's proxy never stored %s", bl)
		}
	}
	// Every upstream GET so far but our cache's one per blob is the peer's.
	peerFetches := -len(img.blobs)
	for _, bl := range img.blobs {
		peerFetches += up.CountRequests(b, "GET", "/blobs/"+string(bl.Digest))
	}
	var files []string
	for _, bl := range img.blobs {
		h := bl.Digest.Hex()
		files = append(files, filepath.Join(ours.disk.Dir(), "blobs", "sha256", h[:2], h))
	}
	plain := fileServer(b, files)
	// One untimed round more, so that all serve from the page cache.
	oc, pc, fc := benchClient(), benchClient(), benchClient()
	_ = fetchBlobs(oc, ours.base, img.blobs, false)
	_ = fetchBlobs(pc, peerBase, img.blobs, false)
	if err := fetchBlobs(fc, plain.URL, img.blobs, true); err != nil {
		b.Fatal(err)
	}

	b.ResetTimer()
	var o, p, f, r []time.Duration
	for range cacheBenchRuns {
		o = append(o, timed(b, func() error { return fetchBlobs(oc, ours.base, img.blobs, false) }))
		p = append(p, timed(b, func() error { return fetchBlobs(pc, peerBase, img.blobs, false) }))
		f = append(f, timed(b, func() error { return fetchBlobs(fc, plain.URL, img.blobs, false) }))
		r = append(r, timed(b, func() error {
			n, err := readFiles(files)
			if err == nil && n != img.total {
				err = fmt.Errorf("read %d bytes of the disk tier's files, want %d", n, img.total)
			}
			return err
		}))
	}
	b.StopTimer()
	mo, mp, mf, mr := measure.Median(o), measure.Median(p), measure.Median(f), measure.Median(r)
	ratio, ceiling := mp.Seconds()/mo.Seconds(), mf.Seconds()/mo.Seconds()
	b.ReportMetric(measure.MBps(img.total, mo), "ours-MB/s")
	b.ReportMetric(measure.MBps(img.total, mp), "distribution-MB/s")
	b.ReportMetric(measure.MBps(img.total, mf), "fileserver-MB/s")
	b.ReportMetric(measure.MBps(img.total, mr), "pagecache-MB/s")
	b.ReportMetric(ratio, "ratio")
	b.ReportMetric(ceiling, "ceiling-ratio")
	fmt.Printf("\n(a) warm blob throughput, %d MiB in %d blobs, %d streams: our disk tier %.0f MB/s vs distribution's proxy %.0f MB/s (medians of %d; runs %s vs %s MB/s): ratio %.2f; target >= 1.2: %s\n",
		img.total>>20, len(img.blobs), pullStreams, measure.MBps(img.total, mo), measure.MBps(img.total, mp), cacheBenchRuns,
		measure.Rates(img.total, o), measure.Rates(img.total, p), ratio, measure.Verdict(ratio >= 1.2))
	fmt.Printf("    ceiling: a plain Go file server (http.ServeContent, sendfile) sends the same files over loopback to the same client at %.0f MB/s (runs %s): ours is %.2f of it; target >= 0.9: %s\n",
		measure.MBps(img.total, mf), measure.Rates(img.total, f), ceiling, measure.Verdict(ceiling >= 0.9))
	fmt.Printf("    the page cache reads the same files in-process at %.0f MB/s (runs %s), which no server reaches through a socket. (distribution fetched the cold image from the upstream %d times for %d blobs)\n",
		measure.MBps(img.total, mr), measure.Rates(img.total, r), peerFetches, len(img.blobs))
}

// fileServer is the ceiling of warm serving: files (the disk tier's, one
// per blob digest) served by nothing but http.ServeContent, which copies
// an *os.File to the socket with sendfile, under /blobs/<digest>.
func fileServer(b *testing.B, files []string) *httptest.Server {
	b.Helper()
	byDigest := map[string]string{}
	for _, p := range files {
		byDigest["sha256:"+filepath.Base(p)] = p
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, d, _ := strings.Cut(r.URL.Path, "/blobs/")
		p, ok := byDigest[d]
		if !ok {
			http.NotFound(w, r)
			return
		}
		f, err := os.Open(p)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		http.ServeContent(w, r, "", fi.ModTime(), f)
	}))
	b.Cleanup(srv.Close)
	return srv
}

// BenchmarkConcurrentColdPulls is issue 3's (d): 32 clients, each fetching
// every blob of the image with 3 streams, start at once against a cold
// cache; their wall time against one client's cold pull. Target: at most
// 1.3 times. Each run has a fresh disk tier; the upstream must see one GET
// per blob.
//
// The target is judged with the upstream where it is in production: a
// registry across a WAN, modelled by a proxy that caps Debian's registry at
// upstreamCap. There a cold pull waits for the upstream, and the question
// (d) asks is whether 32 pulls wait for it once or 32 times.
//
// It is also measured with the upstream on raw loopback and printed as this
// machine's bound, not judged: one pull then takes about half a second, and
// 32 pulls must move 32 times the bytes through loopback on 2 cores, which
// no single fetch can hide (see docs/image-cache.md, "Concurrent cold pulls").
func BenchmarkConcurrentColdPulls(b *testing.B) {
	const repo = "bench/app"
	up := registry.Start(b, registry.Options{})
	img := seedBench(b, up, repo, 112<<20, 80<<20, 48<<20, 16<<20)
	// Warm the upstream's page cache and check the content once.
	if err := fetchBlobs(benchClient(), up.URL+"/v2/"+repo, img.blobs, true); err != nil {
		b.Fatal(err)
	}
	capped := httptest.NewServer(throttle(up.URL, upstreamCap))
	defer capped.Close()

	b.ResetTimer()
	coldPulls(b, "(d)", up, capped.URL, repo, img, fmt.Sprintf("upstream as a WAN registry, capped at %d MiB/s", upstreamCap>>20), true)
	coldPulls(b, "(d, loopback bound)", up, up.URL, repo, img, "upstream on raw loopback, uncapped", false)
}

// upstreamCap is the capped upstream's rate, bytes per second.
const upstreamCap = 100 << 20

// coldPulls measures and prints one variant of (d); judged says whether the
// 1.3 target applies to it or the figure is printed as a bound.
func coldPulls(b *testing.B, label string, up *registry.Server, endpoint, repo string, img benchImage, what string, judged bool) {
	b.Helper()
	upstreamGETs := func() int {
		n := 0
		for _, bl := range img.blobs {
			n += up.CountRequests(b, "GET", "/blobs/"+string(bl.Digest))
		}
		return n
	}
	cold := func(clients int) time.Duration {
		bc := startBenchCache(b, up, endpoint, repo)
		defer bc.close()
		hcs := make([]*http.Client, clients)
		for i := range hcs {
			hcs[i] = benchClient()
		}
		before := upstreamGETs()
		errs := make(chan error, clients)
		var wg sync.WaitGroup
		start := time.Now()
		for _, hc := range hcs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- fetchBlobs(hc, bc.base, img.blobs, false)
			}()
		}
		wg.Wait()
		took := time.Since(start)
		close(errs)
		for err := range errs {
			if err != nil {
				b.Fatal(err)
			}
		}
		if n := upstreamGETs() - before; n != len(img.blobs) {
			b.Fatalf("%d cold clients made %d upstream GETs for %d blobs, want one each", clients, n, len(img.blobs))
		}
		bc.waitOnDisk(b, img.blobs) // let the commit finish before the next run
		return took
	}
	var one, many []time.Duration
	for range cacheBenchRuns {
		one = append(one, cold(1))
		many = append(many, cold(benchClients))
	}
	m1, mn := measure.Median(one), measure.Median(many)
	ratio := mn.Seconds() / m1.Seconds()
	verdict := "target <= 1.3: " + measure.Verdict(ratio <= 1.3)
	metric := "d-ratio"
	if !judged {
		verdict = "printed as this machine's loopback bound, not judged"
		metric = "d-loopback-ratio"
	}
	b.ReportMetric(ratio, metric)
	fmt.Printf("\n%s %d concurrent cold pulls of a %d MiB, %d-blob image (%d streams each; %s; one upstream GET per blob): %.2fs vs one cold pull %.2fs (medians of %d; runs %v vs %v): ratio %.2f; %s\n",
		label, benchClients, img.total>>20, len(img.blobs), pullStreams, what, mn.Seconds(), m1.Seconds(), cacheBenchRuns,
		measure.Round(many), measure.Round(one), ratio, verdict)
	fmt.Printf("     served %.0f MB/s to %d clients together vs %.0f MB/s to one\n",
		measure.MBps(int64(benchClients)*img.total, mn), benchClients, measure.MBps(img.total, m1))
}

// throttle is a reverse proxy to target whose response bodies together
// flow at no more than rate bytes per second.
func throttle(target string, rate float64) http.Handler {
	u, err := url.Parse(target)
	if err != nil {
		panic(err)
	}
	p := &pacer{rate: rate}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ModifyResponse = func(resp *http.Response) error {
		resp.Body = &pacedBody{ReadCloser: resp.Body, p: p}
		return nil
	}
	return rp
}

// pacer hands out a shared byte budget that fills at rate; idle time does
// not bank a burst.
type pacer struct {
	rate float64
	mu   sync.Mutex
	next time.Time
}

func (p *pacer) take(n int) {
	p.mu.Lock()
	now := time.Now()
	if p.next.Before(now) {
		p.next = now
	}
	p.next = p.next.Add(time.Duration(float64(n) / p.rate * float64(time.Second)))
	until := p.next
	p.mu.Unlock()
	// Sleep only once the debt is worth a timer: a sleep of a few
	// microseconds per read takes a millisecond, far below the rate.
	if d := time.Until(until); d > 5*time.Millisecond {
		time.Sleep(d)
	}
}

type pacedBody struct {
	io.ReadCloser
	p *pacer
}

func (b *pacedBody) Read(buf []byte) (int, error) {
	n, err := b.ReadCloser.Read(buf)
	if n > 0 {
		b.p.take(n)
	}
	return n, err
}
