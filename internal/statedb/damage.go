package statedb

import (
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	// ErrDamaged marks a file bbolt cannot read: it panicked on it, faulted
	// on its pages, refused its meta pages, or found it inconsistent.
	ErrDamaged = errors.New("damaged")
	// ErrUnusable marks a path the agent does not replace: a directory or
	// another non-file in the place of agent.db, or a file it may not write.
	// Its error says what to do; the agent keeps running meanwhile.
	ErrUnusable = errors.New("unusable")
)

// panicError is a panic, or a memory fault on a mapped page, turned into an
// error.
type panicError struct{ v any }

func (p *panicError) Error() string { return fmt.Sprintf("panic: %v", p.v) }

// protect runs fn, turning a panic into a *panicError. Faults on bbolt's
// memory-mapped pages (a page number past the end of a truncated file)
// would kill the process; SetPanicOnFault makes them panics of this
// goroutine, which is where bbolt reads pages for fn.
func protect(fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if v := recover(); v != nil {
			err = &panicError{v}
		}
	}()
	return fn()
}

// openProtected is bolt.Open with its panics and faults recovered into
// errors wrapping ErrDamaged, as are bbolt's own refusals of a file that
// is not a sound database. The file a panicking Open leaves open is closed
// here (which releases its lock); its memory mapping stays until the
// process ends.
func openProtected(path string, o *bolt.Options) (*bolt.DB, error) {
	var f *os.File
	o.OpenFile = func(name string, flag int, perm os.FileMode) (*os.File, error) {
		var err error
		f, err = os.OpenFile(name, flag, perm)
		return f, err
	}
	var db *bolt.DB
	err := protect(func() error {
		var err error
		db, err = bolt.Open(path, 0o600, o)
		return err
	})
	var p *panicError
	switch {
	case errors.As(err, &p):
		if f != nil {
			_ = f.Close()
		}
		return nil, fmt.Errorf("%w: bbolt could not open it: %v", ErrDamaged, p.v)
	case errors.Is(err, bolt.ErrInvalid), errors.Is(err, bolt.ErrVersionMismatch), errors.Is(err, bolt.ErrChecksum),
		err != nil && strings.Contains(err.Error(), "file size too small"):
		return nil, fmt.Errorf("%w: %w", ErrDamaged, err)
	}
	return db, err
}

// classifyOpenErr turns the errors of opening a file the agent may not
// write into ErrUnusable ones that say how to fix it.
func classifyOpenErr(path string, err error) error {
	if errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS) {
		return fmt.Errorf("state database %s cannot be written (%w): %w; berth-agent runs as root (LocalSystem on Windows) and needs it as a file it owns, mode 0600, on a writable file system and without the immutable attribute (Linux: chown root %s; chmod 0600 %s; chattr -i %s)",
			path, err, ErrUnusable, path, path, path)
	}
	return fmt.Errorf("open state database %s: %w", path, err)
}

// notAFile is the error for a directory (or a device, a socket…) where
// agent.db should be. It is not moved aside: the agent did not put it
// there, and it may be a mount point.
func notAFile(path string, m fs.FileMode) error {
	what := "a " + strings.ToLower(strings.TrimSpace(typeName(m)))
	return fmt.Errorf("state database %s is %s, not a file: %w; remove or rename it (if it is mounted there, mount a file or the whole state folder instead) and the agent creates a new agent.db at its next use", path, what, ErrUnusable)
}

func typeName(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeDevice != 0:
		return "device"
	}
	return "special file"
}

// check reads the whole file: every bucket, key and value (which touches
// every page the records use), then bbolt's consistency check (double
// frees, unreachable pages, bad page types), which runs in a goroutine of
// bbolt's own and so only after the pages have been read here, where a
// fault is recovered. It returns nil for a missing or sound file, an error
// wrapping ErrDamaged for a damaged one, and other errors as they come.
func (d *DB) check(ctx context.Context) error {
	if err := d.repairTornMeta(ctx); err != nil {
		return err
	}
	db, err := d.openOnce(ctx, true)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	err = runProtected(db, true, func(tx *bolt.Tx) error {
		if err := walk(tx.Cursor()); err != nil {
			return err
		}
		// The check's goroutine uses tx until it closes the channel:
		// read it to the end, keeping the first error, which says enough.
		var first error
		for err := range tx.Check() {
			first = cmp.Or(first, err)
		}
		return first
	})
	var p *panicError
	if errors.As(err, &p) || (err != nil && !errors.Is(err, ErrUnusable)) {
		return fmt.Errorf("state database %s: %w: %w", d.path, ErrDamaged, err)
	}
	return err
}

