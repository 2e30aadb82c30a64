package archive

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
)

// tarSource reads a tar stream, gzip-compressed or not.
type tarSource struct {
	tr   *tar.Reader
	gz   *gzip.Reader // nil for a plain tar
	lim  Limits
	done bool
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
	s.tr = tar.NewReader(r)
	return s, nil
}

func (s *tarSource) next() (entry, error) {
	if s.done {
		return entry{}, io.EOF
	}
	for {
		hdr, err := s.tr.Next()
		if errors.Is(err, io.EOF) {
			s.done = true
			return entry{}, s.finish()
		}
		if err != nil && !errors.Is(err, tar.ErrInsecurePath) {
			// ErrInsecurePath comes with a valid header; the name is
			// checked, and refused with its reason, like any other.
			return entry{}, fmt.Errorf("read tar: %w", readErr(err))
		}
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
			continue // PAX defaults for later entries; archive/tar applies them
		case tar.TypeChar, tar.TypeBlock:
			return entry{}, unsafeEntry(hdr.Name, "device file")
		case tar.TypeFifo:
			return entry{}, unsafeEntry(hdr.Name, "named pipe (fifo)")
		default:
			return entry{}, unsafeEntry(hdr.Name, "unsupported tar entry type %q", hdr.Typeflag)
		}
		return e, nil
	}
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
