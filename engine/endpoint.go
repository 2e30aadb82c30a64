package engine

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
)

// ParseEndpoint splits an engine API endpoint (unix:///path,
// npipe:////./pipe/name, tcp://host:port) into a network and an address,
// accepting only the networks of allowed (all three when none is given);
// flavor names the engine in errors.
// A named pipe's slashes become backslashes, as Windows spells them.
func ParseEndpoint(endpoint, flavor string, allowed ...string) (network, addr string, err error) {
	if len(allowed) == 0 {
		allowed = []string{"unix", "npipe", "tcp"}
	}
	want := strings.Join(allowed, ", ")
	scheme, rest, ok := strings.Cut(endpoint, "://")
	if !ok || rest == "" {
		return "", "", fmt.Errorf("engine endpoint %q: want a URL such as unix:///run/docker.sock or npipe:////./pipe/docker_engine (schemes: %s)", endpoint, want)
	}
	for _, a := range allowed {
		if scheme != a {
			continue
		}
		if scheme == "npipe" {
			rest = strings.ReplaceAll(rest, "/", `\`)
		}
		return scheme, rest, nil
	}
	return "", "", fmt.Errorf("engine endpoint %q: scheme %q not supported for %s; want %s", endpoint, scheme, flavor, want)
}

// DialEndpoint connects to an engine API on network (from ParseEndpoint):
// unix sockets and TCP everywhere, named pipes on Windows through go-winio,
// as Docker's and containerd's own clients do.
func DialEndpoint(ctx context.Context, network, addr string) (net.Conn, error) {
	return dialEndpoint(ctx, network, addr)
}

// PackagedDaemon is the daemon of an unpacked release package: the
// executable exe in the package's bin folder, with that folder first on PATH
// so the daemon starts the shims, containerd and runc of its own release,
// and its output in logDir/<name>.log when logDir is set (the supervised
// runner's log; services keep their own).
func PackagedDaemon(goos, name, binDir, exe string, args []string, logDir string) Daemon {
	logName := exe + ".log"
	sep := ":"
	if goos == "windows" {
		exe, sep = exe+".exe", ";"
	}
	d := Daemon{
		Name: name,
		Path: filepath.Join(binDir, exe),
		Args: args,
		Env:  []string{"PATH=" + binDir + sep + os.Getenv("PATH")},
	}
	if logDir != "" {
		d.LogFile = filepath.Join(logDir, logName)
	}
	return d
}