// repairTornMeta rewrites a meta page that a crash tore while the other
// one is sound. bbolt keeps two for this and reads through the sound one,
// but its consistency check takes the torn page for damage, and moving the
// file aside for the one crash bbolt is built to survive would lose the
// state for nothing. One commit (of nothing) writes the torn page, since
// commits alternate between the two.
func (d *DB) repairTornMeta(ctx context.Context) error {
	f, err := os.Open(d.path)
	if err != nil {
		return nil // missing, or not readable: the open that follows says why
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil
	}
	buf := make([]byte, maxMetaProbe)
	n, _ := io.ReadFull(f, buf)
	if _, _, ok0, ok1 := parseMetas(buf[:n]); ok0 == ok1 {
		return nil
	}
	db, err := d.openOnce(ctx, false)
	if err != nil {
		return nil // damaged (the check says so) or not writable (the copy moved aside is then the original)
	}
	if err := runProtected(db, false, func(*bolt.Tx) error { return nil }); err != nil {
		return nil // the check that follows finds the damage
	}
	d.log.Warn("agent.db had a torn meta page (a crash during a commit); rewritten from the sound one", "path", d.path)
	return nil
}

// bbolt's file format, version 2: each of the first two pages holds a
// meta, after the page's 16-byte header (id, flags, count, overflow):
// magic, version, page size and flags (4 bytes each), the root bucket's
// page and sequence, the freelist's page, the high water mark (pages in
// use) and the transaction id (8 each), then an FNV-64a checksum of those
// 56 bytes. Integers are in the machine's order (little-endian on the
// platforms Berth builds for). The second page is at the page size, which
// the first meta gives; when it is torn, bbolt tries every size from 1 KiB
// to 16 MiB, as here.
const (
	metaMagic     = 0xED0CDAED
	metaVersion   = 2
	pageHeader    = 16
	metaSumAt     = 56
	maxMetaProbe  = 16<<20 + 4096
	freelistFlag  = 0x10
	noFreelist    = ^uint64(0)
	maxPageSize   = 1 << 24
	minPageSize   = 1 << 10
	pgidSize      = 8
	bigFreelist   = 0xFFFF // a count that says the real one is the first id
	metaRoot      = 16
	metaFreelist  = 32
	metaHighWater = 40
	metaTxid      = 48
)

// meta is what a sound meta page says.
type meta struct {
	pageSize                  int64
	root, freelist, highWater uint64
	txid                      uint64
}

// parseMeta reads the meta in the page at the start of b; false when it is
// not sound.
func parseMeta(b []byte) (meta, bool) {
	if len(b) < pageHeader+metaSumAt+8 {
		return meta{}, false
	}
	m := b[pageHeader:]
	le := binary.LittleEndian
	if le.Uint32(m) != metaMagic || le.Uint32(m[4:]) != metaVersion {
		return meta{}, false
	}
	h := fnv.New64a()
	h.Write(m[:metaSumAt])
	if h.Sum64() != le.Uint64(m[metaSumAt:]) {
		return meta{}, false
	}
	return meta{
		pageSize:  int64(le.Uint32(m[8:])),
		root:      le.Uint64(m[metaRoot:]),
		freelist:  le.Uint64(m[metaFreelist:]),
		highWater: le.Uint64(m[metaHighWater:]),
		txid:      le.Uint64(m[metaTxid:]),
	}, true
}

// parseMetas reads the two meta pages at the start of b; a torn one is
// returned with false.
func parseMetas(b []byte) (m0, m1 meta, ok0, ok1 bool) {
	if m0, ok0 = parseMeta(b); ok0 {
		if m0.pageSize > 0 && m0.pageSize < int64(len(b)) {
			m1, ok1 = parseMeta(b[m0.pageSize:])
		}
		return m0, m1, ok0, ok1
	}
	for size := int64(minPageSize); size <= maxPageSize && size < int64(len(b)); size *= 2 {
		if m1, ok1 = parseMeta(b[size:]); ok1 {
			break
		}
	}
	return m0, m1, ok0, ok1
}

