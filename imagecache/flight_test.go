package imagecache_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berthhq/berth/imagecache"
	"github.com/berthhq/berth/imagecache/cas"
	"github.com/berthhq/berth/imagecache/disk"
	"github.com/berthhq/berth/imagecache/imagetest"
	"github.com/berthhq/berth/imagecache/upstream"

	"github.com/berthhq/berth/internal/testenv/registry"
)

// stallingRegistry answers every blob GET with the Content-Length it is
// told, sends the first `send` bytes of body, and then sends nothing more
// until the client goes or the test ends. asked counts blob GETs.
type stallingRegistry struct {
	srv      *httptest.Server
	name     string // host:port, the registry's name
	announce int64
	body     func(d string) []byte // what the first bytes are
	send     int64
	asked    atomic.Int32
	sent     chan string // a digest, each time its first bytes are out
	// gate, when not nil, ends the stall: closed, the rest of the
	// announced bytes are sent.
	gate chan struct{}
}

func startStallingRegistry(t *testing.T, announce, send int64, body func(d string) []byte) *stallingRegistry {
	t.Helper()
	s := &stallingRegistry{announce: announce, send: send, body: body, sent: make(chan string, 64)}
	done := make(chan struct{})
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
		_, d, ok := strings.Cut(r.URL.Path, "/blobs/")
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(s.announce, 10))
		if r.Method == http.MethodHead {
			return
		}
		s.asked.Add(1)
		b := s.body(d)
		if !writeFrom(w, b, 0, s.send) {
			return
		}
		w.(http.Flusher).Flush()
		s.sent <- d
		select { // stall: nothing more, connection open
		case <-r.Context().Done():
		case <-done:
		case <-s.gate: // nil: never
			writeFrom(w, b, s.send, s.announce)
		}
	}))
	s.name = strings.TrimPrefix(s.srv.URL, "http://")
	t.Cleanup(func() { close(done); s.srv.Close() })
	return s
}

// writeFrom writes bytes [from, to) of the endless repetition of b.
func writeFrom(w io.Writer, b []byte, from, to int64) bool {
	for off := from; off < to; {
		i := off % int64(len(b))
		n := min(int64(len(b))-i, to-off)
		if _, err := w.Write(b[i : i+n]); err != nil {
			return false
		}
		off += n
	}
	return true
}

// TestStalledUpstreamHoldsOnlyItsOwnClients is issue 9's first attack: a
// fake registry announces Content-Length 300000, sends 1,000 bytes and
// stalls. A request for the same digest through a configured, healthy
// registry must get the whole blob promptly (it used to join the stalled
// flight and hang for as long as the fake lived), and the stalled request
// must fail within the idle deadline.
func TestStalledUpstreamHoldsOnlyItsOwnClients(t *testing.T) {
	reg := registry.Start(t, registry.Options{})
	layer := imagetest.RandomLayer(300000)
	img := imagetest.Seed(t, reg.URL, "team/app", "v1", layer)
	d := img.Layers[0].Digest
	fake := startStallingRegistry(t, int64(len(layer)), 1000, func(string) []byte { return layer })

	const idle = time.Second
	srv, _ := startTwoRegistryCache(t, reg, fake.srv.URL, fake.name, func(o *imagecache.Options) {
		o.IdleTimeout = idle
	})
	hc := &http.Client{Timeout: 20 * time.Second}

	stalled := make(chan error, 1)
	var stalledTook time.Duration
	go func() {
		start := time.Now()
		err := fetchWhole(hc, srv.URL+"/v2/"+fake.name+"/team/app/blobs/"+string(d), layer)
		stalledTook = time.Since(start)
		stalled <- err
	}()
	select {
	case <-fake.sent:
	case <-time.After(10 * time.Second):
		t.Fatal("the cache never asked the stalling registry")
	}

	start := time.Now()
	if err := fetchWhole(hc, srv.URL+"/v2/"+reg.Addr+"/team/app/blobs/"+string(d), layer); err != nil {
		t.Fatalf("the healthy registry's client, while another registry stalls on the same digest: %v (after %v)", err, time.Since(start))
	}
	t.Logf("the healthy registry's client got all %d bytes in %v", len(layer), time.Since(start).Round(time.Millisecond))
	if n := reg.CountRequests(t, "GET", "/blobs/"+string(d)); n == 0 {
		t.Error("the healthy registry was never asked")
	}

	err := <-stalled
	if err == nil {
		t.Fatal("the stalled registry's client got a whole blob")
	}
	t.Logf("the stalled registry's client failed after %v: %v", stalledTook.Round(time.Millisecond), err)
	if stalledTook > 3*idle+2*time.Second {
		t.Errorf("the stalled registry's client failed after %v; want within the idle deadline (%v) and a little", stalledTook, idle)
	}
}

