package atomicfile

// SyncDir is a no-op on Windows: NTFS journals renames, and a folder handle
// cannot be flushed.
func SyncDir(dir string) error { return nil }
