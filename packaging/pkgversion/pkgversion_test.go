package pkgversion

import (
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/berthhq/berth/control/wire"
	"github.com/berthhq/berth/engine/release"
)

var cases = []struct {
	in   string
	want Versions
}{
	{"v1.2.3", Versions{"1.2.3", "1.2.3", "1.2.3", true}},
	{"1.2.3", Versions{"1.2.3", "1.2.3", "1.2.3", true}},
	{"v0.0.1", Versions{"0.0.1", "0.0.1", "0.0.1", true}},
	{"v1.2.3-dirty", Versions{"1.2.3+dirty", "1.2.3+dirty", "1.2.3", false}},
	{"v1.2.3-4-gabc1234", Versions{"1.2.3+4.gabc1234", "1.2.3+4.gabc1234", "1.2.3.4", false}},
	{"v1.2.3-4-gabc1234-dirty", Versions{"1.2.3+4.gabc1234.dirty", "1.2.3+4.gabc1234.dirty", "1.2.3.4", false}},
	{"abc1234", Versions{"0.0.0+gabc1234", "0.0.0+gabc1234", "0.0.0", false}},
	{"abc1234-dirty", Versions{"0.0.0+gabc1234.dirty", "0.0.0+gabc1234.dirty", "0.0.0", false}},
	{"v2.0.0-rc.1", Versions{"2.0.0-rc.1", "2.0.0~rc.1", "2.0.0", true}},
	{"v2.0.0-rc-1-12-g0123abcd", Versions{"2.0.0-rc-1+12.g0123abcd", "2.0.0~rc.1+12.g0123abcd", "2.0.0.12", false}},
	{"1.2.3+local", Versions{"1.2.3+local", "1.2.3+local", "1.2.3", false}},
	{"255.255.65535", Versions{"255.255.65535", "255.255.65535", "255.255.65535", true}},
	{"v1.2.3-65535-gabcd", Versions{"1.2.3+65535.gabcd", "1.2.3+65535.gabcd", "1.2.3.65535", false}},
	{"0123456789abcdef0123456789abcdef01234567", Versions{"0.0.0+g0123456789abcdef0123456789abcdef01234567", "0.0.0+g0123456789abcdef0123456789abcdef01234567", "0.0.0", false}},
}

func TestParse(t *testing.T) {
	for _, tc := range cases {
		got, err := Parse(tc.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.in, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("Parse(%q) (-want +got):\n%s", tc.in, diff)
		}
	}
}

// What cannot be a version is refused with a message that says what is
// wanted; nothing hostile reaches a file name.
func TestParseRefuses(t *testing.T) {
	for _, tc := range []struct{ in, says string }{
		{"", "tag the commit"},
		{" ", "want a tag"},
		{"v1.2.3 ", "want a tag"},
		{"1.2.3\n", "want a tag"},
		{"dev", "want a tag"},
		{"v1.2", "want a tag"},
		{"v1.2.3.4", "want a tag"},
		{"../1.2.3", "want a tag"},
		{"1.2.3/../../etc", "want a tag"},
		{`1.2.3\x`, "want a tag"},
		{"release-2024-3-gabc1234", "want a tag"},
		{"v01.2.3", "want a tag"},
		{"-dirty", "want a tag"},
		{"v1.2.3-", "want a tag"},
		{"v1.2.3+", "want a tag"},
		{"v1.2.3-rc..1", "want a tag"},
		{"ABC1234", "want a tag"},
		{"v256.0.0", "at most 255.255.65535"},
		{"v1.256.0", "at most 255.255.65535"},
		{"v1.2.65536", "at most 255.255.65535"},
		{"v1.2.99999999999999999999", "at most 255.255.65535"},
		{"v1.2.3-65536-gabcd", "tag a release"},
		{strings.Repeat("1", 65), "over the limit"},
		{"v1.2.3-" + strings.Repeat("a", 50) + "-1-gabc1234-dirty", "over the limit"},
	} {
		_, err := Parse(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("Parse(%q) = %v; want an error saying %q", tc.in, err, tc.says)
		}
	}
}

// Builds after a tag are neither newer nor older than the tag to the
// agent's release ordering; a pre-release sorts before its release both
// for the agent and for dpkg (checked by the shape of the strings).
func TestOrdering(t *testing.T) {
	tag, _ := Parse("v1.2.3")
	after, _ := Parse("v1.2.3-4-gabc1234")
	pre, _ := Parse("v1.2.3-rc.1")
	next, _ := Parse("v1.2.4")
	if release.CompareVersions(pre.Name, tag.Name) >= 0 {
		t.Errorf("%s does not sort before %s", pre.Name, tag.Name)
	}
	if release.CompareVersions(after.Name, next.Name) >= 0 {
		t.Errorf("%s does not sort before %s", after.Name, next.Name)
	}
	if !strings.Contains(pre.Debian, "~") || strings.Contains(after.Debian, "~") {
		t.Errorf("Debian forms %q and %q: a pre-release needs a tilde, a later build none", pre.Debian, after.Debian)
	}
}

var (
	debianVersion = regexp.MustCompile(`^[0-9][0-9A-Za-z.+~]*$`)
	msiVersion    = regexp.MustCompile(`^([0-9]+)\.([0-9]+)\.([0-9]+)(?:\.([0-9]+))?$`)
)

func FuzzParse(f *testing.F) {
	for _, tc := range cases {
		f.Add(tc.in)
	}
	f.Add("v1.2.3-rc.1-4-gabc1234-dirty")
	f.Fuzz(func(t *testing.T, in string) {
		v, err := Parse(in)
		if err != nil {
			return
		}
		if err := wire.CheckVersion(v.Name); err != nil {
			t.Fatalf("Parse(%q).Name %q: the agent refuses it: %v", in, v.Name, err)
		}
		if !debianVersion.MatchString(v.Debian) || len(v.Debian) > MaxLen {
			t.Fatalf("Parse(%q).Debian %q: not a Debian upstream version without a revision", in, v.Debian)
		}
		m := msiVersion.FindStringSubmatch(v.MSI)
		if m == nil {
			t.Fatalf("Parse(%q).MSI %q: not N.N.N[.N]", in, v.MSI)
		}
		for i, lim := range []int{255, 255, 65535, 65535} {
			if n, _ := strconv.Atoi(m[i+1]); n > lim {
				t.Fatalf("Parse(%q).MSI %q: field %d over %d", in, v.MSI, i+1, lim)
			}
		}
		again, err := Parse(v.Name)
		if err != nil || again.Name != v.Name || again.Debian != v.Debian {
			t.Fatalf("Parse(%q) = %+v; parsing its name again gives %+v, %v", in, v, again, err)
		}
	})
}
