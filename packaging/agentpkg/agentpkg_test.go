package agentpkg

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthhq/berth/engine/archive"
)

// A package unpacks with the agent's own extractor to the binary alone
// at the root, executable; the same input gives the same bytes whatever
// the time zone; another time gives other bytes.
func TestWriteUnpacksAndRepeats(t *testing.T) {
	epoch := time.Unix(1733300000, 0)
	bin := []byte("\x7fELF pretend agent " + strings.Repeat("x", 4096))
	for _, goos := range []string{"linux", "windows"} {
		t.Run(goos, func(t *testing.T) {
			var a, b, c bytes.Buffer
			if err := Write(&a, goos, bin, epoch); err != nil {
				t.Fatal(err)
			}
			if err := Write(&b, goos, bin, epoch.In(time.FixedZone("X", 5*3600))); err != nil {
				t.Fatal(err)
			}
			if err := Write(&c, goos, bin, epoch.Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(a.Bytes(), b.Bytes()) {
				t.Error("the same package in another time zone differs")
			}
			if bytes.Equal(a.Bytes(), c.Bytes()) {
				t.Error("the source date does not reach the package")
			}
			dir := t.TempDir()
			src := filepath.Join(dir, FileName("1.2.3", goos, "amd64"))
			if err := os.WriteFile(src, a.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			dest := filepath.Join(dir, "out")
			if err := archive.Extract(context.Background(), src, dest, archive.Limits{}); err != nil {
				t.Fatal(err)
			}
			ents, _ := os.ReadDir(dest)
			if len(ents) != 1 || ents[0].Name() != BinaryName(goos) {
				t.Fatalf("unpacked %v; want %s alone", ents, BinaryName(goos))
			}
			got, _ := os.ReadFile(filepath.Join(dest, BinaryName(goos)))
			fi, _ := os.Stat(filepath.Join(dest, BinaryName(goos)))
			if !bytes.Equal(got, bin) || fi.Mode().Perm()&0o100 == 0 {
				t.Errorf("unpacked binary: %d bytes, mode %v; want the input, executable", len(got), fi.Mode())
			}
		})
	}
}

func TestWriteRefuses(t *testing.T) {
	for _, tc := range []struct {
		goos string
		bin  []byte
	}{{"linux", nil}, {"darwin", []byte("x")}, {"../x", []byte("x")}} {
		if err := Write(&bytes.Buffer{}, tc.goos, tc.bin, time.Unix(0, 0)); err == nil {
			t.Errorf("Write(%q, %d bytes) succeeded", tc.goos, len(tc.bin))
		}
	}
}
