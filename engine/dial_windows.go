package engine

import (
	"context"
	"net"

	"github.com/Microsoft/go-winio"
)

func dialEndpoint(ctx context.Context, network, addr string) (net.Conn, error) {
	if network == "npipe" {
		return winio.DialPipeContext(ctx, addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}
