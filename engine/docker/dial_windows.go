package docker

import (
	"context"
	"net"

	"github.com/Microsoft/go-winio"
)

func dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if network == "npipe" {
		return winio.DialPipeContext(ctx, addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}
