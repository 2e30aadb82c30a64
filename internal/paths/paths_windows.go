package paths

const (
	defaultConfigFile         = `C:\ProgramData\Berth\agent.yaml`
	defaultStateDir           = `C:\ProgramData\Berth`
	defaultControlDB          = `C:\ProgramData\Berth\control\control.db`
	defaultDockerEndpoint     = "npipe:////./pipe/docker_engine"
	defaultContainerdEndpoint = "npipe:////./pipe/containerd-containerd"
)
