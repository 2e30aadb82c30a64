//go:build !windows

package paths

const (
	defaultConfigFile         = "/etc/berth/agent.yaml"
	defaultStateDir           = "/var/lib/berth"
	defaultDockerEndpoint     = "unix:///var/run/docker.sock"
	defaultContainerdEndpoint = "unix:///run/containerd/containerd.sock"
)
