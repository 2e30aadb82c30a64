// Package archive unpacks engine release packages — Docker's and containerd's
// static release archives, a zip on Windows and a tar.gz on Linux — into a
// new folder, all or nothing.
//
// Extract never leaves a half-installed folder at its destination: it unpacks
// into a hidden sibling folder, syncs it to disk and renames it into place.
// It refuses every entry that could write outside the destination or that has
// no business in a release package (traversal, absolute or drive-letter
// paths, links out, device files, duplicates) and bounds what it writes.
package archive

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Sentinel errors, for errors.Is.
var (
	// ErrUnsafeEntry marks an entry that was refused: it could write outside
	// the destination, or it is of a kind a release package never holds.
	ErrUnsafeEntry = errors.New("unsafe archive entry")
	// ErrTooLarge marks an archive that is over one of its Limits.
	ErrTooLarge = errors.New("archive over its size limits")
	// ErrCorrupt marks a truncated or malformed archive.
	ErrCorrupt = errors.New("corrupt archive")
	// ErrUnknownFormat marks a file that is neither a gzip-compressed tar,
	// a plain tar nor a zip archive.
	ErrUnknownFormat = errors.New("unknown archive format")
)

// Default limits, used for any Limits field left at zero.
const (
	DefaultMaxEntryBytes int64 = 1 << 30 // 1 GiB
	DefaultMaxTotalBytes int64 = 4 << 30 // 4 GiB
	DefaultMaxEntries          = 10000
)

// Limits bound what one archive may write. A zero field takes its default.
type Limits struct {
	// MaxEntryBytes bounds the size of a single file.
	MaxEntryBytes int64
	// MaxTotalBytes bounds the sum of the sizes of all files.
	MaxTotalBytes int64
	// MaxEntries bounds the number of entries of every kind.
	MaxEntries int
}

// DefaultLimits returns the limits Extract uses for a zero Limits.
func DefaultLimits() Limits {
	return Limits{
		MaxEntryBytes: DefaultMaxEntryBytes,
		MaxTotalBytes: DefaultMaxTotalBytes,
		MaxEntries:    DefaultMaxEntries,
	}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxEntryBytes <= 0 {
		l.MaxEntryBytes = d.MaxEntryBytes
	}
	if l.MaxTotalBytes <= 0 {
		l.MaxTotalBytes = d.MaxTotalBytes
	}
	if l.MaxEntries <= 0 {
		l.MaxEntries = d.MaxEntries
	}
	return l
}

// EntryError says which entry of an archive was refused and why. It wraps
// one of the sentinel errors (ErrUnsafeEntry, ErrTooLarge, ErrCorrupt).
type EntryError struct {
	// Entry is the entry's name as the archive spells it.
	Entry string
	// Reason says what is wrong with it.
	Reason string
	// Err is the sentinel the refusal belongs to.
	Err error
}

// Error implements error.
func (e *EntryError) Error() string {
	return fmt.Sprintf("entry %q: %s (%v)", e.Entry, e.Reason, e.Err)
}

// Unwrap returns the sentinel.
func (e *EntryError) Unwrap() error { return e.Err }

func unsafeEntry(name, format string, args ...any) error {
	return &EntryError{Entry: name, Reason: fmt.Sprintf(format, args...), Err: ErrUnsafeEntry}
}

func tooLarge(name, format string, args ...any) error {
	return &EntryError{Entry: name, Reason: fmt.Sprintf(format, args...), Err: ErrTooLarge}
}

// partialMarker is part of the name of the hidden sibling folder an archive
// is unpacked into before it is renamed into place.
const partialMarker = ".partial-"