// preflight looks at the pages bbolt reads while it opens the file at f
// (size bytes), so that a damaged file is refused before bbolt maps it and
// panics: a panic inside bolt.Open leaves the file mapped, and the mapping
// keeps the file's lock until the process ends. It checks the meta bbolt
// uses (the sound one with the higher transaction id) against the file's
// size, and the freelist page it loads. A file without a sound meta is
// left to bbolt, which refuses it with an error.
func preflight(f io.ReaderAt, size int64) error {
	if size == 0 {
		return nil // bbolt writes a new file
	}
	buf := make([]byte, min(size, maxMetaProbe))
	if _, err := f.ReadAt(buf, 0); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	m0, m1, ok0, ok1 := parseMetas(buf)
	m := m0
	switch {
	case !ok0 && !ok1:
		return nil
	case !ok0 || (ok1 && m1.txid > m0.txid):
		m = m1
	}
	ps := m.pageSize
	switch {
	case ps < minPageSize || ps > maxPageSize || ps&(ps-1) != 0:
		return fmt.Errorf("%w: page size %d", ErrDamaged, ps)
	case m.highWater < 3 || m.highWater > uint64(size/ps):
		return fmt.Errorf("%w: it has %d bytes, and its pages need %d×%d (truncated?)", ErrDamaged, size, m.highWater, ps)
	case m.root < 2 || m.root >= m.highWater:
		return fmt.Errorf("%w: root page %d outside the pages in use (%d)", ErrDamaged, m.root, m.highWater)
	case m.freelist == noFreelist || m.freelist < 2 || m.freelist >= m.highWater:
		return fmt.Errorf("%w: freelist page %d outside the pages in use (%d)", ErrDamaged, m.freelist, m.highWater)
	}
	return checkFreelist(f, m)
}

// preflight is preflight on the file; a file it cannot read is left to
// bbolt, whose error says why.
func (d *DB) preflight() error {
	f, err := os.Open(d.path)
	if err != nil {
		return nil
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil
	}
	return preflight(f, fi.Size())
}

// checkFreelist checks that the freelist page is one, and that its ids lie
// within its pages.
func checkFreelist(f io.ReaderAt, m meta) error {
	at := int64(m.freelist) * m.pageSize
	var h [pageHeader + pgidSize]byte
	if _, err := f.ReadAt(h[:], at); err != nil {
		return fmt.Errorf("%w: freelist page %d: %w", ErrDamaged, m.freelist, err)
	}
	le := binary.LittleEndian
	id, flags, count, overflow := le.Uint64(h[:]), le.Uint16(h[8:]), uint64(le.Uint16(h[10:])), uint64(le.Uint32(h[12:]))
	if id != m.freelist || flags != freelistFlag {
		return fmt.Errorf("%w: freelist page %d holds page %d of type %#x", ErrDamaged, m.freelist, id, flags)
	}
	if m.freelist+overflow >= m.highWater {
		return fmt.Errorf("%w: freelist page %d overflows past the pages in use (%d)", ErrDamaged, m.freelist, m.highWater)
	}
	if count == bigFreelist {
		count = le.Uint64(h[pageHeader:]) + 1
	}
	if room := (overflow + 1) * uint64(m.pageSize); count > room/pgidSize {
		return fmt.Errorf("%w: freelist page %d claims %d ids, more than its pages hold", ErrDamaged, m.freelist, count)
	}
	return nil
}

// walk visits every key and value under c, and every nested bucket.
func walk(c *bolt.Cursor) error {
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if v != nil {
			continue
		}
		b := c.Bucket().Bucket(k)
		if b == nil {
			return fmt.Errorf("bucket %q: a key without a value that is no bucket", k)
		}
		if err := walk(b.Cursor()); err != nil {
			return fmt.Errorf("bucket %q: %w", k, err)
		}
	}
	return nil
}

// keepCopies is how many damaged copies are kept beside agent.db; older
// ones are removed, so a disk that keeps damaging the file cannot fill up
// with them.
const keepCopies = 3

// copySuffix is put between agent.db and the time in a damaged copy's name.
const copySuffix = ".damaged-"

