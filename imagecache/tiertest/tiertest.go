// Package tiertest is the conformance suite every image-cache tier passes:
// the same behaviour of cas.Tier checked against the disk tier and against
// Azure Blob Storage (Azurite), in the manner of distribution's storage
// driver test suites.
package tiertest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthhq/berth/imagecache/cas"
)

// LargeSize is the size of the blob the suite streams through a tier from a
// generator, never holding it in memory.
const LargeSize = 64 << 20

// Run runs the suite. newTier returns a fresh, empty tier for each subtest;
// it is called from within the subtest, so it can register cleanups on t.
func Run(t *testing.T, newTier func(t *testing.T) cas.Tier) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, tier cas.Tier)
	}{
		{"PutStatOpen", testPutStatOpen},
		{"Missing", testMissing},
		{"HostileDigests", testHostileDigests},
		{"PutMismatch", testPutMismatch},
		{"PutReaderError", testPutReaderError},
		{"PutExisting", testPutExisting},
		{"ConcurrentPut", testConcurrentPut},
		{"ConcurrentPutOpen", testConcurrentPutOpen},
		{"Delete", testDelete},
		{"Refs", testRefs},
		{"HostileRefNames", testHostileRefNames},
		{"LargeBlob", testLargeBlob},
		{"CancelMidPut", testCancelMidPut},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tier := newTier(t)
			if tier.Name() == "" {
				t.Fatal("Name() is empty")
			}
			tc.fn(t, tier)
		})
	}
}

// Content returns n pseudo-random bytes determined by seed.
func Content(seed uint64, n int) []byte {
	b := make([]byte, n)
	_, _ = Generator(seed, int64(n)).Read(b)
	return b
}

// Generator returns a reader of n pseudo-random bytes determined by seed,
// the same bytes Content returns, produced as they are read.
func Generator(seed uint64, n int64) io.Reader {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	return &fullReader{io.LimitReader(rand.NewChaCha8(s), n)}
}

// fullReader fills p whenever it can, so Content's single Read gets all.
type fullReader struct{ r io.Reader }

// Read implements io.Reader.
func (f *fullReader) Read(p []byte) (int, error) {
	n, err := io.ReadFull(f.r, p)
	if err == io.ErrUnexpectedEOF {
		err = nil
		if n == 0 {
			err = io.EOF
		}
	}
	return n, err
}

// GeneratorDigest returns the digest of Generator(seed, n)'s bytes.
func GeneratorDigest(seed uint64, n int64) cas.Digest {
	h := sha256.New()
	if _, err := io.Copy(h, Generator(seed, n)); err != nil {
		panic(err)
	}
	return cas.Digest("sha256:" + hex.EncodeToString(h.Sum(nil)))
}

func put(t *testing.T, tier cas.Tier, b []byte) cas.Digest {
	t.Helper()
	d := cas.FromBytes(b)
	if err := tier.Put(t.Context(), d, int64(len(b)), bytes.NewReader(b)); err != nil {
		t.Fatalf("Put(%d bytes): %v", len(b), err)
	}
	return d
}

// readAt opens d at offset and reads it all, checking the reported length
// (size minus offset).
func readAt(t *testing.T, tier cas.Tier, d cas.Digest, offset, blobSize int64) []byte {
	t.Helper()
	rc, size, err := tier.Open(t.Context(), d, offset)
	if err != nil {
		t.Fatalf("Open(offset %d): %v", offset, err)
	}
	defer rc.Close()
	if size != blobSize-offset {
		t.Errorf("Open(offset %d) of a %d-byte blob reports length %d, want %d", offset, blobSize, size, blobSize-offset)
	}
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read at offset %d: %v", offset, err)
	}
	if err := rc.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	return b
}

func wantNotFound(t *testing.T, tier cas.Tier, d cas.Digest, why string) {
	t.Helper()
	if n, err := tier.Stat(t.Context(), d); !errors.Is(err, cas.ErrNotFound) {
		t.Errorf("%s: Stat = %d, %v; want ErrNotFound", why, n, err)
	}
	rc, _, err := tier.Open(t.Context(), d, 0)
	if err == nil {
		rc.Close()
	}
	if !errors.Is(err, cas.ErrNotFound) {
		t.Errorf("%s: Open error = %v; want ErrNotFound", why, err)
	}
}

