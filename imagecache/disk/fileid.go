package disk

import (
	"fmt"
	"os"

	"github.com/berthhq/berth/imagecache/cas"
)

// fileID identifies a file's content as far as the file system can tell
// without reading it: any write through the file system changes it (on
// Linux the change time cannot be set back by a program).
type fileID struct {
	size, mtime, ctime int64
	ino                uint64
}

// MarkVerified records that the blob's file, as it is now, was read whole
// and hashed to its digest. Until the file changes, Open hands readers the
// file to serve as it is (TrustedFile), and the cache need not hash it
// again on every hit; `cache verify` still re-reads everything.
func (d *Disk) MarkVerified(dg cas.Digest) error {
	h, err := checkDigest(dg)
	if err != nil {
		return err
	}
	fi, err := os.Stat(d.blobPath(h))
	if err != nil {
		return fmt.Errorf("disk mark %s: %w", dg, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if e := d.idx[h]; e != nil && fi.Size() == e.size {
		e.verified = idOf(fi)
	}
	return nil
}

// TrustedFile returns the open file when it is unchanged since its content
// was verified, for serving it as it is (sendfile); nil otherwise.
func (r *blobReader) TrustedFile() *os.File {
	if r.trusted {
		return r.f
	}
	return nil
}

// markTrusted notes at Open whether f is still the file that was verified.
func (d *Disk) markTrusted(r *blobReader) {
	fi, err := r.f.Stat()
	if err != nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	r.trusted = r.e.verified != (fileID{}) && r.e.verified == idOf(fi)
}
