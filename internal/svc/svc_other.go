//go:build !linux && !windows

package svc

import (
	"context"
	"errors"
)

// hasServiceManager: Berth installs its service on Linux (systemd) and
// Windows (the SCM) only.
func hasServiceManager() bool { return false }

func (s *Service) install(context.Context) (InstallChange, error) {
	return "", errors.New("installing the service is supported on Linux and Windows only")
}