func testPutStatOpen(t *testing.T, tier cas.Tier) {
	for i, n := range []int{0, 1, 4097, 1<<20 + 3} {
		b := Content(uint64(i+1), n)
		d := put(t, tier, b)
		size, err := tier.Stat(t.Context(), d)
		if err != nil || size != int64(n) {
			t.Fatalf("Stat = %d, %v; want %d", size, err, n)
		}
		for _, off := range []int{0, 1, n / 2, n - 1, n} {
			if off < 0 || off > n {
				continue
			}
			got := readAt(t, tier, d, int64(off), int64(n))
			if !bytes.Equal(got, b[off:]) {
				t.Errorf("%d-byte blob at offset %d: got %d bytes, want %d (content differs)", n, off, len(got), n-off)
			}
		}
		for _, off := range []int64{int64(n) + 1, int64(n) + 1<<20, -1} {
			if rc, _, err := tier.Open(t.Context(), d, off); err == nil {
				rc.Close()
				t.Errorf("%d-byte blob: Open at offset %d succeeded, want an error", n, off)
			}
		}
	}
}

func testMissing(t *testing.T, tier cas.Tier) {
	d := cas.FromBytes([]byte("never stored"))
	wantNotFound(t, tier, d, "never stored")
	if err := tier.Delete(t.Context(), d); err != nil {
		t.Errorf("Delete of a missing blob: %v", err)
	}
}

func testHostileDigests(t *testing.T, tier cas.Tier) {
	ctx := t.Context()
	for _, d := range []cas.Digest{
		"", "sha256:", "sha256:../../../../etc/passwd",
		cas.Digest("sha256:../" + strings.Repeat("a", 61)),
		cas.Digest("sha256:" + strings.Repeat("A", 64)),
		cas.Digest("sha512:" + strings.Repeat("a", 128)),
		cas.Digest("sha256:" + strings.Repeat("a", 63) + "\x00"),
	} {
		if _, err := tier.Stat(ctx, d); err == nil || errors.Is(err, cas.ErrUnavailable) {
			t.Errorf("Stat(%q) = %v, want a digest error", d, err)
		}
		if rc, _, err := tier.Open(ctx, d, 0); err == nil {
			rc.Close()
			t.Errorf("Open(%q) succeeded", d)
		}
		if err := tier.Put(ctx, d, 1, strings.NewReader("x")); err == nil {
			t.Errorf("Put(%q) succeeded", d)
		}
		if err := tier.Delete(ctx, d); err == nil {
			t.Errorf("Delete(%q) succeeded", d)
		}
	}
}

func testPutMismatch(t *testing.T, tier cas.Tier) {
	good := Content(7, 3<<20+11)
	d := cas.FromBytes(good)
	n := int64(len(good))
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 1
	for _, tc := range []struct {
		name string
		size int64
		body []byte
	}{
		{"wrong bytes", n, flipped},
		{"short", n, good[:n-1]},
		{"long", n, append(bytes.Clone(good), 'x')},
		{"empty", n, nil},
		{"size too small", n - 1, good},
		{"size too large", n + 1, good},
		{"size zero", 0, good},
	} {
		err := tier.Put(t.Context(), d, tc.size, bytes.NewReader(tc.body))
		if !errors.Is(err, cas.ErrDigestMismatch) {
			t.Errorf("%s: Put = %v, want ErrDigestMismatch", tc.name, err)
		}
		wantNotFound(t, tier, d, tc.name)
	}
	// The right content is stored after all those failures.
	put(t, tier, good)
	if got := readAt(t, tier, d, 0, n); !bytes.Equal(got, good) {
		t.Errorf("after failed Puts, the good Put reads back %d bytes that differ", len(got))
	}
}

// failingReader yields n good bytes, then an error.
type failingReader struct {
	r io.Reader
}

var errBroken = errors.New("upstream connection reset (test)")

// Read implements io.Reader.
func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, errBroken
	}
	return n, err
}

func testPutReaderError(t *testing.T, tier cas.Tier) {
	b := Content(8, 3<<20)
	d := cas.FromBytes(b)
	err := tier.Put(t.Context(), d, int64(len(b)), &failingReader{bytes.NewReader(b[:2<<20+5])})
	if err == nil {
		t.Fatal("Put from a reader that fails half way succeeded")
	}
	wantNotFound(t, tier, d, "reader failed")
}

func testPutExisting(t *testing.T, tier cas.Tier) {
	b := Content(9, 100_000)
	d := put(t, tier, b)
	put(t, tier, b)
	if got := readAt(t, tier, d, 0, int64(len(b))); !bytes.Equal(got, b) {
		t.Error("content changed after a second Put")
	}
}

