//go:build !windows

package svc

import "context"

func setupHost(ctx context.Context, cfg Config, stateDir string) (HostSetup, error) {
	return HostSetup{}, ctx.Err()
}
