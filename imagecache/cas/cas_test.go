package cas

import (
	"errors"
	"strings"
	"testing"
)

func TestParseDigest(t *testing.T) {
	good := FromBytes([]byte("x"))
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{string(good), true},
		{"sha256:" + strings.Repeat("A", 64), false},
		{"sha512:" + strings.Repeat("a", 128), false},
		{"sha256:" + strings.Repeat("a", 63), false},
		{"sha256:../../etc/passwd" + strings.Repeat("a", 41), false},
		{"", false},
		{"sha256", false},
		{strings.Repeat("x", 10000), false},
	} {
		d, err := ParseDigest(tc.in)
		if (err == nil) != tc.ok || (tc.ok && string(d) != tc.in) {
			t.Errorf("ParseDigest(%.40q) = %q, %v", tc.in, d, err)
		}
		if err != nil && len(err.Error()) > 200 {
			t.Errorf("error for a long input is %d bytes long: it must not echo it all", len(err.Error()))
		}
	}
}

func FuzzParseDigest(f *testing.F) {
	f.Add(string(FromBytes(nil)))
	f.Add("sha256:")
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDigest(s)
		if err == nil && (len(d.Hex()) != 64 || strings.ContainsAny(d.Hex(), "/.\\")) {
			t.Fatalf("accepted %q", s)
		}
	})
}

func TestVerifier(t *testing.T) {
	d := FromBytes([]byte("hello"))
	v := NewVerifier(d, 5)
	v.Write([]byte("hel"))
	v.Write([]byte("lo"))
	if err := v.Check(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		body string
		size int64
	}{{"hellO", 5}, {"hell", 5}, {"hello!", 6}, {"hello", 4}} {
		v := NewVerifier(d, tc.size)
		v.Write([]byte(tc.body))
		if err := v.Check(); !errors.Is(err, ErrDigestMismatch) {
			t.Errorf("%q size %d: Check = %v, want ErrDigestMismatch", tc.body, tc.size, err)
		}
	}
}
