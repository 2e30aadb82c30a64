package clip

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestString(t *testing.T) {
	for _, tc := range []struct {
		in    string
		limit int
		want  string
	}{
		{"short", 10, "short"},
		{"exactly10!", 10, "exactly10!"},
		{"abcdefghijk", 10, "abcdefg…"},
		{"ééééé", 8, "éé…"},                // never cuts inside a rune
		{"a\xffb", 10, "a\uFFFDb"},         // invalid UTF-8 is replaced, not passed on
		{strings.Repeat("x", 100), 2, "…"}, // a limit below the mark gives the mark
		{"", 0, ""},
	} {
		got := String(tc.in, tc.limit)
		if got != tc.want {
			t.Errorf("String(%q, %d) = %q, want %q", tc.in, tc.limit, got, tc.want)
		}
		if !utf8.ValidString(got) {
			t.Errorf("String(%q, %d) = %q is not valid UTF-8", tc.in, tc.limit, got)
		}
	}
}

func FuzzString(f *testing.F) {
	f.Add("ééééé", 8)
	f.Add("a\xffb", 1)
	f.Fuzz(func(t *testing.T, s string, limit int) {
		if limit < 0 || limit > 1<<16 {
			return
		}
		got := String(s, limit)
		if !utf8.ValidString(got) {
			t.Fatalf("invalid UTF-8 %q", got)
		}
		if len(got) > max(limit, len(Mark)) {
			t.Fatalf("String(%q, %d) is %d bytes", s, limit, len(got))
		}
	})
}
