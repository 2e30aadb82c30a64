package archive

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
)

// maxHeaderBytes bounds the tar stream read to reach one entry, beyond
// the content of the entry before it: the entry's header block and the
// records archive/tar folds into it (PAX extended headers, GNU long names
// and link names: up to 1 MiB each there, and any number of them in a row,
// which no count of entries sees). A release package needs a few hundred
// bytes per entry.
const maxHeaderBytes = 64 << 10

// tarSource reads a tar stream, gzip-compressed or not.
//
// The rule for the records of a tar stream that are not files: every
// header archive/tar hands back is an entry and counts towards
// Limits.MaxEntries, a PAX global header ('g') included — archive/tar
// returns it as a record of its own and applies it to nothing, and
// neither does Extract (it carries nothing a release package needs: git
// archive writes the commit id in one) — and the bytes read to reach each
// entry are bounded by maxHeaderBytes.
type tarSource struct {
	tr   *tar.Reader
	in   *meteredReader // the tar stream, after gzip
	gz   *gzip.Reader   // nil for a plain tar
	lim  Limits
	done bool
	last string // the name of the last entry, for errors
}

func newTarSource(r io.Reader, gzipped bool, lim Limits) (*tarSource, error) {
	s := &tarSource{lim: lim}
	if gzipped {
		gz, err := gzip.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("%w: gzip header: %w", ErrCorrupt, err)
		}
		s.gz = gz
		r = gz
	}
	s.in = &meteredReader{r: r, limit: maxHeaderBytes}
	s.tr = tar.NewReader(s.in)
	return s, nil
}

// meteredReader counts what is read through it and fails once a read would
// pass limit.
type meteredReader struct {
	r        io.Reader
	n, limit int64
}

// errHeadersTooLarge is what a read past the limit fails with.
var errHeadersTooLarge = fmt.Errorf("%w: over %d bytes of tar headers (PAX records, GNU long names) before one entry", ErrTooLarge, maxHeaderBytes)

// Read implements io.Reader.
func (m *meteredReader) Read(p []byte) (int, error) {
	if m.n >= m.limit {
		return 0, errHeadersTooLarge
	}
	if left := m.limit - m.n; int64(len(p)) > left {
		p = p[:left]
	}
	n, err := m.r.Read(p)
	m.n += int64(n)
	return n, err
}

// contentBlocks is how many bytes of the tar stream hdr's content takes:
// its size rounded up to the 512-byte block for the types whose content
// archive/tar reads, 0 for the others.
func contentBlocks(hdr *tar.Header) int64 {
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeGNUSparse:
		return (max(hdr.Size, 0) + 511) &^ 511
	}
	return 0
}

func (s *tarSource) next() (entry, error) {
	if s.done {
		return entry{}, io.EOF
	}
	hdr, err := s.tr.Next()
	if errors.Is(err, io.EOF) {
		s.done = true
		return entry{}, s.finish()
	}
	if errors.Is(err, errHeadersTooLarge) {
		return entry{}, fmt.Errorf("read tar after entry %q: %w", s.last, err)
	}
	if err != nil && !errors.Is(err, tar.ErrInsecurePath) {
		// ErrInsecurePath comes with a valid header; the name is
		// checked, and refused with its reason, like any other.
		return entry{}, fmt.Errorf("read tar: %w", readErr(err))
	}
	// The next header may come after this entry's content and at
	// most maxHeaderBytes more.
	s.in.limit = s.in.n + contentBlocks(hdr) + maxHeaderBytes
	s.last = hdr.Name
	e := entry{name: hdr.Name, perm: hdr.FileInfo().Mode(), size: hdr.Size, linkname: hdr.Linkname}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeGNUSparse:
		e.kind = kindFile
		tr := s.tr
		e.open = func() (io.ReadCloser, error) { return io.NopCloser(tr), nil }
	case tar.TypeDir:
		e.kind = kindDir
	case tar.TypeSymlink:
		e.kind = kindSymlink
	case tar.TypeLink:
		e.kind = kindHardlink
	case tar.TypeXGlobalHeader:
		e.kind = kindGlobal // counted as an entry; see tarSource
	case tar.TypeChar, tar.TypeBlock:
		return entry{}, unsafeEntry(hdr.Name, "device file")
	case tar.TypeFifo:
		return entry{}, unsafeEntry(hdr.Name, "named pipe (fifo)")
	default:
		return entry{}, unsafeEntry(hdr.Name, "unsupported tar entry type %q", hdr.Typeflag)
	}
	return e, nil
}

// finish reads the compressed stream to its end, so its checksum and
// length are checked: the tar end marker can come before a corrupt tail.
// What follows the marker is bounded like the content of an entry.
func (s *tarSource) finish() error {
	if s.gz == nil {
		return io.EOF
	}
	n, err := io.Copy(io.Discard, io.LimitReader(s.gz, s.lim.MaxEntryBytes+1))
	if err != nil {
		return fmt.Errorf("read gzip: %w", readErr(err))
	}
	if n > s.lim.MaxEntryBytes {
		return fmt.Errorf("%w: more than %d bytes after the end of the tar", ErrTooLarge, s.lim.MaxEntryBytes)
	}
	return io.EOF
}
