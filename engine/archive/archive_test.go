package archive

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// dockerLayout is the shape of Docker's static release archives.
var dockerLayout = []tEntry{
	{name: "docker/", typ: tar.TypeDir},
	{name: "docker/dockerd", mode: 0o755, body: "dockerd"},
	{name: "docker/docker", mode: 0o755, body: "docker cli"},
	{name: "docker/containerd", mode: 0o755, body: "containerd"},
	{name: "docker/runc", mode: 0o755, body: "runc"},
	{name: "docker/README", mode: 0o644, body: "read me"},
}

type format struct {
	name  string
	build func(testing.TB, ...tEntry) []byte
}

var formats = []format{{"tar.gz", tarGz}, {"zip", zipOf}, {"tar", tarBytes}}

// tree lists what is under dir: "path mode" for files (mode only where
// Unix modes exist), "path/" for folders, "path -> target" for links.
func tree(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel := filepath.ToSlash(strings.TrimPrefix(p, dir+string(filepath.Separator)))
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			out = append(out, rel+"/")
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out = append(out, rel+" -> "+filepath.ToSlash(target))
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			s := rel + " " + string(b)
			if runtime.GOOS != "windows" {
				s += " " + info.Mode().String()
			}
			out = append(out, s)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func TestExtractKeepsLayoutAndModes(t *testing.T) {
	for _, f := range formats {
		t.Run(f.name, func(t *testing.T) {
			src := writeSrc(t, f.build(t, append(dockerLayout,
				tEntry{name: "docker/suid", mode: 0o4755, body: "s"},
				tEntry{name: "docker/open", mode: 0o777, body: "o"},
				tEntry{name: "docker/ro", mode: 0o444, body: "r"},
				tEntry{name: "./", typ: tar.TypeDir},
				tEntry{name: "docker/sub/deep/file", body: "implied folders"},
				tEntry{name: "docker/sub/", typ: tar.TypeDir},
			)...))
			dest := filepath.Join(t.TempDir(), "engines", "docker", "27.3.1")
			if err := Extract(context.Background(), src, dest, Limits{}); err != nil {
				t.Fatalf("Extract: %v", err)
			}
			// 0444 gets owner write; setuid and group/other write go.
			exe, rw := " -rwxr-xr-x", " -rw-r--r--"
			if runtime.GOOS == "windows" {
				exe, rw = "", ""
			}
			want := []string{
				"docker/",
				"docker/README read me" + rw,
				"docker/containerd containerd" + exe,
				"docker/docker docker cli" + exe,
				"docker/dockerd dockerd" + exe,
				"docker/open o" + exe,
				"docker/ro r" + rw,
				"docker/runc runc" + exe,
				"docker/sub/",
				"docker/sub/deep/",
				"docker/sub/deep/file implied folders" + rw,
				"docker/suid s" + exe,
			}
			if diff := cmp.Diff(want, tree(t, dest)); diff != "" {
				t.Errorf("tree (-want +got):\n%s", diff)
			}
			assertNoPartials(t, dest)
		})
	}
}

func TestExtractLinksInside(t *testing.T) {
	if !canSymlink(t) {
		t.Skip("this process may not create symbolic links")
	}
	for _, f := range formats {
		t.Run(f.name, func(t *testing.T) {
			entries := []tEntry{
				{name: "bin/containerd", mode: 0o755, body: "c"},
				{name: "bin/ctr-link", typ: tar.TypeSymlink, link: "containerd"},
				{name: "bin/up", typ: tar.TypeSymlink, link: "../bin/containerd"},
				{name: `bin\back`, typ: tar.TypeSymlink, link: `..\bin\containerd`},
			}
			if f.name != "zip" {
				entries = append(entries, tEntry{name: "bin/hard", typ: tar.TypeLink, link: "bin/containerd"})
			}
			dest := filepath.Join(t.TempDir(), "v1")
			if err := Extract(context.Background(), writeSrc(t, f.build(t, entries...)), dest, Limits{}); err != nil {
				t.Fatalf("Extract: %v", err)
			}
			b, err := os.ReadFile(filepath.Join(dest, "bin", "up"))
			if err != nil || string(b) != "c" {
				t.Errorf("read through link = %q, %v; want %q", b, err, "c")
			}
			if f.name != "zip" {
				b, err := os.ReadFile(filepath.Join(dest, "bin", "hard"))
				if err != nil || string(b) != "c" {
					t.Errorf("read hard link = %q, %v; want %q", b, err, "c")
				}
			}
		})
	}
}

func TestExtractRefuses(t *testing.T) {
	big := strings.Repeat("x", 2048)
	small := Limits{MaxEntryBytes: 1024, MaxTotalBytes: 3000, MaxEntries: 5}
	tests := []struct {
		name    string
		entries []tEntry
		lim     Limits
		want    error
		// entry must be named in the error message.
		entry string
		// only restricts a case to some formats (by name); empty means all.
		only []string
		// links: the refusal comes after symbolic links were created.
		links bool
	}{
		{name: "parent traversal", entries: []tEntry{{name: "../evil", body: "x"}}, want: ErrUnsafeEntry, entry: "../evil"},
		{name: "nested traversal", entries: []tEntry{{name: "docker/../../evil", body: "x"}}, want: ErrUnsafeEntry, entry: "docker/../../evil"},
		{name: "traversal that stays inside", entries: []tEntry{{name: "a/../b", body: "x"}}, want: ErrUnsafeEntry, entry: "a/../b"},
		{name: "backslash traversal", entries: []tEntry{{name: `..\..\evil.exe`, body: "x"}}, want: ErrUnsafeEntry, entry: `..\\..\\evil.exe`},
		{name: "backslash nested traversal", entries: []tEntry{{name: `docker\..\..\evil.exe`, body: "x"}}, want: ErrUnsafeEntry},
		{name: "absolute", entries: []tEntry{{name: "/etc/cron.d/evil", body: "x"}}, want: ErrUnsafeEntry, entry: "/etc/cron.d/evil"},
		{name: "drive letter", entries: []tEntry{{name: `C:\Windows\System32\evil.dll`, body: "x"}}, want: ErrUnsafeEntry},
		{name: "drive letter slash", entries: []tEntry{{name: "C:/evil", body: "x"}}, want: ErrUnsafeEntry},
		{name: "drive relative", entries: []tEntry{{name: "C:evil", body: "x"}}, want: ErrUnsafeEntry},
		{name: "UNC", entries: []tEntry{{name: `\\server\share\evil`, body: "x"}}, want: ErrUnsafeEntry},
		{name: "rooted backslash", entries: []tEntry{{name: `\evil`, body: "x"}}, want: ErrUnsafeEntry},
		{name: "alternate data stream", entries: []tEntry{{name: "docker/dockerd.exe:evil", body: "x"}}, want: ErrUnsafeEntry},
		{name: "device name", entries: []tEntry{{name: "docker/NUL.txt", body: "x"}}, want: ErrUnsafeEntry},
		{name: "trailing dot", entries: []tEntry{{name: "docker/dockerd.exe.", body: "x"}}, want: ErrUnsafeEntry},
		{name: "control character", entries: []tEntry{{name: "docker/a\nb", body: "x"}}, want: ErrUnsafeEntry},
		{name: "destination itself", entries: []tEntry{{name: ".", body: "x"}}, want: ErrUnsafeEntry},

		{name: "symlink absolute", entries: []tEntry{{name: "l", typ: tar.TypeSymlink, link: "/etc"}}, want: ErrUnsafeEntry, entry: "l"},
		{name: "symlink drive", entries: []tEntry{{name: "l", typ: tar.TypeSymlink, link: `C:\Windows`}}, want: ErrUnsafeEntry},
		{name: "symlink UNC", entries: []tEntry{{name: "l", typ: tar.TypeSymlink, link: `\\server\share`}}, want: ErrUnsafeEntry},
		{name: "symlink escapes", entries: []tEntry{{name: "a/l", typ: tar.TypeSymlink, link: "../../etc"}}, want: ErrUnsafeEntry, entry: "a/l"},
		{name: "symlink escapes by backslash", entries: []tEntry{{name: "a/l", typ: tar.TypeSymlink, link: `..\..\etc`}}, want: ErrUnsafeEntry},
		{name: "symlink empty", entries: []tEntry{{name: "l", typ: tar.TypeSymlink, link: ""}}, want: ErrUnsafeEntry},
		{name: "symlink chain escapes", entries: []tEntry{
			{name: "d1/d2/s", typ: tar.TypeSymlink, link: "../.."},
			{name: "d1/d2/t", typ: tar.TypeSymlink, link: "s/../x"},
		}, links: true, want: ErrUnsafeEntry, entry: "d1/d2/t"},
		{name: "symlink chain escapes, later link", entries: []tEntry{
			{name: "d1/d2/t", typ: tar.TypeSymlink, link: "s/../x"},
			{name: "d1/d2/s", typ: tar.TypeSymlink, link: "../.."},
		}, links: true, want: ErrUnsafeEntry, entry: "d1/d2/t"},
		{name: "symlink loop", entries: []tEntry{
			{name: "a", typ: tar.TypeSymlink, link: "b"},
			{name: "b", typ: tar.TypeSymlink, link: "a"},
		}, links: true, want: ErrUnsafeEntry},
		{name: "write through symlink", entries: []tEntry{
			{name: "sub/", typ: tar.TypeDir},
			{name: "l", typ: tar.TypeSymlink, link: "sub"},
			{name: "l/evil", body: "x"},
		}, links: true, want: ErrUnsafeEntry, entry: "l/evil"},
		{name: "write through symlink, other case", entries: []tEntry{
			{name: "sub/", typ: tar.TypeDir},
			{name: "l", typ: tar.TypeSymlink, link: "sub"},
			{name: "L/evil", body: "x"},
		}, links: true, want: ErrUnsafeEntry, entry: "L/evil"},
		{name: "hard link absolute", entries: []tEntry{{name: "h", typ: tar.TypeLink, link: "/etc/shadow"}}, want: ErrUnsafeEntry, entry: "h", only: []string{"tar.gz", "tar"}},
		{name: "hard link escapes", entries: []tEntry{{name: "h", typ: tar.TypeLink, link: "../../etc/shadow"}}, want: ErrUnsafeEntry, only: []string{"tar.gz", "tar"}},
		{name: "hard link to missing", entries: []tEntry{{name: "h", typ: tar.TypeLink, link: "nothing"}}, want: ErrUnsafeEntry, only: []string{"tar.gz", "tar"}},
		{name: "hard link to symlink", entries: []tEntry{
			{name: "l", typ: tar.TypeSymlink, link: "x"},
			{name: "h", typ: tar.TypeLink, link: "l"},
		}, links: true, want: ErrUnsafeEntry, entry: "h", only: []string{"tar.gz", "tar"}},
		{name: "char device", entries: []tEntry{{name: "dev/null", typ: tar.TypeChar}}, want: ErrUnsafeEntry, entry: "dev/null"},
		{name: "block device", entries: []tEntry{{name: "dev/sda", typ: tar.TypeBlock}}, want: ErrUnsafeEntry},
		{name: "fifo", entries: []tEntry{{name: "p", typ: tar.TypeFifo}}, want: ErrUnsafeEntry, entry: "p"},
		{name: "duplicate file", entries: []tEntry{{name: "docker/dockerd", body: "a"}, {name: "docker/dockerd", body: "b"}}, want: ErrUnsafeEntry, entry: "docker/dockerd"},
		{name: "duplicate by case", entries: []tEntry{{name: "docker/dockerd", body: "a"}, {name: "docker/DockerD", body: "b"}}, want: ErrUnsafeEntry, entry: "docker/DockerD"},
		{name: "duplicate by slashes", entries: []tEntry{{name: "docker/dockerd", body: "a"}, {name: "./docker//dockerd", body: "b"}}, want: ErrUnsafeEntry},
		{name: "duplicate folder", entries: []tEntry{{name: "d/", typ: tar.TypeDir}, {name: "d/", typ: tar.TypeDir}}, want: ErrUnsafeEntry},
		{name: "file then folder", entries: []tEntry{{name: "d", body: "x"}, {name: "d/", typ: tar.TypeDir}}, want: ErrUnsafeEntry},
		{name: "file under file", entries: []tEntry{{name: "d", body: "x"}, {name: "d/f", body: "y"}}, want: ErrUnsafeEntry, entry: "d/f"},
		{name: "folder case mismatch", entries: []tEntry{{name: "docker/a", body: "x"}, {name: "Docker/b", body: "y"}}, want: ErrUnsafeEntry, entry: "Docker/b"},

		{name: "entry over limit", entries: []tEntry{{name: "big", body: big}}, lim: small, want: ErrTooLarge, entry: "big"},
		{name: "total over limit", entries: []tEntry{
			{name: "a", body: big[:1000]}, {name: "b", body: big[:1000]}, {name: "c", body: big[:1000]}, {name: "d", body: big[:1000]},
		}, lim: small, want: ErrTooLarge, entry: "d"},
		{name: "too many entries", entries: []tEntry{
			{name: "1"}, {name: "2"}, {name: "3"}, {name: "4"}, {name: "5"}, {name: "6"},
		}, lim: small, want: ErrTooLarge},
		// Issue 9, item 11: PAX global headers were skipped uncounted, so
		// an archive could hold any number of them.
		{name: "PAX global headers count as entries", entries: []tEntry{
			globalHeader, globalHeader, globalHeader, globalHeader, globalHeader, {name: "f", body: "x"},
		}, lim: small, want: ErrTooLarge, entry: "f", only: []string{"tar.gz", "tar"}},
		{name: "PAX global headers alone count", entries: slices.Repeat([]tEntry{globalHeader}, 6),
			lim: small, want: ErrTooLarge, entry: "pax_global_header", only: []string{"tar.gz", "tar"}},
		{name: "PAX global header over the header budget", entries: []tEntry{
			{name: "pax_global_header", typ: tar.TypeXGlobalHeader, pax: map[string]string{"comment": strings.Repeat("g", maxHeaderBytes)}},
			{name: "f", body: "x"},
		}, want: ErrTooLarge, only: []string{"tar.gz", "tar"}},
		{name: "PAX records over the header budget", entries: []tEntry{
			{name: "f", body: "x"},
			{name: "g", body: "y", pax: map[string]string{"BERTH.pad": strings.Repeat("p", maxHeaderBytes)}},
		}, want: ErrTooLarge, entry: "f", only: []string{"tar.gz", "tar"}},
	}
	for _, tc := range tests {
		for _, f := range formats {
			if len(tc.only) > 0 && !contains(tc.only, f.name) {
				continue
			}
			t.Run(f.name+"/"+tc.name, func(t *testing.T) {
				if tc.links && !canSymlink(t) {
					t.Skip("this process may not create symbolic links")
				}
				b := f.build(t, tc.entries...)
				dest := filepath.Join(t.TempDir(), "out", "v1")
				err := Extract(context.Background(), writeSrc(t, b), dest, tc.lim)
				checkRefused(t, err, tc.want, dest)
				if tc.entry != "" && err != nil && !strings.Contains(err.Error(), `"`+tc.entry+`"`) {
					t.Errorf("error %q does not name entry %q", err, tc.entry)
				}
			})
		}
	}
}

// globalHeader is a PAX global header as git archive writes one.
var globalHeader = tEntry{name: "pax_global_header", typ: tar.TypeXGlobalHeader, pax: map[string]string{"comment": "0123456789abcdef0123456789abcdef01234567"}}

// A PAX global header (git archive writes one) writes nothing and does not
// stop the archive from extracting; it counts as an entry (see tarSource).
func TestExtractGlobalHeader(t *testing.T) {
	for _, f := range []format{{"tar.gz", tarGz}, {"tar", tarBytes}} {
		t.Run(f.name, func(t *testing.T) {
			src := writeSrc(t, f.build(t, append([]tEntry{globalHeader}, dockerLayout...)...))
			dest := filepath.Join(t.TempDir(), "v1")
			if err := Extract(context.Background(), src, dest, Limits{MaxEntries: len(dockerLayout) + 1}); err != nil {
				t.Fatalf("Extract: %v", err)
			}
			if got := tree(t, dest); len(got) != len(dockerLayout) {
				t.Errorf("tree = %q; want the %d entries of the Docker layout only", got, len(dockerLayout))
			}
		})
	}
}

// Headers that archive/tar folds into the next entry (PAX extended
// headers, GNU long names) are not entries, so the entry limit cannot see
// a run of them: the bytes read to reach one entry are bounded instead.
// Here 200 extended headers come before one small file.
func TestExtractRefusesHeaderChains(t *testing.T) {
	one := tarBytes(t, tEntry{name: "f", body: "x", pax: map[string]string{"BERTH.pad": strings.Repeat("p", 900)}})
	// one is [x header][x records][f header][f content][end]; the first two
	// are 512 + 1024 bytes.
	if one[156] != tar.TypeXHeader {
		t.Fatalf("test archive does not start with a PAX extended header (type %q)", one[156])
	}
	chain := append(bytes.Repeat(one[:1536], 200), one...)
	for _, f := range []struct {
		name string
		b    []byte
	}{{"tar", chain}, {"tar.gz", gzipBytes(t, chain)}} {
		t.Run(f.name, func(t *testing.T) {
			dest := filepath.Join(t.TempDir(), "v1")
			err := Extract(context.Background(), writeSrc(t, f.b), dest, Limits{})
			checkRefused(t, err, ErrTooLarge, dest)
		})
	}
	// The same file behind one extended header extracts.
	dest := filepath.Join(t.TempDir(), "v1")
	if err := Extract(context.Background(), writeSrc(t, one), dest, Limits{}); err != nil {
		t.Fatalf("Extract of one extended header: %v", err)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// checkRefused checks an error of the right class, and that nothing is
// left at dest or beside it.
func checkRefused(t *testing.T, err, want error, dest string) {
	t.Helper()
	if err == nil {
		t.Fatalf("Extract succeeded; want %v", want)
	}
	t.Logf("Extract: %v", err)
	if want != nil && !errors.Is(err, want) {
		// A lie about sizes may surface as a corrupt archive instead.
		if !(errors.Is(want, ErrTooLarge) && errors.Is(err, ErrCorrupt)) {
			t.Errorf("Extract error = %v; want errors.Is %v", err, want)
		}
	}
	if _, serr := os.Lstat(dest); !errors.Is(serr, fs.ErrNotExist) {
		t.Errorf("dest exists after a failed Extract (%v)", serr)
	}
	assertNoPartials(t, dest)
}

func assertNoPartials(t *testing.T, dest string) {
	t.Helper()
	ents, err := os.ReadDir(filepath.Dir(dest))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return
		}
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.Contains(e.Name(), partialMarker) {
			t.Errorf("temporary folder %s left behind", e.Name())
		}
	}
}

func TestExtractCorrupt(t *testing.T) {
	good := tarGz(t, dockerLayout...)
	trailer := append([]byte(nil), good...)
	trailer[len(trailer)-5] ^= 0xff // CRC-32 of the gzip trailer
	goodZip := zipOf(t, dockerLayout...)
	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"truncated gzip", good[:len(good)/2], ErrCorrupt},
		{"truncated gzip header", good[:5], ErrCorrupt},
		{"bad gzip checksum", trailer, ErrCorrupt},
		{"gzip of garbage", gzipBytes(t, []byte(strings.Repeat("garbage!", 200))), ErrCorrupt},
		{"truncated tar in gzip", gzipBytes(t, tarBytes(t, dockerLayout...)[:1000]), ErrCorrupt},
		{"truncated zip", goodZip[:len(goodZip)-30], ErrCorrupt},
		{"zip with no central directory", goodZip[:len(goodZip)/2], ErrCorrupt},
		{"unknown format", []byte("#!/bin/sh\necho not an archive\n"), ErrUnknownFormat},
		{"empty file", nil, ErrUnknownFormat},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dest := filepath.Join(t.TempDir(), "v1")
			err := Extract(context.Background(), writeSrc(t, tc.data), dest, Limits{})
			checkRefused(t, err, tc.want, dest)
		})
	}
}