// Extract unpacks the archive at src into dest. The format is detected from
// the file's first bytes, not its name: a gzip-compressed tar, a plain tar or
// a zip. dest must not exist yet; its parent is created if needed.
//
// The archive is unpacked into a hidden sibling of dest, synced to disk and
// renamed to dest, so dest either does not exist or holds the whole archive.
// On any error the sibling is removed and dest is left absent. The layout of
// the archive is kept as is (Docker's archives hold a top-level docker/
// folder); file permission bits are kept except setuid, setgid, sticky and
// group/other write, and the owner can always read and write. Directories are
// created 0755.
//
// Entries that could escape dest or that a release package never holds are
// refused with an *EntryError wrapping ErrUnsafeEntry; an archive over lim is
// refused with ErrTooLarge; a truncated or malformed one with ErrCorrupt.
func Extract(ctx context.Context, src, dest string, lim Limits) (err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("extract %s into %s: %w", src, dest, err)
		}
	}()
	lim = lim.withDefaults()
	if err := ctx.Err(); err != nil {
		return err
	}
	dest = filepath.Clean(dest)
	if _, err := os.Lstat(dest); err == nil {
		return fmt.Errorf("destination: %w", fs.ErrExist)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("destination: %w", err)
	}

	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	arc, err := openSource(f, lim)
	if err != nil {
		return err
	}

	parent := filepath.Dir(dest)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("create parent folder: %w", err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dest)+partialMarker)
	if err != nil {
		return fmt.Errorf("create temporary folder: %w", err)
	}
	defer func() {
		if err != nil {
			if rerr := os.RemoveAll(tmp); rerr != nil {
				err = errors.Join(err, fmt.Errorf("remove temporary folder: %w", rerr))
			}
		}
	}()

	if err := unpack(ctx, arc, tmp, lim); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("set folder mode: %w", err)
	}
	if err := syncTree(tmp); err != nil {
		return fmt.Errorf("sync to disk: %w", err)
	}
	if err := renameNoReplace(tmp, dest); err != nil {
		return fmt.Errorf("move into place: %w", err)
	}
	if err := syncParent(parent); err != nil {
		// dest is in place and complete; only its durability across a
		// power loss is in doubt. Say so rather than undo the rename.
		return fmt.Errorf("sync parent folder after rename: %w", err)
	}
	return nil
}

// CleanPartials removes the hidden sibling folders of dest that an Extract
// interrupted by a crash or a power loss left behind. It is safe to call
// when there are none; it must not run while an Extract into dest runs.
func CleanPartials(dest string) error {
	dest = filepath.Clean(dest)
	pattern := filepath.Join(filepath.Dir(dest), "."+filepath.Base(dest)+partialMarker+"*")
	matches, err := filepath.Glob(pattern)
	if err != nil {
		return fmt.Errorf("clean partial extractions of %s: %w", dest, err)
	}
	var errs []error
	for _, m := range matches {
		if err := os.RemoveAll(m); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("clean partial extractions of %s: %w", dest, err)
	}
	return nil
}

// openSource detects the format from the first bytes of f.
func openSource(f *os.File, lim Limits) (source, error) {
	var head [512]byte
	n, err := io.ReadFull(f, head[:])
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read archive header: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("rewind archive: %w", err)
	}
	h := head[:n]
	switch {
	case bytes.HasPrefix(h, []byte{0x1f, 0x8b}):
		return newTarSource(bufio.NewReader(f), true, lim)
	case bytes.HasPrefix(h, []byte("PK\x03\x04")), bytes.HasPrefix(h, []byte("PK\x05\x06")):
		st, err := f.Stat()
		if err != nil {
			return nil, fmt.Errorf("stat archive: %w", err)
		}
		return newZipSource(f, st.Size(), lim)
	case len(h) >= 263 && string(h[257:262]) == "ustar":
		return newTarSource(bufio.NewReader(f), false, lim)
	default:
		return nil, fmt.Errorf("%w: not a tar.gz, tar or zip file", ErrUnknownFormat)
	}
}

// fsync is false only in the fuzz test, where thousands of runs a minute
// would wait on the disk; it changes nothing of what is written where.
var fsync = true

// syncParent flushes the entry of a renamed folder.
func syncParent(dir string) error {
	if !fsync {
		return nil
	}
	return syncDir(dir)
}

// syncTree flushes every file and folder under dir to disk. Files were
// synced as they were written; this syncs the folders that name them.
func syncTree(dir string) error {
	if !fsync {
		return nil
	}
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return syncDir(p)
		}
		return nil
	})
}
