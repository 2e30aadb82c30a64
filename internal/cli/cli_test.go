package cli

import (
	"flag"
	"io"
	"slices"
	"testing"
)

func TestParseInterspersed(t *testing.T) {
	for _, tc := range []struct {
		args []string
		pos  []string
		out  string
	}{
		{[]string{"upgrade", "1.0", "--output", "json"}, []string{"upgrade", "1.0"}, "json"},
		{[]string{"--output=json", "status"}, []string{"status"}, "json"},
		{[]string{"a", "--", "--output"}, []string{"a", "--output"}, "text"},
		{nil, nil, "text"},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		out := fs.String("output", "text", "")
		pos, err := ParseInterspersed(fs, tc.args)
		if err != nil || !slices.Equal(pos, tc.pos) || *out != tc.out {
			t.Errorf("ParseInterspersed(%q) = %q, output=%q, %v; want %q, %q", tc.args, pos, *out, err, tc.pos, tc.out)
		}
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if _, err := ParseInterspersed(fs, []string{"x", "--nope"}); err == nil {
		t.Error("an unknown flag after an argument was accepted")
	}
}
