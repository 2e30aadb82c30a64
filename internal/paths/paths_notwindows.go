//go:build !windows

package paths

const (
	defaultConfigFile         = "/etc/berth/agent.yaml"
	defaultStateDir           = "/var/lib/berth"
	defaultControlDB          = "/var/lib/berth-control/control.db"
	defaultDockerEndpoint     = "unix:///var/run/docker.sock"
	defaultContainerdEndpoint = "unix:///run/containerd/containerd.sock"
)
