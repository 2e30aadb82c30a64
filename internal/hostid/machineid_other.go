//go:build !linux && !windows

package hostid

import (
	"errors"
	"runtime"
)

// MachineID has no source on this platform: Berth's hosts are Linux and
// Windows. Resolve then falls back to a random, remembered id.
func MachineID() (string, error) {
	return "", errors.New("machine id: not read on " + runtime.GOOS + "; set agent.id")
}

// OSBuild names the platform.
func OSBuild() string { return runtime.GOOS }
