package distbuild

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Bad options fail before anything is built, saying what to set.
func TestBuildRefusesBadOptions(t *testing.T) {
	out := filepath.Join(t.TempDir(), "dist")
	for _, tc := range []struct {
		name string
		o    Options
		says string
	}{
		{"no version", Options{Out: out}, "VERSION=1.2.3"},
		{"not a git checkout", Options{Out: out, Version: "dev"}, "want a tag"},
		{"path in version", Options{Out: out, Version: "../../etc"}, "want a tag"},
		{"cert without key", Options{Out: out, Version: "v1.2.3", SignCert: "cs.pem"}, "SIGN_CERT and SIGN_KEY"},
		{"key without cert", Options{Out: out, Version: "v1.2.3", SignKey: "cs.key"}, "SIGN_CERT and SIGN_KEY"},
	} {
		tc.o.SourceDate = time.Unix(1733300000, 0)
		_, err := Build(context.Background(), tc.o)
		if err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: Build = %v; want an error saying %q", tc.name, err, tc.says)
		}
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a refused build made the output folder")
	}
}
