// Package disk is the image cache's local disk tier: blobs stored by digest
// in one folder, verified before they are committed, evicted least recently
// used above a size limit, with their index in agent.db.
//
// Layout under the tier's folder (SPEC "Files on a host": <stateDir>/cache):
//
//	blobs/sha256/<2 hex>/<64 hex>   content, named by its SHA-256
//	tmp/                            uploads in progress; stale ones are removed
//	refs/<escaped name>.ref         small named records (GetRef, PutRef)
//
// A blob is written to tmp/ while it is hashed, flushed to disk, and renamed
// into place only when its digest checks out, so a file under blobs/ is
// always complete. The index (size and last access of every blob) lives in
// memory and is written to agent.db's "cache-index" bucket in batches,
// because statedb opens the file for each transaction; at start it is
// reconciled with the folder, which stays the truth.
package disk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/berthhq/berth/imagecache/cas"
	"github.com/berthhq/berth/internal/statedb"
)

// IndexBucket is the agent.db bucket holding the disk tier's index: one
// record per blob, keyed by the digest's hex, {"size":N,"atime":UNIX_NANOS}.
const IndexBucket = "cache-index"

// DefaultFlushInterval is how often last-access times are written to
// agent.db when Options.FlushInterval is zero.
const DefaultFlushInterval = 30 * time.Second

// staleTmp is how long a file in tmp/ may go unwritten before it is taken
// for the leftover of a crash and removed. Uploads in progress write to
// their file all the time; another process using the same folder (a
// one-shot command beside the daemon) must not lose its uploads.
const staleTmp = 15 * time.Minute

// lowWater is the share of MaxSize eviction frees down to, so that one Put
// over the limit does not make every following Put evict too.
const lowWater = 0.9

// Options configure a Disk.
type Options struct {
	// Dir is the tier's folder (cache.local.dir); it is created if missing.
	Dir string
	// MaxSize is the most bytes of blobs the tier keeps (cache.local.maxSize);
	// 0 means no limit. A Put that brings the total above it evicts the
	// least recently used blobs down to 90% of it.
	MaxSize int64
	// DB is agent.db, where the index is kept across restarts; nil keeps the
	// index in memory only (it is rebuilt from the folder at every start,
	// with file modification times as last access).
	DB *statedb.DB
	// Logger receives the tier's logs; nil discards them.
	Logger *slog.Logger
	// FlushInterval is how often the index is written to DB;
	// 0 means DefaultFlushInterval.
	FlushInterval time.Duration
}

// Disk is the local disk tier. It implements cas.Tier; use New, then Start,
// then Close.
type Disk struct {
	dir, blobDir, tmpDir, refDir string

	max        int64
	db         *statedb.DB
	log        *slog.Logger
	flushEvery time.Duration

	mu           sync.Mutex
	idx          map[string]*entry // by digest hex
	total        int64
	reserved     int64           // set aside by Reserve for blobs on their way in
	clock        int64           // last access stamp handed out, unix nanoseconds, strictly increasing
	dirty        map[string]bool // index records to write (or delete, when no longer in idx)
	evictions    int64
	evictedBytes int64
	corrupt      int64

	flushMu sync.Mutex // one flush at a time

	lifeMu  sync.Mutex
	started bool
	closed  bool
	stop    context.CancelFunc
	done    chan struct{}
}

// entry is what the index knows of one blob.
type entry struct {
	size    int64
	atime   int64 // last access, unix nanoseconds
	readers int   // open readers; such a blob is never evicted
	// verified identifies the file as it was when its content last hashed
	// to its digest (zero: not since this process started).
	verified fileID
}

var _ cas.Tier = (*Disk)(nil)

