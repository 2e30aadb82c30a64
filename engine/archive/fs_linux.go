package archive

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// renameNoReplace renames a folder, failing if newpath exists, even as an
// empty folder, which a plain rename(2) would silently replace.
func renameNoReplace(oldpath, newpath string) error {
	err := unix.Renameat2(unix.AT_FDCWD, oldpath, unix.AT_FDCWD, newpath, unix.RENAME_NOREPLACE)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EEXIST), errors.Is(err, unix.ENOTEMPTY):
		return fmt.Errorf("%s: %w", newpath, fs.ErrExist)
	case errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EINVAL):
		// The kernel or the file system does not know the flag.
		if _, err := os.Lstat(newpath); err == nil {
			return fmt.Errorf("%s: %w", newpath, fs.ErrExist)
		}
		return os.Rename(oldpath, newpath)
	default:
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: err}
	}
}
