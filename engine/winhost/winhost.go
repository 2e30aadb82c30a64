// Package winhost reads the facts and checks the health of a Windows
// container host through hcsshim and DISM: the OS build (which picks the
// matching Windows image), the Containers and Hyper-V features, the Host
// Compute Service (HCS, vmcompute) and the Host Networking Service (HNS).
//
// The functions that touch the host exist on Windows only; elsewhere they
// return ErrNotWindows. The logic around them — parsing DISM's output,
// judging what HCS and HNS return, choosing an image from a manifest list —
// is platform-neutral and tested everywhere.
package winhost

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrNotWindows is returned by every host function on other platforms.
var ErrNotWindows = errors.New("not a Windows host")

// OSVersion is a Windows version, major.minor.build.revision, where the
// revision is the update build revision (UBR) that grows with monthly
// updates.
type OSVersion struct {
	Major    uint8
	Minor    uint8
	Build    uint16
	Revision uint32
}

// String formats the version as Windows images spell their os.version,
// for example 10.0.20348.2227.
func (v OSVersion) String() string {
	return fmt.Sprintf("%d.%d.%d.%d", v.Major, v.Minor, v.Build, v.Revision)
}

// ParseOSVersion parses "major.minor.build" or "major.minor.build.revision",
// the form of an image's os.version.
func ParseOSVersion(s string) (OSVersion, error) {
	parts := strings.Split(strings.TrimSpace(s), ".")
	if len(parts) < 3 || len(parts) > 4 {
		return OSVersion{}, fmt.Errorf("parse Windows version %q: want major.minor.build[.revision]", s)
	}
	var nums [4]uint64
	bits := [4]int{8, 8, 16, 32}
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, bits[i])
		if err != nil {
			return OSVersion{}, fmt.Errorf("parse Windows version %q: %w", s, err)
		}
		nums[i] = n
	}
	return OSVersion{Major: uint8(nums[0]), Minor: uint8(nums[1]), Build: uint16(nums[2]), Revision: uint32(nums[3])}, nil
}

// Status is the verdict of a check, as telemetry reports it.
type Status string

// The verdicts of a check.
const (
	StatusOK   Status = "ok"
	StatusWarn Status = "warn"
	StatusFail Status = "fail"
)

// CheckResult is the outcome of HCSCheck or HNSCheck.
type CheckResult struct {
	Status  Status
	Message string
}

// FeatureState is the state of a Windows optional feature.
type FeatureState string

// The states of a feature that matter to provisioning. DISM's "Disable
// Pending" and "Disabled with Payload Removed" count as disabled.
const (
	FeatureEnabled       FeatureState = "enabled"
	FeatureDisabled      FeatureState = "disabled"
	FeatureEnablePending FeatureState = "enable-pending"
)

// Windows feature names, as DISM knows them.
const (
	FeatureContainers = "Containers"
	FeatureHyperV     = "Microsoft-Hyper-V"
)

// callWithContext runs f, which cannot be cancelled (HCS and HNS calls take
// no context), and returns when it does or when ctx is done. In the latter
// case f keeps running in its goroutine until the system call returns; its
// result is dropped into a buffered channel and collected by nobody.
func callWithContext[T any](ctx context.Context, f func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		v, err := f()
		ch <- result{v, err}
	}()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}
