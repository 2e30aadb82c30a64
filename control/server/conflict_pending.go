package server

import "errors"

// errRolloutConflict stands for rollout.ErrConflict until the rollout
// package is on this branch.
var errRolloutConflict = errors.New("rollout conflict")