func TestExtractZipFlippedBody(t *testing.T) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.CreateHeader(&zip.FileHeader{Name: "docker/dockerd.exe", Method: zip.Store})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("MZ this program cannot be run in DOS mode")); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	i := bytes.Index(b, []byte("DOS mode"))
	if i < 0 {
		t.Fatal("body not found in the zip")
	}
	b[i] ^= 0x55
	dest := filepath.Join(t.TempDir(), "v1")
	err = Extract(context.Background(), writeSrc(t, b), dest, Limits{})
	checkRefused(t, err, ErrCorrupt, dest)
}

func TestExtractZipLiesAboutSize(t *testing.T) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	body := []byte(strings.Repeat("x", 4096))
	w, err := zw.CreateRaw(&zip.FileHeader{
		Name: "docker/dockerd.exe", Method: zip.Store,
		CRC32:              crc32.ChecksumIEEE(body[:10]),
		CompressedSize64:   uint64(len(body)),
		UncompressedSize64: 10,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(body); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	for _, lim := range []Limits{{}, {MaxEntryBytes: 100}} {
		dest := filepath.Join(t.TempDir(), "v1")
		err = Extract(context.Background(), writeSrc(t, buf.Bytes()), dest, lim)
		checkRefused(t, err, ErrTooLarge, dest)
	}
}

func TestExtractEmptyArchive(t *testing.T) {
	// An empty plain tar is all zeros: nothing tells it from any other
	// file, so only the compressed formats are tried.
	for _, f := range formats[:2] {
		t.Run(f.name, func(t *testing.T) {
			dest := filepath.Join(t.TempDir(), "v1")
			if err := Extract(context.Background(), writeSrc(t, f.build(t)), dest, Limits{}); err != nil {
				t.Fatalf("Extract: %v", err)
			}
			if got := tree(t, dest); len(got) != 0 {
				t.Errorf("tree = %v; want empty", got)
			}
		})
	}
}

func TestExtractDestExists(t *testing.T) {
	for _, existing := range []string{"folder", "empty folder", "file"} {
		t.Run(existing, func(t *testing.T) {
			dest := filepath.Join(t.TempDir(), "v1")
			switch existing {
			case "folder":
				if err := os.MkdirAll(filepath.Join(dest, "keep"), 0o755); err != nil {
					t.Fatal(err)
				}
			case "empty folder":
				if err := os.Mkdir(dest, 0o755); err != nil {
					t.Fatal(err)
				}
			case "file":
				if err := os.WriteFile(dest, []byte("x"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			err := Extract(context.Background(), writeSrc(t, tarGz(t, dockerLayout...)), dest, Limits{})
			if !errors.Is(err, fs.ErrExist) {
				t.Fatalf("Extract error = %v; want fs.ErrExist", err)
			}
			assertNoPartials(t, dest)
		})
	}
}

func TestExtractCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dest := filepath.Join(t.TempDir(), "v1")
	err := Extract(ctx, writeSrc(t, tarGz(t, dockerLayout...)), dest, Limits{})
	checkRefused(t, err, context.Canceled, dest)
}

func TestCleanPartials(t *testing.T) {
	parent := t.TempDir()
	dest := filepath.Join(parent, "v1")
	stale := filepath.Join(parent, ".v1"+partialMarker+"123")
	other := filepath.Join(parent, ".v2"+partialMarker+"123")
	for _, d := range []string{stale, other} {
		if err := os.MkdirAll(filepath.Join(d, "docker"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := CleanPartials(dest); err != nil {
		t.Fatalf("CleanPartials: %v", err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stale partial still there (%v)", err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("another version's partial was removed: %v", err)
	}
}

func TestCleanName(t *testing.T) {
	tests := []struct {
		in, want string
		bad      bool
	}{
		{in: "docker/dockerd", want: "docker/dockerd"},
		{in: "./docker//dockerd", want: "docker/dockerd"},
		{in: `docker\dockerd.exe`, want: "docker/dockerd.exe"},
		{in: "docker/", want: "docker"},
		{in: "./", want: ""},
		{in: "a..b/c...d", want: "a..b/c...d"},
		{in: "COM10", want: "COM10"},
		{in: "console", want: "console"},
		{in: "", bad: true},
		{in: "..", bad: true},
		{in: "a/..", bad: true},
		{in: "/a", bad: true},
		{in: "C:", bad: true},
		{in: "com1", bad: true},
		{in: "LPT9.log", bad: true},
		{in: "CONOUT$", bad: true},
		{in: "a ", bad: true},
		{in: "a?", bad: true},
		{in: "a\x00b", bad: true},
	}
	for _, tc := range tests {
		got, err := cleanName(tc.in)
		if tc.bad {
			if !errors.Is(err, ErrUnsafeEntry) {
				t.Errorf("cleanName(%q) = %q, %v; want ErrUnsafeEntry", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("cleanName(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}
