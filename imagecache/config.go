package imagecache

import (
	"github.com/berthhq/berth/imagecache/blobtier"
	"github.com/berthhq/berth/imagecache/upstream"
	"github.com/berthhq/berth/internal/units"
)

// Config is the cache block of agent.yaml: the pull-through registry
// mirror, its tiers and the registries it serves. Each tier owns the type
// of its own entries (blobtier.Config, upstream.Config).
type Config struct {
	// Enabled false: no mirror is started or wired into the engine.
	Enabled   bool                       `yaml:"enabled" json:"enabled"`
	Listen    string                     `yaml:"listen" json:"listen"`
	Local     LocalConfig                `yaml:"local" json:"local"`
	Storage   []blobtier.Config          `yaml:"storage" json:"storage"`
	Upstreams map[string]upstream.Config `yaml:"upstreams" json:"upstreams"`
	// Allow, when not empty, lists the only registries the cache serves
	// (names as in Upstreams); empty allows every registry.
	Allow []string `yaml:"allow" json:"allow"`
	// Prewarm lists image references pulled into the engine at provision
	// and whenever the list changes.
	Prewarm []string `yaml:"prewarm" json:"prewarm"`
}

// LocalConfig is cache.local: the on-disk blob tier.
type LocalConfig struct {
	// Dir is empty for <stateDir>/cache.
	Dir     string     `yaml:"dir" json:"dir"`
	MaxSize units.Size `yaml:"maxSize" json:"maxSize"`
}
