package containerd

import (
	"context"
	"net"

	"github.com/Microsoft/go-winio"
)

// dial reaches containerd's named pipe through go-winio, as containerd's
// own client does on Windows.
func dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if network == "npipe" {
		return winio.DialPipeContext(ctx, addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}
