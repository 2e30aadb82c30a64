package archive

import (
	"archive/zip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
)

// zipSource reads the entries of a zip file in central-directory order.
type zipSource struct {
	files []*zip.File
	i     int
}

func newZipSource(r io.ReaderAt, size int64, lim Limits) (*zipSource, error) {
	zr, err := zip.NewReader(r, size)
	if err != nil && !errors.Is(err, zip.ErrInsecurePath) {
		// ErrInsecurePath comes with a valid reader; names are checked,
		// and refused with their reason, entry by entry.
		return nil, fmt.Errorf("read zip: %w", readErr(err))
	}
	if len(zr.File) > lim.MaxEntries {
		return nil, fmt.Errorf("%w: %d entries, over the limit of %d", ErrTooLarge, len(zr.File), lim.MaxEntries)
	}
	return &zipSource{files: zr.File}, nil
}

func (s *zipSource) next() (entry, error) {
	if s.i >= len(s.files) {
		return entry{}, io.EOF
	}
	f := s.files[s.i]
	s.i++
	m := f.Mode()
	e := entry{name: f.Name, perm: m}
	switch {
	case m&fs.ModeSymlink != 0:
		target, err := readLinkTarget(f)
		if err != nil {
			return entry{}, err
		}
		e.kind, e.linkname = kindSymlink, target
	case m.IsDir() || strings.HasSuffix(f.Name, "/") || strings.HasSuffix(f.Name, `\`):
		e.kind = kindDir
	case m&(fs.ModeDevice|fs.ModeCharDevice) != 0:
		return entry{}, unsafeEntry(f.Name, "device file")
	case m&fs.ModeNamedPipe != 0:
		return entry{}, unsafeEntry(f.Name, "named pipe (fifo)")
	case m&fs.ModeSocket != 0:
		return entry{}, unsafeEntry(f.Name, "socket")
	case !m.IsRegular():
		return entry{}, unsafeEntry(f.Name, "unsupported file type %v", m.Type())
	default:
		if f.UncompressedSize64 > 1<<62 {
			return entry{}, tooLarge(f.Name, "declares %d bytes", f.UncompressedSize64)
		}
		e.kind, e.size = kindFile, int64(f.UncompressedSize64)
		e.open = func() (io.ReadCloser, error) {
			rc, err := f.Open()
			if err != nil {
				return nil, readErr(err)
			}
			return rc, nil
		}
	}
	return e, nil
}

// readLinkTarget reads a symbolic link's target, stored as the content of
// its zip entry.
func readLinkTarget(f *zip.File) (string, error) {
	rc, err := f.Open()
	if err != nil {
		return "", fmt.Errorf("entry %q: %w", f.Name, readErr(err))
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxLinkTarget+1))
	if err != nil {
		return "", fmt.Errorf("entry %q: %w", f.Name, readErr(err))
	}
	if len(b) > maxLinkTarget {
		return "", unsafeEntry(f.Name, "symbolic link target longer than %d bytes", maxLinkTarget)
	}
	return string(b), nil
}
