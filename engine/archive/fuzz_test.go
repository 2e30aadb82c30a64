package archive

import (
	"archive/tar"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fuzzLimits keep each run small.
var fuzzLimits = Limits{MaxEntryBytes: 64 << 10, MaxTotalBytes: 256 << 10, MaxEntries: 64}

// FuzzExtract feeds arbitrary bytes to Extract and checks that nothing is
// ever written outside the destination, that a failure leaves neither the
// destination nor a temporary folder, and that no link in a successful
// extraction leads out.
func FuzzExtract(f *testing.F) {
	seeds := [][]tEntry{
		dockerLayout,
		{{name: "../evil", body: "x"}},
		{{name: `..\evil`, body: "x"}},
		{{name: "/abs", body: "x"}},
		{{name: `C:\evil`, body: "x"}},
		{{name: "l", typ: tar.TypeSymlink, link: "../outside"}},
		{{name: "l", typ: tar.TypeSymlink, link: "sub"}, {name: "l/evil", body: "x"}},
		{{name: "d1/d2/s", typ: tar.TypeSymlink, link: "../.."}, {name: "d1/d2/t", typ: tar.TypeSymlink, link: "s/../secret"}},
		{{name: "a", typ: tar.TypeSymlink, link: "b"}, {name: "b", typ: tar.TypeSymlink, link: "a"}},
		{{name: "bin/c", mode: 0o4755, body: "c"}, {name: "bin/h", typ: tar.TypeLink, link: "bin/c"}},
		{{name: "h", typ: tar.TypeLink, link: "../secret"}},
		{{name: "dev", typ: tar.TypeChar}},
		{{name: "x", body: "a"}, {name: "X", body: "b"}},
	}
	for _, s := range seeds {
		f.Add(tarGz(f, s...))
		f.Add(zipOf(f, s...))
		f.Add(tarBytes(f, s...))
	}
	// PAX global and extended headers: tar only.
	f.Add(tarGz(f, globalHeader, globalHeader, tEntry{name: "f", body: "x", pax: map[string]string{"BERTH.x": "y"}}))
	f.Add([]byte{0x1f, 0x8b})
	f.Add([]byte("PK\x03\x04"))

	fsync = false
	f.Cleanup(func() { fsync = true })

	f.Fuzz(func(t *testing.T, data []byte) {
		sandbox := t.TempDir()
		src := filepath.Join(sandbox, "in", "pkg")
		secret := filepath.Join(sandbox, "secret")
		out := filepath.Join(sandbox, "out")
		dest := filepath.Join(out, "v1")
		for _, d := range []string{filepath.Dir(src), out} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(src, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(secret, []byte("secret"), 0o600); err != nil {
			t.Fatal(err)
		}

		err := Extract(context.Background(), src, dest, fuzzLimits)

		allowed := map[string]bool{
			sandbox: true, filepath.Dir(src): true, src: true, secret: true, out: true,
		}
		werr := filepath.WalkDir(sandbox, func(p string, d fs.DirEntry, werr error) error {
			if werr != nil {
				return werr
			}
			if allowed[p] {
				return nil
			}
			if err == nil && (p == dest || strings.HasPrefix(p, dest+string(filepath.Separator))) {
				return nil
			}
			t.Errorf("Extract (err=%v) wrote %s", err, p)
			return nil
		})
		if werr != nil {
			t.Fatal(werr)
		}
		if b, rerr := os.ReadFile(secret); rerr != nil || string(b) != "secret" {
			t.Fatalf("file outside the destination changed: %q, %v", b, rerr)
		}
		if err != nil {
			return
		}
		realDest, rerr := filepath.EvalSymlinks(dest)
		if rerr != nil {
			t.Fatal(rerr)
		}
		_ = filepath.WalkDir(dest, func(p string, d fs.DirEntry, werr error) error {
			if werr != nil || d.Type()&fs.ModeSymlink == 0 {
				return werr
			}
			target, lerr := os.Readlink(p)
			if lerr != nil {
				t.Fatal(lerr)
			}
			if filepath.IsAbs(target) {
				t.Errorf("link %s has the absolute target %s", p, target)
			}
			resolved, eerr := filepath.EvalSymlinks(p)
			if eerr != nil {
				if errors.Is(eerr, fs.ErrNotExist) {
					return nil // dangling, but inside
				}
				return nil // loops are refused by Extract; other errors say nothing of escapes
			}
			if resolved != realDest && !strings.HasPrefix(resolved, realDest+string(filepath.Separator)) {
				t.Errorf("link %s -> %s resolves outside the destination to %s", p, target, resolved)
			}
			return nil
		})
	})
}
