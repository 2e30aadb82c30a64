//go:build !windows

package containerd

import (
	"context"
	"fmt"
	"net"
)

func dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if network == "npipe" {
		return nil, fmt.Errorf("named pipe %s: named pipes exist only on Windows; use a unix:// endpoint", addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}