// New opens the tier in o.Dir: it creates the folders, removes stale
// uploads from tmp/, and
// builds the index from agent.db reconciled with the blobs on disk (files
// the index does not know are added, records without a file dropped). It
// starts nothing; call Start.
func New(o Options) (*Disk, error) {
	if o.Dir == "" {
		return nil, errors.New("disk cache: no folder given")
	}
	if o.MaxSize < 0 {
		return nil, fmt.Errorf("disk cache %s: negative maxSize %d", o.Dir, o.MaxSize)
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("disk cache %s: %w", o.Dir, err)
	}
	d := &Disk{
		dir:        dir,
		blobDir:    filepath.Join(dir, "blobs", "sha256"),
		tmpDir:     filepath.Join(dir, "tmp"),
		refDir:     filepath.Join(dir, "refs"),
		max:        o.MaxSize,
		db:         o.DB,
		log:        log.With("component", "cache-disk", "dir", dir),
		flushEvery: o.FlushInterval,
		idx:        map[string]*entry{},
		dirty:      map[string]bool{},
	}
	if d.flushEvery <= 0 {
		d.flushEvery = DefaultFlushInterval
	}
	for _, p := range []string{d.blobDir, d.tmpDir, d.refDir} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			return nil, fmt.Errorf("disk cache: %w", err)
		}
	}
	if err := d.sweepTmp(staleTmp); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := d.load(ctx); err != nil {
		return nil, err
	}
	return d, nil
}

// sweepTmp removes files in tmp/ not written for olderThan: uploads a
// crash or a killed process left behind.
func (d *Disk) sweepTmp(olderThan time.Duration) error {
	ents, err := os.ReadDir(d.tmpDir)
	if err != nil {
		return fmt.Errorf("disk cache: %w", err)
	}
	n := 0
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil || time.Since(fi.ModTime()) < olderThan {
			continue
		}
		if err := os.RemoveAll(filepath.Join(d.tmpDir, e.Name())); err != nil {
			d.log.Warn("cannot remove a leftover upload", "file", e.Name(), "err", err)
			continue
		}
		n++
	}
	if n > 0 {
		d.log.Info("removed leftover uploads", "count", n)
	}
	return nil
}

// Start evicts down to the size limit (which may have been lowered since
// the last run), writes the reconciled index, and starts the goroutine that
// flushes last-access times every FlushInterval until Close (or until ctx
// ends).
func (d *Disk) Start(ctx context.Context) error {
	d.lifeMu.Lock()
	defer d.lifeMu.Unlock()
	if d.closed {
		return errors.New("disk cache: start after close")
	}
	if d.started {
		return errors.New("disk cache: started twice")
	}
	d.started = true
	if d.max > 0 {
		d.mu.Lock()
		d.evictLocked(d.max, "")
		d.mu.Unlock()
	}
	if err := d.flush(ctx); err != nil {
		d.log.Warn("cannot write the cache index; will retry", "err", err)
	}
	lctx, stop := context.WithCancel(ctx)
	d.stop = stop
	d.done = make(chan struct{})
	go d.flushLoop(lctx)
	return nil
}

// flushLoop writes the index every flushEvery until ctx ends. A failing
// database is reported once when it starts failing and once when it
// recovers, not at every tick.
func (d *Disk) flushLoop(ctx context.Context) {
	defer close(d.done)
	t := time.NewTicker(d.flushEvery)
	defer t.Stop()
	failing := false
	lastSweep := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// `berth-agent cache prune|verify` may remove blobs while the
		// daemon runs; drop what they removed before the flush, so the
		// daemon's size accounting and index follow within one interval.
		if n, freed := d.dropMissing(); n > 0 {
			d.log.Info("blobs removed by another process dropped from the index", "count", n, "bytes", freed)
		}
		fctx, cancel := context.WithTimeout(ctx, time.Minute)
		err := d.flush(fctx)
		cancel()
		if time.Since(lastSweep) > staleTmp {
			lastSweep = time.Now()
			if serr := d.sweepTmp(staleTmp); serr != nil {
				d.log.Warn("cannot sweep the upload folder", "err", serr)
			}
		}
		switch {
		case err != nil && !failing && ctx.Err() == nil:
			d.log.Warn("cannot write the cache index; will retry", "err", err)
			failing = true
		case err == nil && failing:
			d.log.Info("cache index written again")
			failing = false
		}
	}
}

