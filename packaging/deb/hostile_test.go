package deb_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthhq/berth/packaging/deb"
)

// TestHostileOptions: each wrong option fails before anything is written,
// with an error that names what to fix.
func TestHostileOptions(t *testing.T) {
	dir := t.TempDir()
	notELF := filepath.Join(dir, "berth-agent.exe")
	if err := os.WriteFile(notELF, []byte("MZ\x90\x00 not an ELF"), 0o755); err != nil {
		t.Fatal(err)
	}
	good := func() deb.Options {
		return deb.Options{Version: "1.2.3", Binary: anyELF(t), Out: filepath.Join(dir, "out.deb"), SourceDate: sourceDate}
	}
	for _, tc := range []struct {
		name   string
		change func(*deb.Options)
		want   string
	}{
		{"dash", func(o *deb.Options) { o.Version = "1.2.3-4-gabc1234" }, "1.2.3+4.gabc1234"},
		{"empty version", func(o *deb.Options) { o.Version = "" }, "Version is empty"},
		{"spaces", func(o *deb.Options) { o.Version = "1.2 .3" }, "no spaces"},
		{"leading v", func(o *deb.Options) { o.Version = "v1.2.3" }, "drop the v"},
		{"leading letter", func(o *deb.Options) { o.Version = "abc1234" }, "want a digit first"},
		{"newline", func(o *deb.Options) { o.Version = "1.2.3\nDepends: evil" }, "not a Debian version"},
		{"missing binary", func(o *deb.Options) { o.Binary = filepath.Join(dir, "nope") }, "does not exist; build berth-agent"},
		{"empty binary", func(o *deb.Options) { o.Binary = "" }, "Binary is empty"},
		{"windows exe", func(o *deb.Options) { o.Binary = notELF }, "not a Linux executable"},
		{"missing out folder", func(o *deb.Options) { o.Out = filepath.Join(dir, "dist", "x.deb") }, "mkdir -p " + filepath.Join(dir, "dist")},
		{"empty out", func(o *deb.Options) { o.Out = "" }, "Out is empty"},
		{"zero date", func(o *deb.Options) { o.SourceDate = time.Time{} }, "SOURCE_DATE_EPOCH"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := good()
			tc.change(&o)
			err := deb.Build(context.Background(), o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Build = %v, want an error containing %q", err, tc.want)
			}
			if _, statErr := os.Stat(o.Out); o.Out != "" && statErr == nil {
				t.Errorf("a refused build left %s behind", o.Out)
			}
		})
	}
}

func TestCancelledContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	out := filepath.Join(t.TempDir(), "x.deb")
	err := deb.Build(ctx, deb.Options{Version: "1.2.3", Binary: anyELF(t), Out: out, SourceDate: sourceDate})
	if err == nil || !strings.Contains(err.Error(), "canceled") {
		t.Fatalf("Build with a cancelled context = %v, want context canceled", err)
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("a cancelled build wrote %s", out)
	}
}
