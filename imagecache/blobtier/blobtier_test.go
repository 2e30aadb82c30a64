package blobtier

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/berthhq/berth/imagecache/cas"
	"github.com/berthhq/berth/imagecache/tiertest"
	"github.com/berthhq/berth/internal/azstore"
	"github.com/berthhq/berth/internal/testenv"
	"github.com/berthhq/berth/internal/testenv/azurite"
)

var containerSeq atomic.Int64

// newContainerName returns a container name no other test uses.
func newContainerName() string { return fmt.Sprintf("cache-%d", containerSeq.Add(1)) }

// env is Azurite plus what the tests need to reach it.
type env struct {
	az      *azurite.Server
	keyFile string
}

func newEnv(t testing.TB) *env {
	az := azurite.Start(t)
	return &env{az: az, keyFile: az.KeyFile(t)}
}

func (e *env) sharedKey() azstore.Credential {
	return azstore.Credential{Auth: azstore.AuthSharedKey, KeyFile: e.keyFile}
}

// store opens url (a container URL, possibly with a prefix) with cred.
func (e *env) store(t testing.TB, url string, cred azstore.Credential, hc *http.Client) *azstore.Container {
	t.Helper()
	c, err := azstore.New(url, cred, azstore.Options{HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// tier returns a started tier over a fresh container (with prefix, when
// not empty) and the raw container client behind it.
func (e *env) tier(t testing.TB, prefix string, o Options, hc *http.Client) (*Tier, *container.Client) {
	t.Helper()
	url := e.az.ContainerURL(newContainerName())
	if prefix != "" {
		url += "/" + prefix
	}
	o.URL, o.Credential, o.HTTPClient = url, e.sharedKey(), hc
	tier, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := tier.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { tier.Close() })
	return tier, tier.store.Client()
}

// listBlobs returns every blob name in the container.
func listBlobs(t testing.TB, c *container.Client) []string {
	t.Helper()
	var names []string
	pager := c.NewListBlobsFlatPager(nil)
	for pager.More() {
		page, err := pager.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range page.Segment.BlobItems {
			names = append(names, *b.Name)
		}
	}
	return names
}

func TestConformance(t *testing.T) {
	e := newEnv(t)
	for _, v := range []struct {
		name   string
		prefix string
		o      Options
	}{
		// Small chunks and blocks: every path through parallel reads and
		// multi-block uploads, with a prefix inside the container.
		{"small", "pfx/sub", Options{ChunkSize: 256 << 10, Parallel: 3, BlockSize: 1 << 20, UploadConcurrency: 3}},
		{"defaults", "", Options{}},
	} {
		t.Run(v.name, func(t *testing.T) {
			tiertest.Run(t, func(t *testing.T) cas.Tier {
				tier, raw := e.tier(t, v.prefix, v.o, nil)
				t.Cleanup(func() {
					// Hostile ref names must not have written outside refs/.
					base := ""
					if v.prefix != "" {
						base = v.prefix + "/"
					}
					for _, n := range listBlobs(t, raw) {
						if !strings.HasPrefix(n, base+"blobs/sha256/") && !strings.HasPrefix(n, base+"refs/") {
							t.Errorf("blob %q written outside %sblobs/ and %srefs/", n, base, base)
						}
					}
				})
				return tier
			})
		})
	}
}

// TestMismatchNotCommitted checks the heart of Put: content whose digest
// only fails at its very end is staged but never committed.
func TestMismatchNotCommitted(t *testing.T) {
	e := newEnv(t)
	tier, raw := e.tier(t, "", Options{BlockSize: 1 << 20, UploadConcurrency: 2}, nil)
	ctx := t.Context()
	for i, n := range []int{1, 100, 1 << 20, 1<<20 + 1, 3<<20 + 5} {
		good := tiertest.Content(uint64(i), n)
		d := cas.FromBytes(good)
		bad := bytes.Clone(good)
		bad[n-1] ^= 0xff // only the last byte differs
		err := tier.Put(ctx, d, int64(n), bytes.NewReader(bad))
		if !errors.Is(err, cas.ErrDigestMismatch) {
			t.Fatalf("%d bytes: Put = %v, want ErrDigestMismatch", n, err)
		}
		if _, err := tier.Stat(ctx, d); !errors.Is(err, cas.ErrNotFound) {
			t.Errorf("%d bytes: Stat after a mismatching Put = %v, want ErrNotFound", n, err)
		}
		bl, err := raw.NewBlockBlobClient("blobs/sha256/"+d.Hex()).GetBlockList(ctx, blockblob.BlockListTypeAll, nil)
		if err == nil && len(bl.CommittedBlocks) > 0 {
			t.Errorf("%d bytes: %d committed blocks after a mismatching Put", n, len(bl.CommittedBlocks))
		}
		if err == nil {
			t.Logf("%d bytes: %d blocks staged and left uncommitted", n, len(bl.UncommittedBlocks))
		}
		if err := tier.Put(ctx, d, int64(n), bytes.NewReader(good)); err != nil {
			t.Fatalf("%d bytes: good Put after a bad one: %v", n, err)
		}
		rc, _, err := tier.Open(ctx, d, 0)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, good) {
			t.Errorf("%d bytes: read back %d bytes, %v; want the good content", n, len(got), err)
		}
	}
}

// countingTransport counts GETs and the most in flight at once (from the
// request until its body is closed or read to the end).
type countingTransport struct {
	base     http.RoundTripper
	gets     atomic.Int64
	inFlight atomic.Int64
	maxMu    sync.Mutex
	max      int64
}

func (c *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodGet {
		return c.base.RoundTrip(req)
	}
	c.gets.Add(1)
	n := c.inFlight.Add(1)
	c.maxMu.Lock()
	c.max = max(c.max, n)
	c.maxMu.Unlock()
	resp, err := c.base.RoundTrip(req)
	if err != nil {
		c.inFlight.Add(-1)
		return nil, err
	}
	resp.Body = &doneBody{ReadCloser: resp.Body, done: func() { c.inFlight.Add(-1) }}
	return resp, nil
}

func (c *countingTransport) reset() {
	c.gets.Store(0)
	c.maxMu.Lock()
	c.max = 0
	c.maxMu.Unlock()
}

type doneBody struct {
	io.ReadCloser
	once sync.Once
	done func()
}

func (b *doneBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		b.once.Do(b.done)
	}
	return n, err
}

