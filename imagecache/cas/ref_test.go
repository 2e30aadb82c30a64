package cas

import (
	"strings"
	"testing"
)

func TestCheckRefName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"tags/docker.io/library/busybox/latest", true},
		{"tags/127.0.0.1:5000/a/b/V1.0", true},
		{"...", true},
		{"a.", true},
		{"ünïcødé", true},
		{strings.Repeat("a", 512), true},
		{strings.Repeat("a", 513), false},
		{"", false},
		{"/abs", false},
		{"../x", false},
		{"a/../x", false},
		{"a/./x", false},
		{".", false},
		{"a//b", false},
		{"a/", false},
		{`a\b`, false},
		{"a\x00b", false},
		{"a\nb", false},
		{"a\x7fb", false},
		{"\xff", false},
	} {
		if err := CheckRefName(tc.name); (err == nil) != tc.ok {
			t.Errorf("CheckRefName(%.40q) = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}

func FuzzCheckRefName(f *testing.F) {
	f.Add("tags/docker.io/library/busybox/latest")
	f.Add("../x")
	f.Fuzz(func(t *testing.T, s string) {
		if CheckRefName(s) != nil {
			return
		}
		for seg := range strings.SplitSeq(s, "/") {
			if seg == "" || seg == "." || seg == ".." {
				t.Fatalf("accepted %q with segment %q", s, seg)
			}
		}
		if strings.ContainsAny(s, "\\\x00") {
			t.Fatalf("accepted %q", s)
		}
	})
}
