package archive

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"golang.org/x/sys/windows"
)

// syncDir is a no-op: Windows cannot flush a folder handle, and NTFS
// journals the folder entries of a rename.
func syncDir(string) error { return nil }

// renameNoReplace renames a folder, failing if newpath exists. Antivirus
// and indexing services briefly open new files; a rename refused for
// that reason is retried for a few seconds.
func renameNoReplace(oldpath, newpath string) error {
	delay := 50 * time.Millisecond
	for attempt := 0; ; attempt++ {
		if _, err := os.Lstat(newpath); err == nil {
			return fmt.Errorf("%s: %w", newpath, fs.ErrExist)
		}
		err := os.Rename(oldpath, newpath)
		if err == nil {
			return nil
		}
		if attempt >= 7 || !(errors.Is(err, windows.ERROR_ACCESS_DENIED) || errors.Is(err, windows.ERROR_SHARING_VIOLATION)) {
			return err
		}
		time.Sleep(delay)
		delay *= 2
	}
}
