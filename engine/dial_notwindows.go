//go:build !windows

package engine

import (
	"context"
	"fmt"
	"net"
)

func dialEndpoint(ctx context.Context, network, addr string) (net.Conn, error) {
	if network == "npipe" {
		return nil, fmt.Errorf("named pipe %s: named pipes exist only on Windows; use a unix:// endpoint", addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}
