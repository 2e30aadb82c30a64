package telemetry

import (
	"strings"
	"testing"
)

func TestName(t *testing.T) {
	tests := []struct{ in, want string }{
		{"engine", "engine"},
		{"cache-tier blob:acct/container", "cache-tier-blob-acct-container"},
		{"-lead", "lead"},
		{"", "unnamed"},
		{"   ", "unnamed"},
		{"ünï", "n--"},
		{strings.Repeat("a", 300), strings.Repeat("a", MaxNameLen)},
	}
	for _, tt := range tests {
		if got := Name(tt.in); got != tt.want {
			t.Errorf("Name(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
