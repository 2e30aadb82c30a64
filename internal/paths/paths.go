// Package paths holds the per-platform defaults of where Berth keeps its
// files: the config file, the state folder and the engine's API address.
package paths

import (
	"os"
	"path/filepath"
)

// ConfigEnv names the environment variable that overrides the config path.
const ConfigEnv = "BERTH_CONFIG"

// ConfigFile returns the config path to use when no --config flag is given:
// BERTH_CONFIG if set, else the platform default.
func ConfigFile() string {
	if p := os.Getenv(ConfigEnv); p != "" {
		return p
	}
	return defaultConfigFile
}

// StateDir returns the platform's default state folder.
func StateDir() string { return defaultStateDir }

// ControlDB is berth-control's SQLite file when --db is not given.
func ControlDB() string { return defaultControlDB }

// EngineEndpoint returns the default API address of the Docker engine.
func EngineEndpoint() string { return defaultDockerEndpoint }

// ContainerdEndpoint returns the default API address of containerd: the
// socket or pipe containerd itself listens on when not told otherwise.
func ContainerdEndpoint() string { return defaultContainerdEndpoint }

// Under the state folder.
const (
	EnginesDir  = "engines"
	CacheDir    = "cache"
	DBFile      = "agent.db"
	ReleasesDir = "releases"
	LogsDir     = "logs"
)

// Engines returns the folder that holds every installed version of a flavor.
func Engines(stateDir, flavor string) string {
	return filepath.Join(stateDir, EnginesDir, flavor)
}