// replaceDamaged moves the damaged file aside as <path>.damaged-<time> and
// creates an empty database that remembers the rebuild. Only the file that
// was found damaged is moved: another process may have replaced it in the
// meantime, which its identity tells (a process that writes into the
// damaged file between the check and the rename loses that write; it was
// writing into a damaged file). A directory or other non-file is never
// moved (see notAFile).
func (d *DB) replaceDamaged(ctx context.Context, cause error) error {
	d.replaceMu.Lock()
	defer d.replaceMu.Unlock()
	before, err := os.Lstat(d.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil // moved by another process; the next open creates it
	}
	if err != nil {
		return fmt.Errorf("state database %s: %w", d.path, err)
	}
	if !before.Mode().IsRegular() {
		return notAFile(d.path, before.Mode())
	}
	// Another goroutine or process may have replaced it since cause was
	// seen: look again.
	cerr := d.check(ctx)
	if !errors.Is(cerr, ErrDamaged) {
		return cerr
	}
	if now, err := os.Lstat(d.path); err != nil || !os.SameFile(before, now) {
		return nil
	}
	at := d.now().UTC()
	dst := copyName(d.path, at)
	if err := os.Rename(d.path, dst); err != nil {
		return fmt.Errorf("state database %s is damaged (%s) and cannot be moved aside: %w: %w; make the file and its folder writable (Linux: chattr -i %s), or move the file away by hand, and the agent replaces it at its next use",
			d.path, reason(cause), err, ErrUnusable, d.path)
	}
	d.log.Error("agent.db was damaged: moved aside and replaced by an empty one; what it held is rebuilt from the host",
		"path", d.path, "damaged_copy", dst, "reason", reason(cause))
	d.pruneCopies()
	// Written without the replacing of Put (this is it), into the new file.
	raw, err := json.Marshal(Rebuild{At: at, Reason: reason(cause), Copy: dst})
	if err != nil {
		return err
	}
	db, err := d.openOnce(ctx, false)
	if err == nil {
		err = runProtected(db, false, func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists([]byte(metaBucket))
			if err != nil {
				return err
			}
			return b.Put([]byte(rebuildKey), raw)
		})
	}
	if err != nil {
		return fmt.Errorf("record the rebuild of %s: %w", d.path, err)
	}
	return nil
}

// reason is the part of a damage error worth keeping: what bbolt said.
func reason(err error) string {
	s := err.Error()
	if i := strings.Index(s, ErrDamaged.Error()+": "); i >= 0 {
		s = s[i+len(ErrDamaged.Error())+2:]
	}
	return s
}

// copyName is the damaged copy's name: the time to the millisecond, which
// sorts as it happened, and a number when that name is taken.
func copyName(path string, at time.Time) string {
	base := path + copySuffix + at.Format("20060102T150405.000Z")
	name := base
	for i := 2; ; i++ {
		if _, err := os.Lstat(name); errors.Is(err, os.ErrNotExist) {
			return name
		}
		name = fmt.Sprintf("%s-%d", base, i)
	}
}

// Copies lists the damaged copies kept beside the file, oldest first.
func (d *DB) Copies() []string {
	m, _ := filepath.Glob(globEscape(d.path) + copySuffix + "*")
	slices.Sort(m)
	return m
}

func (d *DB) pruneCopies() {
	cs := d.Copies()
	for _, c := range cs[:max(len(cs)-keepCopies, 0)] {
		if err := os.Remove(c); err != nil {
			d.log.Warn("cannot remove an old damaged copy of agent.db", "path", c, "err", err)
		}
	}
}

// globEscape escapes the pattern characters of a path for filepath.Glob.
func globEscape(p string) string {
	r := strings.NewReplacer(`*`, `\*`, `?`, `\?`, `[`, `\[`)
	if filepath.Separator == '\\' {
		r = strings.NewReplacer(`*`, `[*]`, `?`, `[?]`, `[`, `[[]`)
	}
	return r.Replace(p)
}

// Rebuild is what agent.db remembers of the damaged file it replaced.
type Rebuild struct {
	At time.Time `json:"at"`
	// Reason is what was wrong with the file.
	Reason string `json:"reason"`
	// Copy is where the damaged file was moved.
	Copy string `json:"copy"`
	// Reported is set once the rebuild's event is queued for control.
	Reported bool `json:"reported,omitempty"`
}

const (
	metaBucket = "statedb"
	rebuildKey = "rebuild"
)

// LastRebuild returns the record of the last time a damaged file was
// replaced, and false when it never was (since this file exists).
func (d *DB) LastRebuild(ctx context.Context) (Rebuild, bool, error) {
	var r Rebuild
	found, err := d.Get(ctx, metaBucket, rebuildKey, &r)
	return r, found, err
}

// SetRebuild rewrites the rebuild's record (to mark it reported).
func (d *DB) SetRebuild(ctx context.Context, r Rebuild) error {
	return d.Put(ctx, metaBucket, rebuildKey, r)
}

// Probe opens the file for writing and closes it: nil when the agent can
// use it (or it does not exist yet), else why not. A damaged file is
// replaced on the way, as by any transaction.
func (d *DB) Probe(ctx context.Context) error {
	if _, err := os.Lstat(d.path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	db, err := d.open(ctx, false)
	if err != nil {
		return err
	}
	return protect(db.Close)
}