// TestLyingFlightFailsOnlyItsRegistry: a registry that sends other bytes
// for a digest fails its own clients; clients of another registry asking
// the same digest at the same time get the true blob.
func TestLyingFlightFailsOnlyItsRegistry(t *testing.T) {
	reg := registry.Start(t, registry.Options{})
	layer := imagetest.RandomLayer(1 << 20)
	img := imagetest.Seed(t, reg.URL, "team/app", "v1", layer)
	d := img.Layers[0].Digest
	other := imagetest.RandomLayer(len(layer))
	// The liar sends all but the last 100 KiB of other bytes, waits until
	// the honest client has arrived, then sends the rest.
	liar := startStallingRegistry(t, int64(len(layer)), int64(len(layer)-100<<10), func(string) []byte { return other })
	liar.gate = make(chan struct{})
	srv, _ := startTwoRegistryCache(t, reg, liar.srv.URL, liar.name, nil)
	hc := &http.Client{Timeout: 20 * time.Second}

	lied := make(chan error, 1)
	go func() { lied <- fetchWhole(hc, srv.URL+"/v2/"+liar.name+"/team/app/blobs/"+string(d), layer) }()
	<-liar.sent
	honest := make(chan error, 1)
	go func() { honest <- fetchWhole(hc, srv.URL+"/v2/"+reg.Addr+"/team/app/blobs/"+string(d), layer) }()
	time.Sleep(300 * time.Millisecond) // the honest client is in
	close(liar.gate)                   // the liar's flight ends, failing its digest
	if err := <-lied; err == nil {
		t.Fatal("the lying registry's client got a whole blob")
	}
	if err := <-honest; err != nil {
		t.Fatalf("the honest registry's client, while another registry lied about the same digest: %v", err)
	}
}

// fetchWhole GETs url and checks the body is want, whole.
func fetchWhole(hc *http.Client, url string, want []byte) error {
	resp, err := hc.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %.200s", resp.Status, body)
	}
	if err != nil {
		return fmt.Errorf("200, then the body broke after %d bytes: %w", len(body), err)
	}
	if cas.FromBytes(body) != cas.FromBytes(want) {
		return fmt.Errorf("200 with %d bytes hashing to %s, want %s", len(body), cas.FromBytes(body), cas.FromBytes(want))
	}
	return nil
}

