package release

import (
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var versionOrder = []string{
	"1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1",
	"1.0.0", "v1.0.1", "1.2", "1.2.0", "1.10.0", "27.3.1", "27.10.0", "v27.10.1", "28.0.0-rc.1", "28.0.0",
	"100000000000000000000000.0.0",
}

func TestCompareVersions(t *testing.T) {
	got := slices.Clone(versionOrder)
	slices.Reverse(got)
	slices.SortFunc(got, CompareVersions)
	if diff := cmp.Diff(versionOrder, got); diff != "" {
		t.Errorf("sorted (-want +got):\n%s", diff)
	}
	for _, tt := range []struct {
		a, b string
		want int
	}{
		{"1.0.0+build.1", "1.0.0+build.2", -1}, // equal by semver, ordered by text
		{"v1.0.0", "1.0.0", 1},
		{"1.0.0", "1.0.0", 0},
		{"01.2", "1.2", -1},
	} {
		if got := CompareVersions(tt.a, tt.b); got != tt.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

func FuzzCompareVersions(f *testing.F) {
	for i := range versionOrder {
		f.Add(versionOrder[i], versionOrder[len(versionOrder)-1-i], versionOrder[(i+3)%len(versionOrder)])
	}
	f.Fuzz(func(t *testing.T, a, b, c string) {
		ab, ba := CompareVersions(a, b), CompareVersions(b, a)
		if ab != -ba {
			t.Fatalf("not antisymmetric: (%q,%q)=%d (%q,%q)=%d", a, b, ab, b, a, ba)
		}
		if (ab == 0) != (a == b) {
			t.Fatalf("CompareVersions(%q, %q) = %d", a, b, ab)
		}
		if ab <= 0 && CompareVersions(b, c) <= 0 && CompareVersions(a, c) > 0 {
			t.Fatalf("not transitive: %q <= %q <= %q but %q > %q", a, b, c, a, c)
		}
	})
}
