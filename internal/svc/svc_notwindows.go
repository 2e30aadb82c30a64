//go:build !windows

package svc

import "context"

// stop asks the service manager to stop the service; systemctl waits for
// it, up to the unit's TimeoutStopSec.
func (s *Service) stop(context.Context) error { return s.svc.Stop() }

// exitedEarly has nothing to do on Unix: the RunWait function returns when
// the run function does, and Run exits with its error for systemd to
// restart the agent.
func (s *Service) exitedEarly() {}
