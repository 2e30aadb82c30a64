//go:build !linux && !windows

package provision

import (
	"context"
	"errors"
)

var errNoReboot = errors.New("berth cannot reboot this platform; reboot it by hand")

func bootID() (string, error) { return "", errNoReboot }

type platformRebooter struct{}

func (platformRebooter) Reboot(context.Context, string) error { return errNoReboot }
