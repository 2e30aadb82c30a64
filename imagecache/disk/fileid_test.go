//go:build linux

package disk

import (
	"bytes"
	"context"
	"os"
	"testing"

	"github.com/berthhq/berth/imagecache/cas"
)

// A blob is trusted as it is only while its file is unchanged since it was
// verified; any write through the file system ends the trust.
func TestTrustEndsWhenTheFileChanges(t *testing.T) {
	ctx := context.Background()
	d, err := New(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	body := bytes.Repeat([]byte("berth"), 1000)
	dg := cas.FromBytes(body)
	if err := d.Put(ctx, dg, int64(len(body)), bytes.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	trusted := func() bool {
		rc, _, err := d.Open(ctx, dg, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		return rc.(*blobReader).TrustedFile() != nil
	}
	if !trusted() {
		t.Fatal("a blob just stored through Put is not trusted")
	}
	// Same size, same bytes even: a write is a change.
	if err := os.WriteFile(d.blobPath(dg.Hex()), body, 0o644); err != nil {
		t.Fatal(err)
	}
	if trusted() {
		t.Fatal("a file written behind the tier's back is still trusted")
	}
	if err := d.MarkVerified(dg); err != nil {
		t.Fatal(err)
	}
	if !trusted() {
		t.Fatal("MarkVerified did not restore trust")
	}
}

// Adopt links a verified file in as a blob, without copying it.
func TestAdoptLinksAVerifiedFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	d, err := New(Options{Dir: dir + "/cache"})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	body := bytes.Repeat([]byte("spool"), 4000)
	dg := cas.FromBytes(body)
	spool := dir + "/cache/spool-file"
	if err := os.WriteFile(spool, body, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := d.Adopt(ctx, dg, int64(len(body)+1), spool); err == nil {
		t.Fatal("adopted a file of the wrong size")
	}
	if err := d.Adopt(ctx, dg, int64(len(body)), spool); err != nil {
		t.Fatal(err)
	}
	a, _ := os.Stat(spool)
	b, _ := os.Stat(d.blobPath(dg.Hex()))
	if !os.SameFile(a, b) {
		t.Error("the blob is a copy, not a link of the spool file")
	}
	os.Remove(spool) // the spool goes; the blob stays
	rc, n, err := d.Open(ctx, dg, 0)
	if err != nil || n != int64(len(body)) {
		t.Fatalf("Open after adopt: %d, %v", n, err)
	}
	rc.Close()
}
