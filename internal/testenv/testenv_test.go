package testenv

import "testing"

func TestBuffer(t *testing.T) {
	tests := []struct {
		name   string
		max    int
		writes []string
		want   string
	}{
		{"unbounded keeps all", 0, []string{"ab", "cd", "ef"}, "abcdef"},
		{"a write that crosses the bound is kept", 3, []string{"ab", "cd"}, "abcd"},
		{"writes past the bound are dropped", 3, []string{"ab", "cd", "ef"}, "abcd"},
		{"at the bound still writes", 2, []string{"ab", "cd", "ef"}, "abcd"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := &Buffer{Max: tc.max}
			for _, w := range tc.writes {
				if n, err := b.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write(%q) = %d, %v; want %d, nil", w, n, err, len(w))
				}
			}
			if got := b.String(); got != tc.want {
				t.Errorf("String() = %q, want %q", got, tc.want)
			}
			if got := b.Len(); got != len(tc.want) {
				t.Errorf("Len() = %d, want %d", got, len(tc.want))
			}
		})
	}
}

func TestTail(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		want string
	}{
		{"", 4, ""},
		{"abc", 4, "abc"},
		{"abcd", 4, "abcd"},
		{"abcdef", 4, "cdef"},
	}
	for _, tc := range tests {
		if got := Tail([]byte(tc.in), tc.n); got != tc.want {
			t.Errorf("Tail(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

func TestSoakRounds(t *testing.T) {
	tests := []struct {
		v       string
		want    int
		wantErr bool
	}{
		{"", 21, false},
		{"200", 200, false},
		{"1", 1, false},
		{"0", 0, true},
		{"-3", 0, true},
		{"many", 0, true},
		{"2e2", 0, true},
	}
	for _, tc := range tests {
		got, err := soakRounds(tc.v, 21)
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("soakRounds(%q, 21) = %d, %v; want %d, error %v", tc.v, got, err, tc.want, tc.wantErr)
		}
	}
}
