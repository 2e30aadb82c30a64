package disk

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/berthhq/berth/imagecache/cas"
)

// record is one blob's index record in agent.db.
type record struct {
	Size  int64 `json:"size"`
	ATime int64 `json:"atime"` // last access, unix nanoseconds
}

// load builds the index: the records in agent.db (when there is one),
// reconciled with the files under blobs/, which win. A file without a
// record, or whose size differs from its record, gets its modification
// time as last access; a record without a file is dropped. Both are
// written at the next flush.
func (d *Disk) load(ctx context.Context) error {
	stored := map[string]record{}
	if d.db != nil {
		err := d.db.Update(ctx, func(tx *bolt.Tx) error {
			b := tx.Bucket([]byte(IndexBucket))
			if b == nil {
				return nil
			}
			return b.ForEach(func(k, v []byte) error {
				var r record
				if isHex64(string(k)) && json.Unmarshal(v, &r) == nil {
					stored[string(k)] = r
				} else {
					d.dirty[string(k)] = true // not ours to keep: deleted at the next flush
				}
				return nil
			})
		})
		if err != nil {
			d.log.Warn("cannot read the cache index; rebuilding it from the folder", "err", err)
			clear(stored)
		}
	}
	shards, err := os.ReadDir(d.blobDir)
	if err != nil {
		return fmt.Errorf("disk cache: %w", err)
	}
	var added, resized int
	for _, s := range shards {
		if !s.IsDir() || len(s.Name()) != 2 {
			d.log.Warn("unexpected entry in the cache folder", "name", s.Name())
			continue
		}
		files, err := os.ReadDir(filepath.Join(d.blobDir, s.Name()))
		if err != nil {
			return fmt.Errorf("disk cache: %w", err)
		}
		for _, f := range files {
			h := f.Name()
			if !f.Type().IsRegular() || !isHex64(h) || h[:2] != s.Name() {
				d.log.Warn("unexpected entry in the cache folder", "name", filepath.Join(s.Name(), h))
				continue
			}
			fi, err := f.Info()
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					continue
				}
				return fmt.Errorf("disk cache: %w", err)
			}
			e := &entry{size: fi.Size(), atime: fi.ModTime().UnixNano()}
			if r, ok := stored[h]; ok && r.Size == e.size {
				e.atime = r.ATime
			} else {
				if ok {
					resized++
				} else {
					added++
				}
				d.dirty[h] = true
			}
			d.idx[h] = e
			d.total += e.size
			d.clock = max(d.clock, e.atime)
		}
	}
	var dropped int
	for h := range stored {
		if d.idx[h] == nil {
			d.dirty[h] = true
			dropped++
		}
	}
	d.log.Info("cache index loaded", "blobs", len(d.idx), "bytes", d.total,
		"added", added, "resized", resized, "dropped", dropped)
	return nil
}

// flush writes the index records changed since the last flush to agent.db
// in one transaction; on failure they stay pending.
func (d *Disk) flush(ctx context.Context) error {
	d.flushMu.Lock()
	defer d.flushMu.Unlock()
	d.mu.Lock()
	if len(d.dirty) == 0 {
		d.mu.Unlock()
		return nil
	}
	batch := make(map[string]*record, len(d.dirty)) // nil: delete
	for h := range d.dirty {
		if e := d.idx[h]; e != nil {
			batch[h] = &record{Size: e.size, ATime: e.atime}
		} else {
			batch[h] = nil
		}
	}
	clear(d.dirty)
	d.mu.Unlock()
	if d.db == nil {
		return nil
	}
	err := d.db.Update(ctx, func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte(IndexBucket))
		if err != nil {
			return err
		}
		for h, r := range batch {
			if r == nil {
				if err := b.Delete([]byte(h)); err != nil {
					return err
				}
				continue
			}
			raw, err := json.Marshal(r)
			if err != nil {
				return err
			}
			if err := b.Put([]byte(h), raw); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		d.mu.Lock()
		for h := range batch {
			d.dirty[h] = true
		}
		d.mu.Unlock()
		return fmt.Errorf("write cache index: %w", err)
	}
	return nil
}

// Flush writes pending index changes to agent.db now, rather than at the
// next tick.
func (d *Disk) Flush(ctx context.Context) error { return d.flush(ctx) }

