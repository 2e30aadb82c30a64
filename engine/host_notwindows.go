//go:build !windows

package engine

import "context"

// hostChecks: Linux hosts need nothing beyond the engine's own health.
func hostChecks(context.Context) []HostCheck { return nil }

// prerequisites: Linux kernels run containers without a feature to enable.
func prerequisites(context.Context) error { return nil }
