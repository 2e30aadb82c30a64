package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// kind is what an entry makes on disk.
type kind int

const (
	kindFile kind = iota + 1
	kindDir
	kindSymlink
	kindHardlink
	// kindGlobal is a PAX global header: a record of its own in the tar
	// stream that makes nothing on disk but counts as an entry.
	kindGlobal
)

func (k kind) String() string {
	switch k {
	case kindFile:
		return "file"
	case kindDir:
		return "folder"
	case kindSymlink:
		return "symbolic link"
	case kindHardlink:
		return "hard link"
	case kindGlobal:
		return "PAX global header"
	}
	return "entry"
}

// entry is one member of an archive, whatever the format.
type entry struct {
	name     string // as the archive spells it
	kind     kind
	perm     fs.FileMode
	size     int64  // declared size of a file's content
	linkname string // target of a link
	// open returns the content of a file; nil for other kinds.
	open func() (io.ReadCloser, error)
}

// source yields the entries of an archive; next returns io.EOF after the
// last one. A format-specific refusal (device files, unknown kinds) comes
// back from next as an error.
type source interface {
	next() (entry, error)
}

// maxLinkTarget bounds a link target read from a zip entry's content.
const maxLinkTarget = 4096

// maxLinkHops bounds how many links resolving one link target may follow.
const maxLinkHops = 255

// node is what the unpacker has put at a path so far.
type node struct {
	name     string // the cleaned path as first spelled
	kind     kind
	implicit bool // a folder made only because an entry lives under it
}

// unpacker writes the entries of one archive under a root folder.
type unpacker struct {
	root  *os.Root
	lim   Limits
	total int64
	count int
	// nodes maps the case-folded cleaned path of every entry and every
	// implied folder to what is there.
	nodes map[string]node
	// links maps the case-folded path of every symbolic link to its
	// case-folded, slash-separated target.
	links map[string]string
	// linkNames maps the same keys to the links' names in the archive.
	linkNames map[string]string
}

// unpack writes every entry of src under dir, which must be empty.
func unpack(ctx context.Context, src source, dir string, lim Limits) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("open temporary folder: %w", err)
	}
	defer root.Close()
	u := &unpacker{
		root:      root,
		lim:       lim,
		nodes:     map[string]node{},
		links:     map[string]string{},
		linkNames: map[string]string{},
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		e, err := src.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if err := u.add(ctx, e); err != nil {
			return err
		}
	}
	if err := u.checkLinks(); err != nil {
		return err
	}
	return root.Close()
}

// add writes one entry after checking it.
func (u *unpacker) add(ctx context.Context, e entry) error {
	u.count++
	if u.count > u.lim.MaxEntries {
		return tooLarge(e.name, "more than %d entries", u.lim.MaxEntries)
	}
	if e.kind == kindGlobal {
		return nil // counted; nothing to write
	}
	name, err := cleanName(e.name)
	if err != nil {
		return err
	}
	if name == "" {
		if e.kind == kindDir {
			return nil // "./": the destination itself
		}
		return unsafeEntry(e.name, "names the destination folder itself")
	}
	key := fold(name)
	if err := u.checkParents(e.name, name); err != nil {
		return err
	}
	if prev, ok := u.nodes[key]; ok {
		if e.kind == kindDir && prev.kind == kindDir && prev.implicit {
			if prev.name != name {
				return unsafeEntry(e.name, "differs only in case from %q", prev.name)
			}
			u.nodes[key] = node{name: name, kind: kindDir}
			return nil
		}
		return unsafeEntry(e.name, "duplicate entry (the archive already holds a %s at this path)", prev.kind)
	}
	if dir := path.Dir(name); dir != "." {
		if err := u.root.MkdirAll(filepath.FromSlash(dir), 0o755); err != nil {
			return fmt.Errorf("entry %q: create folder: %w", e.name, err)
		}
	}
	osName := filepath.FromSlash(name)
	switch e.kind {
	case kindDir:
		if err := u.root.Mkdir(osName, 0o755); err != nil {
			return fmt.Errorf("entry %q: create folder: %w", e.name, err)
		}
	case kindFile:
		if err := u.writeFile(ctx, e, osName); err != nil {
			return err
		}
	case kindSymlink:
		target, err := checkSymlink(e.name, name, e.linkname)
		if err != nil {
			return err
		}
		if err := u.root.Symlink(filepath.FromSlash(target), osName); err != nil {
			return fmt.Errorf("entry %q: create symbolic link: %w", e.name, err)
		}
		u.links[key] = fold(target)
		u.linkNames[key] = e.name
	case kindHardlink:
		target, err := cleanName(e.linkname)
		if err != nil || target == "" {
			return unsafeEntry(e.name, "hard link target %q is not a path inside the destination", e.linkname)
		}
		n, ok := u.nodes[fold(target)]
		if !ok || n.kind != kindFile {
			return unsafeEntry(e.name, "hard link target %q is not a regular file earlier in the archive", e.linkname)
		}
		if err := u.root.Link(filepath.FromSlash(n.name), osName); err != nil {
			return fmt.Errorf("entry %q: create hard link: %w", e.name, err)
		}
	default:
		return unsafeEntry(e.name, "unsupported entry type")
	}
	u.nodes[key] = node{name: name, kind: e.kind}
	return nil
}

