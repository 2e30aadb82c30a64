package paths

const (
	defaultConfigFile         = `C:\ProgramData\Berth\agent.yaml`
	defaultStateDir           = `C:\ProgramData\Berth`
	defaultDockerEndpoint     = "npipe:////./pipe/docker_engine"
	defaultContainerdEndpoint = "npipe:////./pipe/containerd-containerd"
)
