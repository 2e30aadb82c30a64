//go:build !windows

package winhost

import "context"

// Build returns ErrNotWindows: there is no Windows build to read.
func Build() (OSVersion, error) { return OSVersion{}, ErrNotWindows }

// ContainersFeature returns ErrNotWindows.
func ContainersFeature(context.Context) (FeatureState, error) { return "", ErrNotWindows }

// Feature returns ErrNotWindows.
func Feature(context.Context, string) (FeatureState, error) { return "", ErrNotWindows }

// EnableContainersFeature returns ErrNotWindows.
func EnableContainersFeature(context.Context, bool) (bool, error) { return false, ErrNotWindows }

// HCSCheck returns ErrNotWindows.
func HCSCheck(context.Context) (CheckResult, error) { return CheckResult{}, ErrNotWindows }

// HNSCheck returns ErrNotWindows.
func HNSCheck(context.Context) (CheckResult, error) { return CheckResult{}, ErrNotWindows }
