//go:build !linux && !windows

package provision

import "context"

func (s prereqStep) check(context.Context) (bool, string, error) {
	return true, "no prerequisites known for this platform", nil
}

func (s prereqStep) apply(context.Context) error { return nil }