func testConcurrentPut(t *testing.T, tier cas.Tier) {
	b := Content(10, 3<<20+17)
	d := cas.FromBytes(b)
	var wg sync.WaitGroup
	errs := make([]error, 16)
	for i := range errs {
		wg.Go(func() {
			errs[i] = tier.Put(t.Context(), d, int64(len(b)), bytes.NewReader(b))
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Put %d of 16 concurrent: %v", i, err)
		}
	}
	if got := readAt(t, tier, d, 0, int64(len(b))); !bytes.Equal(got, b) {
		t.Errorf("after 16 concurrent Puts: read %d bytes that differ from the %d put", len(got), len(b))
	}
}

func testConcurrentPutOpen(t *testing.T, tier cas.Tier) {
	b := Content(11, 2<<20+1)
	d := cas.FromBytes(b)
	done := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var problems []string
	seen := 0
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				rc, size, err := tier.Open(t.Context(), d, 0)
				if errors.Is(err, cas.ErrNotFound) {
					continue
				}
				mu.Lock()
				if err != nil {
					problems = append(problems, fmt.Sprintf("Open during Put: %v", err))
					mu.Unlock()
					return
				}
				mu.Unlock()
				got, err := io.ReadAll(rc)
				rc.Close()
				mu.Lock()
				seen++
				if err != nil || size != int64(len(b)) || !bytes.Equal(got, b) {
					problems = append(problems, fmt.Sprintf("a reader during Put saw %d of %d bytes (size %d, err %v): never a partial blob", len(got), len(b), size, err))
				}
				mu.Unlock()
			}
		})
	}
	put(t, tier, b)
	// Let the readers see the stored blob at least once.
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n, bad := seen, len(problems)
		mu.Unlock()
		if n > 0 || bad > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Error("no reader saw the blob within 30s of its Put")
			break
		}
		time.Sleep(time.Millisecond)
	}
	close(done)
	wg.Wait()
	for _, p := range problems {
		t.Error(p)
	}
}

func testDelete(t *testing.T, tier cas.Tier) {
	b := Content(12, 5000)
	d := put(t, tier, b)
	keep := put(t, tier, Content(13, 5000))
	if err := tier.Delete(t.Context(), d); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	wantNotFound(t, tier, d, "after Delete")
	if err := tier.Delete(t.Context(), d); err != nil {
		t.Errorf("second Delete: %v", err)
	}
	if _, err := tier.Stat(t.Context(), keep); err != nil {
		t.Errorf("Delete of one blob removed another: %v", err)
	}
	put(t, tier, b)
	if got := readAt(t, tier, d, 0, int64(len(b))); !bytes.Equal(got, b) {
		t.Error("Put after Delete reads back different content")
	}
}