// Close stops the flush goroutine and writes the index a last time. The
// tier must not be used after Close.
func (d *Disk) Close() error {
	d.lifeMu.Lock()
	defer d.lifeMu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	if d.stop != nil {
		d.stop()
		<-d.done
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return d.flush(ctx)
}

// Name returns "disk".
func (d *Disk) Name() string { return "disk" }

// Dir returns the tier's folder.
func (d *Disk) Dir() string { return d.dir }

// Stat returns the blob's size, or an error wrapping cas.ErrNotFound.
func (d *Disk) Stat(ctx context.Context, dg cas.Digest) (int64, error) {
	h, err := checkDigest(dg)
	if err != nil {
		return 0, fmt.Errorf("disk stat: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.idx[h]
	if e == nil {
		return 0, fmt.Errorf("disk stat %s: %w", dg, cas.ErrNotFound)
	}
	return e.size, nil
}

// Open returns the blob's content from offset on and its length (the
// blob's size minus offset). An offset equal to the size gives an empty
// reader; a larger one an error.
// It counts as an access for eviction, and the blob is not evicted while
// the reader is open. A file whose size no longer matches the index is
// treated as rot: it is removed and Open reports cas.ErrNotFound.
func (d *Disk) Open(ctx context.Context, dg cas.Digest, offset int64) (io.ReadCloser, int64, error) {
	h, err := checkDigest(dg)
	if err != nil {
		return nil, 0, fmt.Errorf("disk open: %w", err)
	}
	if offset < 0 {
		return nil, 0, fmt.Errorf("disk open %s: negative offset %d", dg, offset)
	}
	d.mu.Lock()
	e := d.idx[h]
	if e == nil {
		d.mu.Unlock()
		return nil, 0, fmt.Errorf("disk open %s: %w", dg, cas.ErrNotFound)
	}
	e.readers++
	e.atime = d.tickLocked()
	d.dirty[h] = true
	d.mu.Unlock()

	f, err := openShared(d.blobPath(h))
	if err != nil {
		d.release(e)
		if errors.Is(err, fs.ErrNotExist) {
			d.log.Warn("blob vanished from the cache folder", "digest", dg)
			d.forget(h, e)
			return nil, 0, fmt.Errorf("disk open %s: %w", dg, cas.ErrNotFound)
		}
		return nil, 0, fmt.Errorf("disk open %s: %w", dg, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		d.release(e)
		return nil, 0, fmt.Errorf("disk open %s: %w", dg, err)
	}
	size := fi.Size()
	if size != e.size {
		f.Close()
		d.release(e)
		d.log.Warn("blob has the wrong size on disk; removing it", "digest", dg, "size", size, "want", e.size)
		d.removeCorrupt(h, e)
		return nil, 0, fmt.Errorf("disk open %s: %d bytes on disk, want %d: %w", dg, size, e.size, cas.ErrNotFound)
	}
	if offset > size {
		f.Close()
		d.release(e)
		return nil, 0, fmt.Errorf("disk open %s: offset %d is past the end (%d bytes)", dg, offset, size)
	}
	if offset > 0 {
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			f.Close()
			d.release(e)
			return nil, 0, fmt.Errorf("disk open %s: %w", dg, err)
		}
	}
	r := &blobReader{f: f, d: d, e: e}
	d.markTrusted(r)
	return r, size - offset, nil
}

// blobReader is an open blob; closing it lets the blob be evicted again.
type blobReader struct {
	f       *os.File
	d       *Disk
	e       *entry
	trusted bool // unchanged since verified: see TrustedFile
	once    sync.Once
}

// Read implements io.Reader.
func (r *blobReader) Read(p []byte) (int, error) { return r.f.Read(p) }

// WriteTo lets io.Copy use the file's own fast paths (sendfile, splice).
func (r *blobReader) WriteTo(w io.Writer) (int64, error) { return r.f.WriteTo(w) }

// Close closes the file.
func (r *blobReader) Close() error {
	err := r.f.Close()
	r.once.Do(func() { r.d.release(r.e) })
	return err
}

// release ends one reader of e.
func (d *Disk) release(e *entry) {
	d.mu.Lock()
	e.readers--
	d.mu.Unlock()
}

// forget drops h from the index if it is still entry e.
func (d *Disk) forget(h string, e *entry) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.idx[h] == e {
		d.dropLocked(h)
	}
}

// removeCorrupt removes h's file and index entry (if still entry e) and
// counts it as corrupt.
func (d *Disk) removeCorrupt(h string, e *entry) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.idx[h] != e {
		return false
	}
	d.dropLocked(h)
	d.corrupt++
	if err := os.Remove(d.blobPath(h)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		d.log.Warn("cannot remove a corrupt blob", "digest", "sha256:"+h, "err", err)
	}
	return true
}

// dropMissing drops the index entries whose files are gone and that no
// reader holds open, and returns how many and their bytes. It stats every
// blob outside the lock, so serving goes on while it runs.
func (d *Disk) dropMissing() (int, int64) {
	d.mu.Lock()
	hs := make([]string, 0, len(d.idx))
	for h := range d.idx {
		hs = append(hs, h)
	}
	d.mu.Unlock()
	n, freed := 0, int64(0)
	for _, h := range hs {
		if _, err := os.Lstat(d.blobPath(h)); !errors.Is(err, fs.ErrNotExist) {
			continue
		}
		d.mu.Lock()
		// Look again under the lock: a commit may have just put it back.
		if e := d.idx[h]; e != nil && e.readers == 0 {
			if _, err := os.Lstat(d.blobPath(h)); errors.Is(err, fs.ErrNotExist) {
				n, freed = n+1, freed+e.size
				d.dropLocked(h)
			}
		}
		d.mu.Unlock()
	}
	return n, freed
}

// dropLocked removes h from the index.
func (d *Disk) dropLocked(h string) {
	if e := d.idx[h]; e != nil {
		d.total -= e.size
		delete(d.idx, h)
		d.dirty[h] = true
	}
}

// tickLocked returns a last-access stamp later than every earlier one, so
// that accesses within one clock tick still order.
func (d *Disk) tickLocked() int64 {
	now := time.Now().UnixNano()
	if now <= d.clock {
		now = d.clock + 1
	}
	d.clock = now
	return now
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

// Put stores the blob read from r, which must be exactly size bytes hashing
// to dg, else it returns an error wrapping cas.ErrDigestMismatch and keeps
// nothing. The content goes to a file in tmp/, hashed as it is written,
// flushed, and renamed into place only once it checks out. A blob the tier
// already holds is not read again: Put returns nil at once, possibly
// without reading r. A blob larger than MaxSize is refused.
func (d *Disk) Put(ctx context.Context, dg cas.Digest, size int64, r io.Reader) error {
	h, err := checkDigest(dg)
	if err != nil {
		return fmt.Errorf("disk put: %w", err)
	}
	if size < 0 {
		return fmt.Errorf("disk put %s: negative size %d", dg, size)
	}
	if d.max > 0 && size > d.max {
		return fmt.Errorf("disk put %s: %d bytes is more than the cache's maxSize (%d bytes)", dg, size, d.max)
	}
	if d.present(h) {
		return nil
	}
	f, err := os.CreateTemp(d.tmpDir, h[:16]+"-*.part")
	if err != nil {
		return fmt.Errorf("disk put %s: %w", dg, err)
	}
	tmp := f.Name()
	keep := false
	defer func() {
		if !keep {
			f.Close()
			os.Remove(tmp)
		}
	}()
	v := cas.NewVerifier(dg, size)
	if err := copyVerified(ctx, f, v, r, size); err != nil {
		return fmt.Errorf("disk put %s: %w", dg, err)
	}
	if err := v.Check(); err != nil {
		return fmt.Errorf("disk put: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("disk put %s: flush: %w", dg, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("disk put %s: %w", dg, err)
	}
	keep = true // commitTemp owns tmp from here
	return d.commitTemp(ctx, dg, h, size, tmp)
}

// Adopt stores as blob dg the file at path, whose size bytes the caller has
// already verified against dg, by hard-linking it into place instead of
// copying and hashing it again: the cache's verified spool files become
// blobs this way. Where a link cannot be made (another file system, no
// hard links) it falls back to Put, which reads and checks the file.
func (d *Disk) Adopt(ctx context.Context, dg cas.Digest, size int64, path string) error {
	h, err := checkDigest(dg)
	if err != nil {
		return fmt.Errorf("disk adopt: %w", err)
	}
	if d.max > 0 && size > d.max {
		return fmt.Errorf("disk adopt %s: %d bytes is more than the cache's maxSize (%d bytes)", dg, size, d.max)
	}
	if d.present(h) {
		return nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("disk adopt %s: %w", dg, err)
	}
	if fi.Size() != size {
		return fmt.Errorf("disk adopt %s: %w: the file holds %d bytes, want %d", dg, cas.ErrDigestMismatch, fi.Size(), size)
	}
	tmp := filepath.Join(d.tmpDir, fmt.Sprintf("%s-%d.link", h[:16], time.Now().UnixNano()))
	if err := os.Link(path, tmp); err != nil {
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("disk adopt %s: %w", dg, err)
		}
		defer f.Close()
		return d.Put(ctx, dg, size, f)
	}
	f, err := os.OpenFile(tmp, os.O_RDWR, 0) // Windows flushes only a writable handle
	if err == nil {
		err = f.Sync()
		f.Close()
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("disk adopt %s: flush: %w", dg, err)
	}
	return d.commitTemp(ctx, dg, h, size, tmp)
}

// commitTemp renames tmp, a flushed file holding blob dg's verified
// content, into place and indexes it; on failure it removes tmp.
func (d *Disk) commitTemp(ctx context.Context, dg cas.Digest, h string, size int64, tmp string) error {
	keep := false
	defer func() {
		if !keep {
			os.Remove(tmp)
		}
	}()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("disk put %s: %w", dg, err)
	}
	final := d.blobPath(h)
	shard := filepath.Dir(final)
	if err := os.MkdirAll(shard, 0o755); err != nil {
		return fmt.Errorf("disk put %s: %w", dg, err)
	}

	d.mu.Lock()
	err := os.Rename(tmp, final)
	if err != nil && d.idx[h] != nil {
		// Windows refuses to replace a file some process holds open
		// without sharing delete access. Another Put stored the same
		// content meanwhile: that is success.
		if fi, serr := os.Stat(final); serr == nil && fi.Size() == size {
			os.Remove(tmp)
			err = nil
		}
	}
	if err != nil {
		d.mu.Unlock()
		return fmt.Errorf("disk put %s: commit: %w", dg, err)
	}
	keep = true
	if d.idx[h] == nil {
		d.idx[h] = &entry{size: size, atime: d.tickLocked()}
		d.total += size
		d.dirty[h] = true
	}
	if d.max > 0 && d.total+d.reserved > d.max {
		d.evictLocked(int64(float64(d.max)*lowWater)-d.reserved, h)
	}
	d.mu.Unlock()

	if err := syncDir(shard); err != nil {
		d.log.Warn("cannot flush the cache folder after a rename", "dir", shard, "err", err)
	}
	// The content was hashed on its way in: the file is verified as it is.
	_ = d.MarkVerified(dg)
	return nil
}

// ErrNoRoom is Reserve's refusal: the bytes do not fit in MaxSize.
var ErrNoRoom = errors.New("no room within the cache's maxSize")

// Reserve sets n bytes of MaxSize aside for a blob on its way in — the
// cache's spool, which lives on this tier's file system — evicting least
// recently used blobs to make room, so that blobs and spool together stay
// within MaxSize. It fails with ErrNoRoom when n cannot fit beside the
// blobs being read and the other reservations. release gives the bytes
// back (once; later calls do nothing): call it when the blob is committed
// or dropped.
func (d *Disk) Reserve(n int64) (release func(), err error) {
	if n < 0 {
		return nil, fmt.Errorf("disk reserve: negative size %d", n)
	}
	if d.max == 0 {
		return func() {}, nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if need := reserveNeed(d.max, d.total, d.reserved, n); need > 0 {
		if n > d.max-d.reserved {
			return nil, fmt.Errorf("%w: %d bytes, with %d of %d already reserved", ErrNoRoom, n, d.reserved, d.max)
		}
		d.evictLocked(d.total-need, "")
		if need = reserveNeed(d.max, d.total, d.reserved, n); need > 0 {
			return nil, fmt.Errorf("%w: %d bytes; %d held by blobs being read and %d reserved, of %d", ErrNoRoom, n, d.total, d.reserved, d.max)
		}
	}
	d.reserved += n
	var once sync.Once
	return func() {
		once.Do(func() {
			d.mu.Lock()
			d.reserved -= n
			d.mu.Unlock()
		})
	}, nil
}

// reserveNeed is how many bytes of blobs must go for n more to be
// reserved within max (0 or less: none).
func reserveNeed(max, total, reserved, n int64) int64 {
	return total + reserved + n - max
}

// present reports whether the tier holds h, checking that its file is
// still there, and counts the check as an access.
func (d *Disk) present(h string) bool {
	d.mu.Lock()
	e := d.idx[h]
	d.mu.Unlock()
	if e == nil {
		return false
	}
	fi, err := os.Stat(d.blobPath(h))
	if err != nil || fi.Size() != e.size {
		d.log.Warn("blob missing or resized in the cache folder; storing it again", "digest", "sha256:"+h)
		d.removeCorrupt(h, e)
		return false
	}
	d.mu.Lock()
	e.atime = d.tickLocked()
	d.dirty[h] = true
	d.mu.Unlock()
	return true
}

// copyVerified copies r to w and to v, failing as soon as r yields more
// than size bytes, and checking ctx between reads.
func copyVerified(ctx context.Context, w io.Writer, v *cas.Verifier, r io.Reader, size int64) error {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		m, rerr := r.Read(buf)
		if m > 0 {
			n += int64(m)
			if n > size {
				return fmt.Errorf("%w: content is longer than the %d bytes announced", cas.ErrDigestMismatch, size)
			}
			v.Write(buf[:m])
			if _, err := w.Write(buf[:m]); err != nil {
				return fmt.Errorf("write: %w", err)
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return fmt.Errorf("read content: %w", rerr)
		}
	}
}

// Delete removes the blob; a missing blob is not an error. The registry
// calls it when content it streams from this tier fails its digest. A reader
// that has the blob open keeps reading the removed file.
func (d *Disk) Delete(ctx context.Context, dg cas.Digest) error {
	h, err := checkDigest(dg)
	if err != nil {
		return fmt.Errorf("disk delete: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.dropLocked(h)
	if err := os.Remove(d.blobPath(h)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("disk delete %s: %w", dg, err)
	}
	return nil
}

// GetRef returns the value stored under name, or an error wrapping
// cas.ErrNotFound.
func (d *Disk) GetRef(ctx context.Context, name string) ([]byte, error) {
	if err := cas.CheckRefName(name); err != nil {
		return nil, fmt.Errorf("disk get ref: %w", err)
	}
	f, err := openShared(filepath.Join(d.refDir, refFileName(name)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("disk get ref %q: %w", name, cas.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("disk get ref %q: %w", name, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, cas.MaxRefSize+1))
	if err != nil {
		return nil, fmt.Errorf("disk get ref %q: %w", name, err)
	}
	if len(b) > cas.MaxRefSize {
		return nil, fmt.Errorf("disk get ref %q: %w", name, cas.ErrRefTooLarge)
	}
	return b, nil
}

// PutRef stores value (at most cas.MaxRefSize bytes) under name, replacing
// what was there, atomically and durably.
func (d *Disk) PutRef(ctx context.Context, name string, value []byte) error {
	if err := cas.CheckRefName(name); err != nil {
		return fmt.Errorf("disk put ref: %w", err)
	}
	if len(value) > cas.MaxRefSize {
		return fmt.Errorf("disk put ref %q: %d bytes: %w", name, len(value), cas.ErrRefTooLarge)
	}
	f, err := os.CreateTemp(d.tmpDir, "ref-*.part")
	if err != nil {
		return fmt.Errorf("disk put ref %q: %w", name, err)
	}
	tmp := f.Name()
	if _, err := f.Write(value); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("disk put ref %q: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("disk put ref %q: %w", name, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("disk put ref %q: %w", name, err)
	}
	if err := os.Rename(tmp, filepath.Join(d.refDir, refFileName(name))); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("disk put ref %q: %w", name, err)
	}
	if err := syncDir(d.refDir); err != nil {
		d.log.Warn("cannot flush the refs folder after a rename", "err", err)
	}
	return nil
}