// startTwoRegistryCache serves a cache over a fresh disk tier that knows
// two registries: Debian's reg, and another at endpoint named name.
func startTwoRegistryCache(t *testing.T, reg *registry.Server, endpoint, name string, edit func(*imagecache.Options)) (*httptest.Server, *disk.Disk) {
	t.Helper()
	d := newDiskTier(t)
	good, err := upstream.New(upstream.Options{Registry: reg.Addr, Config: upstream.Config{Endpoint: reg.URL}})
	if err != nil {
		t.Fatal(err)
	}
	other, err := upstream.New(upstream.Options{Registry: name, Config: upstream.Config{Endpoint: endpoint}, MaxResumes: 1, ResumeWait: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	o := imagecache.Options{
		Tiers: []cas.Tier{d},
		Upstream: func(r string) (imagecache.Upstream, error) {
			switch r {
			case reg.Addr:
				return good, nil
			case name:
				return other, nil
			}
			return nil, fmt.Errorf("no upstream %q in this test", r)
		},
		SpoolDir: filepath.Join(t.TempDir(), "spool"),
	}
	if edit != nil {
		edit(&o)
	}
	return serveCache(t, o), d
}

func serveCache(t *testing.T, o imagecache.Options) *httptest.Server {
	t.Helper()
	c, err := imagecache.New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c)
	t.Cleanup(func() { srv.Close(); c.Close() })
	return srv
}

// watchPeak samples the bytes in dir every few milliseconds; peak stops
// and returns the most seen.
func watchPeak(t *testing.T, dir string) (peak func() int64) {
	var most atomic.Int64
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			n, err := dirBytes(dir)
			if err != nil {
				t.Errorf("spool %s: %v", dir, err)
			}
			if n > most.Load() {
				most.Store(n)
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	var once sync.Once
	peak = func() int64 {
		once.Do(func() { close(stop); <-stopped })
		return most.Load()
	}
	t.Cleanup(func() { peak() })
	return peak
}

// spoolBytes sums the sizes of the files in dir (0 when it is gone).
func spoolBytes(t *testing.T, dir string) int64 {
	t.Helper()
	n, err := dirBytes(dir)
	if err != nil {
		t.Fatalf("spool %s: %v", dir, err)
	}
	return n
}

func dirBytes(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // a file removed while walking, or no spool yet
			}
			return err
		}
		if !e.IsDir() {
			if fi, err := e.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n, err
}

// TestSpoolWithinMaxSize is issue 9's second attack: with maxSize 200 MiB,
// two digests announced larger than the budget (400 MiB, and 150 MiB: one
// fits, two do not) are sent but for their last byte, and their clients
// leave. The spool must never hold more than the budget, and what it holds
// must be freed soon after the clients are gone (it used to hold 801 MiB
// for as long as the upstream kept the connections open).
func TestSpoolWithinMaxSize(t *testing.T) {
	const budget = 200 << 20
	const grace = 500 * time.Millisecond
	for _, announce := range []int64{400 << 20, 150 << 20} {
		t.Run(fmt.Sprintf("%dMiB", announce>>20), func(t *testing.T) {
			pattern := imagetest.RandomLayer(1 << 20)
			fake := startStallingRegistry(t, announce, announce-1, func(string) []byte { return pattern })
			d, err := disk.New(disk.Options{Dir: t.TempDir(), MaxSize: budget})
			if err != nil {
				t.Fatal(err)
			}
			if err := d.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { d.Close() })
			up, err := upstream.New(upstream.Options{Registry: fake.name, Config: upstream.Config{Endpoint: fake.srv.URL}})
			if err != nil {
				t.Fatal(err)
			}
			spool := filepath.Join(t.TempDir(), "spool")
			srv := serveCache(t, imagecache.Options{
				Tiers:        []cas.Tier{d},
				Upstream:     func(string) (imagecache.Upstream, error) { return up, nil },
				SpoolDir:     spool,
				IdleTimeout:  time.Minute, // the grace, not the stall, must free the spool
				AbandonGrace: grace,
			})
			peak := watchPeak(t, spool)
			ctx, leave := context.WithCancel(context.Background())
			defer leave()
			for i := range 2 {
				dg := cas.FromBytes([]byte(fmt.Sprintf("announced %d, never sent whole %d", announce, i)))
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/v2/"+fake.name+"/team/app/blobs/"+string(dg), nil)
				go func() {
					resp, err := http.DefaultClient.Do(req)
					if err == nil {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
				}()
			}
			for range 2 {
				select {
				case <-fake.sent:
				case <-time.After(60 * time.Second):
					t.Fatal("the registry never got its bytes out")
				}
			}
			time.Sleep(100 * time.Millisecond)
			held := spoolBytes(t, spool)
			leave() // both clients go
			left := time.Now()
			for spoolBytes(t, spool) > 0 && time.Since(left) < grace+10*time.Second {
				time.Sleep(20 * time.Millisecond)
			}
			freedAfter := time.Since(left)
			most := peak()
			after := spoolBytes(t, spool)
			t.Logf("spool: peak %d MiB, %d MiB when the clients left, %d bytes %v after", most>>20, held>>20, after, freedAfter.Round(time.Millisecond))
			if most > budget {
				t.Errorf("the spool held %d MiB, over cache.local.maxSize (%d MiB)", most>>20, budget>>20)
			}
			if after > 0 {
				t.Errorf("the spool still holds %d MiB %v after its clients left", after>>20, freedAfter.Round(time.Millisecond))
			}
		})
	}
}

// TestWarmOutlivesTheGrace: a prewarm has no client reading, and its
// fetch is not cancelled for that, even when a client came and left; it
// ends with the blob on disk.
func TestWarmOutlivesTheGrace(t *testing.T) {
	layer := imagetest.RandomLayer(1 << 20)
	d := cas.FromBytes(layer)
	slow := startStallingRegistry(t, int64(len(layer)), int64(len(layer)/2), func(string) []byte { return layer })
	slow.gate = make(chan struct{})
	up, err := upstream.New(upstream.Options{Registry: slow.name, Config: upstream.Config{Endpoint: slow.srv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	dt := newDiskTier(t)
	c, err := imagecache.New(imagecache.Options{
		Tiers:        []cas.Tier{dt},
		Upstream:     func(string) (imagecache.Upstream, error) { return up, nil },
		SpoolDir:     filepath.Join(t.TempDir(), "spool"),
		AbandonGrace: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	warmed := make(chan error, 1)
	go func() { warmed <- c.Warm(context.Background(), slow.name, "team/app", d) }()
	<-slow.sent
	srv := httptest.NewServer(c)
	defer srv.Close()
	ctx, leave := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/v2/"+slow.name+"/team/app/blobs/"+string(d), nil)
	resp, err := http.DefaultClient.Do(req) // joins the prewarm's flight…
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	leave() // …and leaves it
	resp.Body.Close()
	time.Sleep(500 * time.Millisecond) // five graces
	close(slow.gate)
	select {
	case err := <-warmed:
		if err != nil {
			t.Fatalf("Warm: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Warm never returned")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := dt.Stat(context.Background(), d); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the warmed blob never reached the disk tier")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := c.Warm(context.Background(), "evil..example", "team/app", d); err == nil {
		t.Error("Warm of a malformed registry name succeeded")
	}
}