// checkParents refuses an entry below a link or a file, or below a folder
// spelled with other cases, and records the folders it implies.
func (u *unpacker) checkParents(raw, name string) error {
	for i := 0; i < len(name); i++ {
		if name[i] != '/' {
			continue
		}
		p := name[:i]
		k := fold(p)
		n, ok := u.nodes[k]
		switch {
		case !ok:
			u.nodes[k] = node{name: p, kind: kindDir, implicit: true}
		case n.kind == kindSymlink:
			return unsafeEntry(raw, "would be written through the symbolic link %q", n.name)
		case n.kind != kindDir:
			return unsafeEntry(raw, "its parent %q is a %s, not a folder", n.name, n.kind)
		case n.name != p:
			return unsafeEntry(raw, "folder %q differs only in case from %q", p, n.name)
		}
	}
	return nil
}

// writeFile writes a regular file's content and mode, and syncs it.
func (u *unpacker) writeFile(ctx context.Context, e entry, osName string) (err error) {
	if e.size > u.lim.MaxEntryBytes {
		return tooLarge(e.name, "declares %d bytes, over the limit of %d per entry", e.size, u.lim.MaxEntryBytes)
	}
	if e.size > u.lim.MaxTotalBytes-u.total {
		return tooLarge(e.name, "declares %d bytes, over the limit of %d in all", e.size, u.lim.MaxTotalBytes)
	}
	rc, err := e.open()
	if err != nil {
		return fmt.Errorf("entry %q: %w", e.name, err)
	}
	defer rc.Close()
	f, err := u.root.OpenFile(osName, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("entry %q: create file: %w", e.name, err)
	}
	defer func() {
		if cerr := f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("entry %q: close file: %w", e.name, cerr)
		}
	}()
	// Read one byte past the limit to tell "at the limit" from "over it":
	// the declared size is not trusted.
	max := min(u.lim.MaxEntryBytes, u.lim.MaxTotalBytes-u.total)
	n, err := io.Copy(f, &ctxReader{ctx: ctx, r: io.LimitReader(rc, max+1)})
	u.total += n
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("entry %q: %w", e.name, readErr(err))
	}
	if n > max {
		if n > u.lim.MaxEntryBytes {
			return tooLarge(e.name, "more than %d bytes, over the limit per entry", u.lim.MaxEntryBytes)
		}
		return tooLarge(e.name, "brings the archive over the limit of %d bytes in all", u.lim.MaxTotalBytes)
	}
	if n != e.size {
		return &EntryError{Entry: e.name, Reason: fmt.Sprintf("holds %d bytes but declares %d", n, e.size), Err: ErrCorrupt}
	}
	if fsync {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("entry %q: sync file: %w", e.name, err)
		}
	}
	if err := u.root.Chmod(osName, filePerm(e.perm)); err != nil {
		return fmt.Errorf("entry %q: set mode: %w", e.name, err)
	}
	return nil
}

// filePerm keeps the permission bits of a file except group and other
// write; setuid, setgid and sticky are not permission bits and are dropped.
// The owner can always read and write, so the agent can verify and remove
// what it installed (on Windows a missing owner write bit means read-only).
func filePerm(m fs.FileMode) fs.FileMode {
	return m.Perm()&0o755 | 0o600
}

// checkLinks resolves every symbolic link as the file system would, through
// the other links of the archive, and refuses any that leads outside the
// destination. Checking each target on its own is not enough: a target like
// "a/../.." is harmless on paper and escapes when "a" is itself a link.
func (u *unpacker) checkLinks() error {
	for _, key := range slices.Sorted(maps.Keys(u.links)) {
		target := u.links[key]
		if err := resolveInside(key, target, u.links); err != nil {
			return unsafeEntry(u.linkNames[key], "symbolic link to %q: %v", target, err)
		}
	}
	return nil
}

var errEscapes = errors.New("leads outside the destination")