func (b *doneBody) Close() error {
	b.once.Do(b.done)
	return b.ReadCloser.Close()
}

func TestParallelReadBoundaries(t *testing.T) {
	e := newEnv(t)
	const chunk = 256 << 10
	const parallel = 3
	ct := &countingTransport{base: http.DefaultTransport}
	tier, _ := e.tier(t, "", Options{ChunkSize: chunk, Parallel: parallel}, &http.Client{Transport: ct})
	ctx := t.Context()
	for i, n := range []int64{0, 1, chunk - 1, chunk, chunk + 1, 3*chunk + 5, 12*chunk + 7} {
		b := tiertest.Content(uint64(100+i), int(n))
		d := cas.FromBytes(b)
		if err := tier.Put(ctx, d, n, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		for _, off := range []int64{0, 1, chunk - 1, chunk, chunk + 1, n - chunk - 1, n - 1, n} {
			if off < 0 || off > n {
				continue
			}
			ct.reset()
			rc, size, err := tier.Open(ctx, d, off)
			if err != nil {
				t.Fatalf("size %d offset %d: Open: %v", n, off, err)
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || size != n-off || !bytes.Equal(got, b[off:]) {
				t.Errorf("size %d offset %d: read %d bytes (length %d, err %v), want %d exact bytes", n, off, len(got), size, err, n-off)
			}
			// One GET per chunk (plus, at the very end, the size check);
			// at most parallel+1 of them at once.
			want := max(1, (n-off+chunk-1)/chunk)
			if gets := ct.gets.Load(); gets != want && !(off == n && gets <= 1) {
				t.Errorf("size %d offset %d: %d GETs, want %d", n, off, gets, want)
			}
			ct.maxMu.Lock()
			if ct.max > parallel+1 {
				t.Errorf("size %d offset %d: %d GETs in flight, want at most %d", n, off, ct.max, parallel+1)
			}
			ct.maxMu.Unlock()
		}
	}
}

func TestBehindTheTiersBack(t *testing.T) {
	e := newEnv(t)
	tier, raw := e.tier(t, "", Options{ChunkSize: 256 << 10, Parallel: 2}, nil)
	ctx := t.Context()
	good := tiertest.Content(1, 3<<20+3)
	d := cas.FromBytes(good)
	name := "blobs/sha256/" + d.Hex()
	put := func() {
		t.Helper()
		if err := tier.Put(ctx, d, int64(len(good)), bytes.NewReader(good)); err != nil {
			t.Fatalf("Put: %v", err)
		}
	}
	overwrite := func(b []byte) {
		t.Helper()
		if _, err := raw.NewBlockBlobClient(name).Upload(ctx, streaming.NopCloser(bytes.NewReader(b)), nil); err != nil {
			t.Fatal(err)
		}
	}
	readAll := func() ([]byte, error) {
		rc, _, err := tier.Open(ctx, d, 0)
		if err != nil {
			return nil, err
		}
		defer rc.Close()
		return io.ReadAll(rc)
	}

	t.Run("deleted", func(t *testing.T) {
		put()
		if _, err := raw.NewBlobClient(name).Delete(ctx, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := tier.Stat(ctx, d); !errors.Is(err, cas.ErrNotFound) {
			t.Errorf("Stat = %v, want ErrNotFound", err)
		}
		if _, err := readAll(); !errors.Is(err, cas.ErrNotFound) {
			t.Errorf("Open = %v, want ErrNotFound", err)
		}
		put()
		if got, err := readAll(); err != nil || !bytes.Equal(got, good) {
			t.Errorf("after Put again: %d bytes, %v", len(got), err)
		}
	})

	t.Run("corrupted", func(t *testing.T) {
		put()
		bad := bytes.Clone(good)
		bad[len(bad)/2] ^= 1
		overwrite(bad)
		// What the registry does: verify while streaming, Delete on a
		// mismatch, Put the content fetched from below.
		rc, size, err := tier.Open(ctx, d, 0)
		if err != nil {
			t.Fatal(err)
		}
		v := cas.NewVerifier(d, size)
		_, err = io.Copy(v, rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if err := v.Check(); !errors.Is(err, cas.ErrDigestMismatch) {
			t.Fatalf("corrupted blob verified: %v", err)
		}
		if err := tier.Delete(ctx, d); err != nil {
			t.Fatal(err)
		}
		put()
		if got, err := readAll(); err != nil || !bytes.Equal(got, good) {
			t.Errorf("after Delete and Put: %d bytes, %v", len(got), err)
		}
	})

	t.Run("truncated", func(t *testing.T) {
		put()
		overwrite(good[:len(good)-10])
		if n, err := tier.Stat(ctx, d); err != nil || n != int64(len(good))-10 {
			t.Fatalf("Stat = %d, %v", n, err)
		}
		// Put notices the wrong size and replaces the blob.
		put()
		if got, err := readAll(); err != nil || !bytes.Equal(got, good) {
			t.Errorf("after Put over a truncated blob: %d bytes, %v", len(got), err)
		}
	})

	t.Run("deleted while read", func(t *testing.T) {
		put()
		rc, _, err := tier.Open(ctx, d, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		buf := make([]byte, 1000)
		if _, err := io.ReadFull(rc, buf); err != nil {
			t.Fatal(err)
		}
		if _, err := raw.NewBlobClient(name).Delete(ctx, nil); err != nil {
			t.Fatal(err)
		}
		rest, err := io.ReadAll(rc)
		if err == nil {
			t.Errorf("reading a blob deleted under the reader ended cleanly after %d bytes of %d: a short body must be an error", 1000+len(rest), len(good))
		}
	})

	t.Run("shrunk while read", func(t *testing.T) {
		put()
		rc, _, err := tier.Open(ctx, d, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		buf := make([]byte, 1000)
		if _, err := io.ReadFull(rc, buf); err != nil {
			t.Fatal(err)
		}
		overwrite(good[:1<<20])
		rest, err := io.ReadAll(rc)
		if err == nil {
			t.Errorf("reading a blob that shrank under the reader ended cleanly after %d bytes of %d", 1000+len(rest), len(good))
		}
	})
}

func TestHealth(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()

	// Missing container, a key that may create it: Start creates it.
	cname := newContainerName()
	tier := newTier(e.store(t, e.az.ContainerURL(cname), e.sharedKey(), nil), Options{})
	if err := tier.Start(ctx); err != nil {
		t.Fatalf("Start with the account key on a missing container: %v", err)
	}
	if err := tier.Health(ctx); err != nil {
		t.Errorf("Health: %v", err)
	}

	// Missing container, a read-only container SAS: unhealthy, skipped.
	missing := newContainerName()
	sasCred := azstore.Credential{Auth: azstore.AuthSAS, SASFile: e.az.SASFile(t, missing, "rl")}
	ro := newTier(e.store(t, e.az.ContainerURL(missing), sasCred, nil), Options{})
	if err := ro.Start(ctx); !errors.Is(err, cas.ErrUnavailable) {
		t.Errorf("Start with a read-only SAS on a missing container = %v, want ErrUnavailable", err)
	}
	if err := ro.Health(ctx); !errors.Is(err, cas.ErrUnavailable) {
		t.Errorf("Health with a read-only SAS on a missing container = %v, want ErrUnavailable", err)
	}
	if _, err := ro.Stat(ctx, cas.FromBytes([]byte("x"))); !errors.Is(err, cas.ErrUnavailable) {
		t.Errorf("Stat on a missing container = %v, want ErrUnavailable", err)
	}
	// Once an operator creates it, the same tier is healthy.
	admin := newTier(e.store(t, e.az.ContainerURL(missing), e.sharedKey(), nil), Options{})
	if err := admin.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ro.Health(ctx); err != nil {
		t.Errorf("Health after the container was created: %v", err)
	}
	// Read-only: reads work, a Put of a new blob is refused as unavailable.
	b := []byte("hello")
	if err := admin.Put(ctx, cas.FromBytes(b), 5, bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	if n, err := ro.Stat(ctx, cas.FromBytes(b)); err != nil || n != 5 {
		t.Errorf("Stat with a read-only SAS = %d, %v", n, err)
	}
	if err := ro.Put(ctx, cas.FromBytes(b), 5, bytes.NewReader(b)); err != nil {
		t.Errorf("Put of a blob already there with a read-only SAS: %v", err)
	}
	b2 := []byte("other")
	if err := ro.Put(ctx, cas.FromBytes(b2), 5, bytes.NewReader(b2)); !errors.Is(err, cas.ErrUnavailable) {
		t.Errorf("Put with a read-only SAS = %v, want ErrUnavailable", err)
	}

	// Wrong key: unavailable.
	badKey := e.store(t, e.az.ContainerURL(cname), azstore.Credential{Auth: azstore.AuthSharedKey, KeyFile: writeKey(t, "AAAA"+e.az.Key[4:])}, nil)
	if err := newTier(badKey, Options{}).Health(ctx); !errors.Is(err, cas.ErrUnavailable) {
		t.Errorf("Health with a wrong key = %v, want ErrUnavailable", err)
	}
}

func writeKey(t *testing.T, key string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(p, []byte(key), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestUnreachable checks that storage nobody answers for is unavailable,
// and that after the first failure (slow: the SDK retries) the tier fails
// fast instead of making every blob wait.
func TestUnreachable(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the SDK's retries: skipped with -short")
	}
	tier, err := New(Options{URL: "http://" + testenv.FreePort(t) + "/devstoreaccount1/cache", Credential: azstore.Credential{Auth: "none"}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = tier.Stat(t.Context(), cas.FromBytes(nil))
	t.Logf("first Stat took %v: %v", time.Since(start), err)
	if !errors.Is(err, cas.ErrUnavailable) {
		t.Errorf("Stat = %v, want ErrUnavailable", err)
	}
	start = time.Now()
	_, _, err = tier.Open(t.Context(), cas.FromBytes(nil), 0)
	if !errors.Is(err, cas.ErrUnavailable) || time.Since(start) > time.Second {
		t.Errorf("Open during the backoff took %v: %v; want ErrUnavailable at once", time.Since(start), err)
	}
}
