package main

import (
	"context"
	"errors"
)

// Windows always has the SCM: the detached agent does not exist there.
var errNoDetached = errors.New("the agent runs as a Windows service; there is no detached mode on Windows")

func startDetached(context.Context, detachedAgent) (int, error) { return 0, errNoDetached }

func detachedPid(string) (int, bool) { return 0, false }