// resolveInside follows a link at key (folded, slash-separated) to target
// through the links of the archive. It fails when the path would climb
// above the destination or when the links loop.
func resolveInside(key, target string, links map[string]string) error {
	var stack []string
	if dir := path.Dir(key); dir != "." {
		stack = strings.Split(dir, "/")
	}
	queue := strings.Split(target, "/")
	hops := 0
	for len(queue) > 0 {
		c := queue[0]
		queue = queue[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(stack) == 0 {
				return errEscapes
			}
			stack = stack[:len(stack)-1]
			continue
		}
		stack = append(stack, c)
		t, ok := links[strings.Join(stack, "/")]
		if !ok {
			continue
		}
		hops++
		if hops > maxLinkHops {
			return errors.New("symbolic links loop")
		}
		stack = stack[:len(stack)-1]
		queue = append(strings.Split(t, "/"), queue...)
	}
	return nil
}

// checkSymlink checks a symbolic link's target on its own: relative, and
// inside the destination as written. It returns the slash-separated target.
func checkSymlink(raw, name, linkname string) (string, error) {
	t := strings.ReplaceAll(linkname, `\`, "/")
	switch {
	case t == "":
		return "", unsafeEntry(raw, "symbolic link with an empty target")
	case strings.HasPrefix(t, "/"):
		return "", unsafeEntry(raw, "symbolic link to the absolute path %q", linkname)
	case strings.ContainsAny(t, ":\x00"):
		return "", unsafeEntry(raw, "symbolic link to %q, a drive letter, stream or NUL", linkname)
	case len(t) > maxLinkTarget:
		return "", unsafeEntry(raw, "symbolic link target longer than %d bytes", maxLinkTarget)
	}
	if j := path.Join(path.Dir(name), t); j == ".." || strings.HasPrefix(j, "../") {
		return "", unsafeEntry(raw, "symbolic link to %q leads outside the destination", linkname)
	}
	return t, nil
}

// cleanName checks an entry name and returns it slash-separated, without
// "." components, duplicate or trailing slashes. "" means the destination
// itself. Backslashes count as separators: Windows tools write them into
// zips, and Windows treats them as such whatever the format.
func cleanName(raw string) (string, error) {
	n := strings.ReplaceAll(raw, `\`, "/")
	switch {
	case n == "":
		return "", unsafeEntry(raw, "empty name")
	case strings.HasPrefix(n, "/"):
		return "", unsafeEntry(raw, "absolute path")
	case len(n) >= 2 && n[1] == ':':
		return "", unsafeEntry(raw, "path with a drive letter")
	}
	var parts []string
	for _, c := range strings.Split(n, "/") {
		switch c {
		case "", ".":
			continue
		case "..":
			return "", unsafeEntry(raw, "parent folder reference (..)")
		}
		if reason := badComponent(c); reason != "" {
			return "", unsafeEntry(raw, "component %q: %s", c, reason)
		}
		parts = append(parts, c)
	}
	return strings.Join(parts, "/"), nil
}

// badComponent says why a path component cannot be written the same way
// on Windows and Linux, or "" when it can.
func badComponent(c string) string {
	for _, r := range c {
		if r < 0x20 || r == 0x7f {
			return "control character"
		}
	}
	if strings.ContainsAny(c, `:*?"<>|`) {
		return "character Windows forbids (a drive, a stream or a wildcard)"
	}
	if strings.HasSuffix(c, ".") || strings.HasSuffix(c, " ") {
		return "ends with a dot or space, which Windows drops"
	}
	base := strings.ToUpper(c)
	if i := strings.IndexByte(base, '.'); i >= 0 {
		base = base[:i]
	}
	base = strings.TrimRight(base, " ")
	switch base {
	case "CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$":
		return "Windows device name"
	}
	if strings.HasPrefix(base, "COM") || strings.HasPrefix(base, "LPT") {
		switch base[3:] {
		case "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "¹", "²", "³":
			return "Windows device name"
		}
	}
	return ""
}

// fold is the key two names collide under: Windows file systems ignore
// case, so an archive that needs case to tell two entries apart is refused
// everywhere.
func fold(name string) string { return strings.ToLower(name) }

// ctxReader stops a copy when its context is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// readErr marks the errors of reading a truncated or malformed archive
// with ErrCorrupt.
func readErr(err error) error {
	if errors.Is(err, ErrCorrupt) || errors.Is(err, ErrTooLarge) || errors.Is(err, ErrUnsafeEntry) {
		return err
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: truncated: %w", ErrCorrupt, err)
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return err // an I/O error of the file system, not of the archive
	}
	return fmt.Errorf("%w: %w", ErrCorrupt, err)
}