func testRefs(t *testing.T, tier cas.Tier) {
	ctx := t.Context()
	const name = "docker.io/library/busybox/tags/latest"
	if v, err := tier.GetRef(ctx, name); !errors.Is(err, cas.ErrNotFound) {
		t.Errorf("GetRef of a missing ref = %q, %v; want ErrNotFound", v, err)
	}
	get := func(name string, want []byte) {
		t.Helper()
		got, err := tier.GetRef(ctx, name)
		if err != nil {
			t.Fatalf("GetRef(%q): %v", name, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("GetRef(%q) = %.60q, want %.60q", name, got, want)
		}
	}
	set := func(name string, v []byte) {
		t.Helper()
		if err := tier.PutRef(ctx, name, v); err != nil {
			t.Fatalf("PutRef(%q, %d bytes): %v", name, len(v), err)
		}
	}
	set(name, []byte("sha256:one"))
	get(name, []byte("sha256:one"))
	set(name, []byte("sha256:two"))
	get(name, []byte("sha256:two"))
	set(name, nil)
	get(name, []byte{})
	full := Content(14, cas.MaxRefSize)
	set(name, full)
	get(name, full)
	if err := tier.PutRef(ctx, name, Content(15, cas.MaxRefSize+1)); err == nil {
		t.Errorf("PutRef of %d bytes succeeded; the limit is %d", cas.MaxRefSize+1, cas.MaxRefSize)
	}
	get(name, full)

	// Names that file systems and URLs treat specially stay distinct.
	names := []string{
		"r/Tag", "r/tag", "r/TAG", "r/a%2Fb", "r/a/b", "r/a:b", "r/a@sha256:x", "r/a+b", "r/a b",
		"r/ünïcødé", "con", "nul", "com1", "a.", "a..b", "...", ".hidden", "r/x.ref", "r/~x",
		strings.Repeat("long/", 80) + "end",
	}
	for i, n := range names {
		set(n, []byte(fmt.Sprintf("value %d", i)))
	}
	for i, n := range names {
		get(n, []byte(fmt.Sprintf("value %d", i)))
	}
}

func testHostileRefNames(t *testing.T, tier cas.Tier) {
	ctx := t.Context()
	for _, n := range []string{
		"", "../x", "../../../../tmp/x", "a/../../x", "a/../x", "..", ".", "./x", "a/./b",
		"/etc/passwd", "/x", "a//b", "a/", `..\x`, `C:\x`, `\\server\share\x`, "a\x00b", "\x00",
		"a\nb", "bad\xffutf8", strings.Repeat("x", 2000),
	} {
		if err := tier.PutRef(ctx, n, []byte("pwned")); err == nil {
			t.Errorf("PutRef(%.40q) succeeded, want an error", n)
		}
		if v, err := tier.GetRef(ctx, n); err == nil {
			t.Errorf("GetRef(%.40q) = %q, want an error", n, v)
		}
	}
	for _, n := range []string{"x", "etc/passwd", "tmp/x"} {
		if _, err := tier.GetRef(ctx, n); !errors.Is(err, cas.ErrNotFound) {
			t.Errorf("GetRef(%q) after hostile PutRefs = %v, want ErrNotFound", n, err)
		}
	}
}

func testLargeBlob(t *testing.T, tier cas.Tier) {
	const seed = 16
	d := GeneratorDigest(seed, LargeSize)
	if err := tier.Put(t.Context(), d, LargeSize, Generator(seed, LargeSize)); err != nil {
		t.Fatalf("Put of a %d-byte blob: %v", LargeSize, err)
	}
	if n, err := tier.Stat(t.Context(), d); err != nil || n != LargeSize {
		t.Fatalf("Stat = %d, %v; want %d", n, err, LargeSize)
	}
	for _, off := range []int64{0, LargeSize/2 + 12345, LargeSize - 1} {
		rc, size, err := tier.Open(t.Context(), d, off)
		if err != nil {
			t.Fatalf("Open at %d: %v", off, err)
		}
		got := sha256.New()
		n, err := io.Copy(got, rc)
		rc.Close()
		if err != nil || size != LargeSize-off || n != LargeSize-off {
			t.Fatalf("read at %d: %d bytes, length %d, err %v; want %d bytes", off, n, size, err, LargeSize-off)
		}
		want := sha256.New()
		g := Generator(seed, LargeSize)
		if _, err := io.CopyN(io.Discard, g, off); err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(want, g); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
			t.Errorf("content read from offset %d differs from what was put", off)
		}
	}
}

// cancelReader yields r, cancelling a context once after `after` bytes.
type cancelReader struct {
	r      io.Reader
	after  int64
	n      int64
	cancel context.CancelFunc
}

// Read implements io.Reader.
func (c *cancelReader) Read(p []byte) (int, error) {
	if c.n >= c.after && c.cancel != nil {
		c.cancel()
		c.cancel = nil
	}
	if rem := c.after - c.n; rem > 0 && int64(len(p)) > rem {
		p = p[:rem]
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func testCancelMidPut(t *testing.T, tier cas.Tier) {
	b := Content(17, 3<<20+5)
	d := cas.FromBytes(b)
	// The reader delivers every byte, but the context ends half way: the
	// Put must fail and leave nothing.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	err := tier.Put(ctx, d, int64(len(b)), &cancelReader{r: bytes.NewReader(b), after: int64(len(b)) / 2, cancel: cancel})
	if err == nil {
		t.Fatal("Put whose context was cancelled half way succeeded")
	}
	wantNotFound(t, tier, d, "cancelled Put")
	// The reader stops at the cancellation.
	ctx, cancel = context.WithCancel(t.Context())
	defer cancel()
	err = tier.Put(ctx, d, int64(len(b)), &cancelReader{
		r: &ctxErrReader{ctx: ctx, r: bytes.NewReader(b)}, after: int64(len(b)) / 3, cancel: cancel,
	})
	if err == nil {
		t.Fatal("Put whose reader stopped at the cancellation succeeded")
	}
	wantNotFound(t, tier, d, "cancelled Put")
}

// ctxErrReader fails once ctx ends, as a network body does.
type ctxErrReader struct {
	ctx context.Context
	r   io.Reader
}

// Read implements io.Reader.
func (c *ctxErrReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
