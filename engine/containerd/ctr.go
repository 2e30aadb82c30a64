package containerd

import "path/filepath"

// Namespaces images are pulled into. containerd keeps images per
// namespace, and each client reads one: the kubelet (through the CRI
// plugin) reads k8s.io, ctr and nerdctl read default unless told.
const (
	NamespaceCRI     = "k8s.io"
	NamespaceDefault = "default"
)

// CtrPath is the ctr of the package unpacked in versionDir: the engine's
// own client, of the same version as the containerd it talks to.
func CtrPath(versionDir, goos string) string {
	exe := "ctr"
	if goos == "windows" {
		exe = "ctr.exe"
	}
	return filepath.Join(versionDir, "bin", exe)
}

// Address is what `ctr --address` takes for an engine endpoint: the unix
// socket's path, or on Windows the named pipe's (\\.\pipe\…).
func Address(endpoint string) (string, error) {
	_, addr, err := parseEndpoint(endpoint)
	return addr, err
}

// ImageNamespace is the namespace Berth pulls images into for a containerd
// configured with settings (engine.settings): k8s.io, where the kubelet
// looks for them, unless the settings disable the CRI plugin — then
// nothing reads k8s.io, and default is where ctr and nerdctl look.
func ImageNamespace(settings map[string]any) string {
	// normalize: YAML gives []any, Go callers []string.
	disabled, _ := normalize(settings["disabled_plugins"]).([]any)
	for _, p := range disabled {
		// "cri" is the version 1 name (Docker's containerd.io package
		// writes it), the full ID the version 2 one.
		if p == "cri" || p == criPlugin {
			return NamespaceDefault
		}
	}
	return NamespaceCRI
}
