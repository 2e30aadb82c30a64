//go:build !linux && !windows

package archive

import (
	"fmt"
	"io/fs"
	"os"
)

// renameNoReplace renames a folder, failing if newpath exists.
func renameNoReplace(oldpath, newpath string) error {
	if _, err := os.Lstat(newpath); err == nil {
		return fmt.Errorf("%s: %w", newpath, fs.ErrExist)
	}
	return os.Rename(oldpath, newpath)
}
