// Package containerd is the containerd flavor: how containerd of an
// unpacked release runs, the config.toml and the registry host files
// (certs.d/<host>/hosts.toml) Berth owns, which point containerd at the
// image cache for every registry, and the probe of containerd's gRPC API.
package containerd

import (
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
)

// HostFile is one rendered certs.d/<host>/hosts.toml, Path relative to the
// certs.d folder.
type HostFile struct {
	Path string
	Data []byte
}

// RenderHosts writes a hosts.toml for each registry, and for "_default"
// (every other registry), that tries the cache at mirror (host:port) first
// and the registry itself after: containerd adds ?ns=<registry> to mirror
// requests, which the cache reads as the upstream's name. upstreams maps a
// registry to its endpoint when not the usual one. With mirror empty (the
// cache disabled) the files name only the registry, so that containerd
// stops using a cache that was turned off.
// goos picks the folder naming: containerd looks a registry with a port up
// as "host:port" on Linux and as "host_port_" on Windows, where a file name
// cannot hold a colon.
func RenderHosts(goos, mirror string, registries []string, upstreams map[string]string) []HostFile {
	names := slices.Clone(registries)
	if !slices.Contains(names, "docker.io") {
		names = append(names, "docker.io")
	}
	slices.Sort(names)
	out := []HostFile{{Path: path.Join("_default", "hosts.toml"), Data: hostsTOML("", mirror)}}
	for _, r := range names {
		server := upstreams[r]
		if server == "" {
			server = defaultServer(r)
		}
		out = append(out, HostFile{Path: path.Join(dirName(goos, r), "hosts.toml"), Data: hostsTOML(server, mirror)})
	}
	return out
}

func defaultServer(registry string) string {
	if registry == "docker.io" {
		return "https://registry-1.docker.io"
	}
	return "https://" + registry
}

// dirName is containerd's folder name for a registry on goos.
func dirName(goos, registry string) string {
	if h, p, ok := strings.Cut(registry, ":"); ok && goos == "windows" {
		return h + "_" + p + "_"
	}
	return registry
}

func hostsTOML(server, mirror string) []byte {
	var b strings.Builder
	b.WriteString("# Written by berth-agent; changes are overwritten.\n")
	if server != "" {
		fmt.Fprintf(&b, "server = %s\n", strconv.Quote(server))
	}
	if mirror == "" {
		return []byte(b.String())
	}
	fmt.Fprintf(&b, "\n[host.%s]\n", strconv.Quote("http://"+mirror))
	b.WriteString("  capabilities = [\"pull\", \"resolve\"]\n")
	return []byte(b.String())
}
