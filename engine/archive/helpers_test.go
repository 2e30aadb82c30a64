package archive

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// tEntry describes one member of a test archive, in tar terms.
type tEntry struct {
	name string
	typ  byte // tar.TypeReg (default), TypeDir, TypeSymlink, TypeLink, TypeChar, TypeBlock, TypeFifo
	mode int64
	body string
	link string
	// size overrides the declared size when not zero (-1 declares 0).
	size int64
	// pax are PAX records: of the entry's extended header, or of a
	// global header (typ tar.TypeXGlobalHeader, tar only).
	pax map[string]string
}

func (e tEntry) declared() int64 {
	switch {
	case e.size == -1:
		return 0
	case e.size != 0:
		return e.size
	}
	return int64(len(e.body))
}

var modTime = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// tarBytes builds an uncompressed tar. A body shorter than the declared
// size is allowed, to build truncated archives, so write errors are
// ignored after the header.
func tarBytes(t testing.TB, entries ...tEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		if typ == tar.TypeXGlobalHeader {
			if err := tw.WriteHeader(&tar.Header{Name: e.name, Typeflag: typ, PAXRecords: e.pax}); err != nil {
				t.Fatalf("tar global header %q: %v", e.name, err)
			}
			continue
		}
		mode := e.mode
		if mode == 0 {
			mode = 0o644
			if typ == tar.TypeDir {
				mode = 0o755
			}
		}
		hdr := &tar.Header{
			Name: e.name, Typeflag: typ, Mode: mode, Linkname: e.link,
			ModTime: modTime, Format: tar.FormatPAX, PAXRecords: e.pax,
		}
		if typ == tar.TypeReg {
			hdr.Size = e.declared()
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatalf("tar header %q: %v", e.name, err)
		}
		if typ == tar.TypeReg {
			_, _ = tw.Write([]byte(e.body))
		}
	}
	_ = tw.Close()
	return buf.Bytes()
}

func tarGz(t testing.TB, entries ...tEntry) []byte {
	t.Helper()
	return gzipBytes(t, tarBytes(t, entries...))
}

func gzipBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatalf("gzip: %v", err)
	}
	if err := zw.Close(); err != nil {
		t.Fatalf("gzip: %v", err)
	}
	return buf.Bytes()
}

// zipOf builds a zip with the same entries; the tar type becomes the
// Unix mode in the external attributes.
func zipOf(t testing.TB, entries ...tEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		perm := fs.FileMode(e.mode) & fs.ModePerm
		if perm == 0 {
			perm = 0o644
		}
		var m fs.FileMode
		body := e.body
		switch e.typ {
		case tar.TypeDir:
			m = fs.ModeDir | 0o755
		case tar.TypeSymlink:
			m = fs.ModeSymlink | 0o777
			body = e.link
		case tar.TypeChar:
			m = fs.ModeDevice | fs.ModeCharDevice | perm
		case tar.TypeBlock:
			m = fs.ModeDevice | perm
		case tar.TypeFifo:
			m = fs.ModeNamedPipe | perm
		default:
			m = perm
			if e.mode&0o4000 != 0 {
				m |= fs.ModeSetuid
			}
		}
		fh := &zip.FileHeader{Name: e.name, Method: zip.Deflate, Modified: modTime}
		fh.SetMode(m)
		w, err := zw.CreateHeader(fh)
		if err != nil {
			t.Fatalf("zip header %q: %v", e.name, err)
		}
		if _, err := w.Write([]byte(body)); err != nil {
			t.Fatalf("zip body %q: %v", e.name, err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatalf("zip: %v", err)
	}
	return buf.Bytes()
}

// writeSrc writes archive bytes to a file in a fresh folder.
func writeSrc(t testing.TB, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pkg")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// canSymlink reports whether this process may create symbolic links
// (on Windows it needs a privilege or developer mode).
func canSymlink(t testing.TB) bool {
	t.Helper()
	if runtime.GOOS != "windows" {
		return true
	}
	d := t.TempDir()
	return os.Symlink("x", filepath.Join(d, "l")) == nil
}
