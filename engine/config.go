package engine

import (
	"github.com/berthhq/berth/engine/release"
	"github.com/berthhq/berth/internal/paths"
	"github.com/berthhq/berth/internal/units"
)

// Config is the engine block of agent.yaml: the container engine the
// agent installs, configures and watches. (ConfigInput is what Berth
// writes into the engine's own configuration files.)
type Config struct {
	// Managed false means: never install or change the engine, only watch it.
	Managed  bool           `yaml:"managed" json:"managed"`
	Flavor   string         `yaml:"flavor" json:"flavor"` // docker | containerd
	Version  string         `yaml:"version" json:"version"`
	Channel  string         `yaml:"channel" json:"channel"`
	Releases release.Config `yaml:"releases" json:"releases"`
	// Endpoint is the engine API address, unix:// or npipe://; empty is
	// the flavor's platform default (see APIEndpoint).
	Endpoint string `yaml:"endpoint" json:"endpoint"`
	// DataRoot is empty to keep the engine's own default.
	DataRoot string `yaml:"dataRoot" json:"dataRoot"`
	// Settings pass through into daemon.json / containerd config, merged
	// under Berth's own keys.
	Settings map[string]any `yaml:"settings" json:"settings"`
	Upgrade  UpgradeConfig  `yaml:"upgrade" json:"upgrade"`
}

// UpgradeConfig is engine.upgrade: how engine upgrades are judged.
type UpgradeConfig struct {
	// HealthTimeout is how long a new version has to become healthy before
	// the agent rolls back.
	HealthTimeout units.Duration `yaml:"healthTimeout" json:"healthTimeout"`
}

// APIEndpoint returns c.Endpoint, or when it is empty the platform's
// default API address of c.Flavor: Docker's socket or pipe, or
// containerd's.
func (c Config) APIEndpoint() string {
	if c.Endpoint != "" {
		return c.Endpoint
	}
	if c.Flavor == "containerd" {
		return paths.ContainerdEndpoint()
	}
	return paths.EngineEndpoint()
}
