//go:build !windows

package disk

import "os"

// openShared opens path for reading. On Unix an open file never stops its
// name from being removed or replaced.
func openShared(path string) (*os.File, error) { return os.Open(path) }

// syncDir makes a rename or removal in dir durable.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