// evictLocked removes least recently used blobs, never one with open
// readers nor keep, until the total is at most target. It returns how many
// blobs and bytes it removed.
func (d *Disk) evictLocked(target int64, keep string) (int, int64) {
	if d.total <= target {
		return 0, 0
	}
	type cand struct {
		h     string
		atime int64
	}
	cands := make([]cand, 0, len(d.idx))
	for h, e := range d.idx {
		if e.readers == 0 && h != keep {
			cands = append(cands, cand{h, e.atime})
		}
	}
	slices.SortFunc(cands, func(a, b cand) int { return cmp.Compare(a.atime, b.atime) })
	var n int
	var freed int64
	for _, c := range cands {
		if d.total <= target {
			break
		}
		if err := os.Remove(d.blobPath(c.h)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			d.log.Warn("cannot evict a blob", "digest", "sha256:"+c.h, "err", err)
			continue
		}
		size := d.idx[c.h].size
		d.dropLocked(c.h)
		n++
		freed += size
		d.log.Debug("evicted blob", "digest", "sha256:"+c.h, "size", size)
	}
	d.evictions += int64(n)
	d.evictedBytes += freed
	if n > 0 {
		d.log.Info("evicted least recently used blobs", "count", n, "bytes", freed, "total", d.total, "target", target)
	}
	if d.total > target {
		d.log.Warn("cache stays above its target: the remaining blobs are being read", "total", d.total, "target", target)
	}
	return n, freed
}

// Stats are the tier's figures.
type Stats struct {
	// Blobs and Bytes count what the tier holds.
	Blobs int   `json:"blobs"`
	Bytes int64 `json:"bytes"`
	// MaxSize is the configured limit, 0 for none.
	MaxSize int64 `json:"maxSize"`
	// Evictions and EvictedBytes count blobs removed to stay under MaxSize
	// (and by Prune) since New.
	Evictions    int64 `json:"evictions"`
	EvictedBytes int64 `json:"evictedBytes"`
	// Corrupt counts blobs found damaged and removed (by Verify, or by Open
	// and Put noticing a file of the wrong size) since New.
	Corrupt int64 `json:"corrupt"`
}

// Stats returns the tier's figures.
func (d *Disk) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return Stats{
		Blobs:        len(d.idx),
		Bytes:        d.total,
		MaxSize:      d.max,
		Evictions:    d.evictions,
		EvictedBytes: d.evictedBytes,
		Corrupt:      d.corrupt,
	}
}

// PruneResult says what Prune removed.
type PruneResult struct {
	// Blobs and Bytes count what was removed.
	Blobs int   `json:"blobs"`
	Bytes int64 `json:"bytes"`
}

// Prune evicts least recently used blobs until the tier holds at most
// targetBytes (0 empties it), skipping blobs being read.
func (d *Disk) Prune(ctx context.Context, targetBytes int64) (PruneResult, error) {
	if targetBytes < 0 {
		return PruneResult{}, fmt.Errorf("disk prune: negative target %d", targetBytes)
	}
	d.mu.Lock()
	n, freed := d.evictLocked(targetBytes, "")
	d.mu.Unlock()
	return PruneResult{Blobs: n, Bytes: freed}, nil
}

// VerifyProgress reports how far Verify is.
type VerifyProgress struct {
	// Checked of Total blobs have been hashed; Bytes of TotalBytes read.
	Checked, Total    int
	Bytes, TotalBytes int64
	// Digest is the blob just checked; Corrupt says whether it was removed.
	Digest  cas.Digest
	Corrupt bool
}

// Verify hashes every blob again and removes those whose content or size
// no longer matches their digest, returning their digests. progress, when
// not nil, is called after each blob. It stops early when ctx ends.
func (d *Disk) Verify(ctx context.Context, progress func(VerifyProgress)) ([]cas.Digest, error) {
	type item struct {
		h string
		e *entry
	}
	d.mu.Lock()
	items := make([]item, 0, len(d.idx))
	var totalBytes int64
	for h, e := range d.idx {
		items = append(items, item{h, e})
		totalBytes += e.size
	}
	d.mu.Unlock()
	slices.SortFunc(items, func(a, b item) int { return cmp.Compare(a.h, b.h) })
	p := VerifyProgress{Total: len(items), TotalBytes: totalBytes}
	var removed []cas.Digest
	for _, it := range items {
		if err := ctx.Err(); err != nil {
			return removed, fmt.Errorf("disk verify: %w", err)
		}
		dg := cas.Digest("sha256:" + it.h)
		ok, err := d.check(ctx, it.h, it.e.size)
		if err != nil {
			return removed, fmt.Errorf("disk verify %s: %w", dg, err)
		}
		p.Checked++
		p.Bytes += it.e.size
		p.Digest, p.Corrupt = dg, false
		if !ok && d.removeCorrupt(it.h, it.e) {
			d.log.Warn("removed a corrupt blob", "digest", dg)
			removed = append(removed, dg)
			p.Corrupt = true
		}
		if progress != nil {
			progress(p)
		}
	}
	return removed, nil
}

// check reports whether h's file holds size bytes hashing to h. A missing
// file counts as corrupt; other read errors are returned.
func (d *Disk) check(ctx context.Context, h string, size int64) (bool, error) {
	f, err := openShared(d.blobPath(h))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	sum := sha256.New()
	n, err := io.CopyBuffer(sum, ctxReader{ctx, f}, *bp)
	if err != nil {
		return false, err
	}
	return n == size && hex.EncodeToString(sum.Sum(nil)) == h, nil
}

// ctxReader stops reading once ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

// Read implements io.Reader.
func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
