package telemetry

import (
	"context"
	"fmt"
)

// Disk space thresholds of the engine's data root.
const (
	diskWarn = 0.10
	diskFail = 0.02
)

// DiskCheck checks the free space of the file system that holds path (the
// engine's data root): warn below 10 %, fail below 2 %.
func DiskCheck(path string) CheckFunc {
	return func(ctx context.Context) Check { return diskCheck(path) }
}

func diskCheck(path string) Check {
	c := Check{Name: "disk", Status: OK}
	free, total, err := DiskFree(path)
	if err != nil || total == 0 {
		c.Status, c.Message = Warn, fmt.Sprintf("cannot read free space of %s: %v", path, err)
		return c
	}
	share := float64(free) / float64(total)
	c.Message = fmt.Sprintf("%s: %.1f%% free (%d MiB)", path, share*100, free>>20)
	switch {
	case share < diskFail:
		c.Status = Fail
	case share < diskWarn:
		c.Status = Warn
	}
	return c
}
