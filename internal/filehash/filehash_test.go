package filehash

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSHA256(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name     string
		content  *string // nil: no file
		wantSum  string
		wantSize int64
		wantErr  error
	}{
		{"empty", ptr(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", 0, nil},
		{"abc", ptr("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", 3, nil},
		{"a megabyte", ptr(strings.Repeat("a", 1<<20)), "9bc1b2a288b26af7257a36277ae3816a7d4f16e89c1e7e77d0a5c48bad62b360", 1 << 20, nil},
		{"missing", nil, "", 0, fs.ErrNotExist},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.name)
			if tc.content != nil {
				if err := os.WriteFile(p, []byte(*tc.content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			sum, size, err := SHA256(p)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if sum != tc.wantSum || size != tc.wantSize {
				t.Errorf("SHA256 = %s, %d; want %s, %d", sum, size, tc.wantSum, tc.wantSize)
			}
		})
	}
}

func ptr(s string) *string { return &s }
