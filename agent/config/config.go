// Package config holds the schema of agent.yaml, its defaults, and the
// strict loader that turns a file (YAML, or the same schema as JSON) into a
// Config or into a list of errors that name the key, the line and what is
// allowed.
//
// Each subsystem owns the type of its block (engine.Config,
// imagecache.Config, report.Config, azstore.Credential, …); this package
// composes them, holds every default, and checks values. Because it sees
// the whole schema, only cmd/agent, the composition root in agent/, and
// provision/ (the one-shot converge and the VM extension handler, which
// writes agent.yaml) may import it: a subsystem takes its own block, not
// the agent's config. internal/repocheck enforces that.
package config

import (
	"path/filepath"
	"time"

	"github.com/berthhq/berth/engine"
	"github.com/berthhq/berth/engine/release"
	"github.com/berthhq/berth/imagecache"
	"github.com/berthhq/berth/imagecache/blobtier"
	"github.com/berthhq/berth/imagecache/upstream"
	"github.com/berthhq/berth/internal/azstore"
	"github.com/berthhq/berth/internal/paths"
	"github.com/berthhq/berth/internal/units"
	"github.com/berthhq/berth/provision"
	"github.com/berthhq/berth/provision/selfupdate"
	"github.com/berthhq/berth/telemetry"
	"github.com/berthhq/berth/telemetry/report"
)

// Config is the whole of agent.yaml. Each section's type is owned by the
// package that acts on it; one loader checks them all.
//
// The yaml and json tags carry the same camelCase names: the file may be
// written in either form, and ShowYAML and ShowJSON print those names.
type Config struct {
	Agent     Agent                  `yaml:"agent" json:"agent"`
	Control   report.Config          `yaml:"control" json:"control"`
	Engine    engine.Config          `yaml:"engine" json:"engine"`
	Update    selfupdate.Config      `yaml:"update" json:"update"`
	Cache     imagecache.Config      `yaml:"cache" json:"cache"`
	Health    telemetry.HealthConfig `yaml:"health" json:"health"`
	Provision provision.Config       `yaml:"provision" json:"provision"`

	// Source says where the config was read from, so that Validate can name
	// the line of a bad value. See Source.
	Source *Source `yaml:"-" json:"-"`
}

// Agent identifies the host and says where its state lives. It is the
// agent's own block, so it lives with the agent's config.
type Agent struct {
	// ID defaults to the Azure VM's vmId from IMDS, else the machine id.
	ID string `yaml:"id" json:"id"`
	// StateDir defaults to the platform's state folder (see internal/paths).
	StateDir string `yaml:"stateDir" json:"stateDir"`
	// Labels are free key/values reported to control (pool, region, ring).
	Labels map[string]string `yaml:"labels" json:"labels"`
}

// Default returns the configuration used for every key a file leaves out.
func Default() Config {
	return Config{
		Agent:   Agent{Labels: map[string]string{}},
		Control: report.Config{Auth: report.AuthManagedIdentity, ReportInterval: units.Duration(60 * time.Second)},
		Engine: engine.Config{
			Managed:  true,
			Flavor:   "docker",
			Channel:  "stable",
			Releases: release.Config{Credential: defaultCredential()},
			Settings: map[string]any{},
			Upgrade:  engine.UpgradeConfig{HealthTimeout: units.Duration(120 * time.Second)},
		},
		Update: selfupdate.Config{HealthTimeout: units.Duration(selfupdate.DefaultHealthTimeout)},
		Cache: imagecache.Config{
			Enabled:   true,
			Listen:    "127.0.0.1:5050",
			Local:     imagecache.LocalConfig{MaxSize: 50 * units.GiB},
			Storage:   []blobtier.Config{},
			Upstreams: map[string]upstream.Config{},
			Allow:     []string{},
			Prewarm:   []string{},
		},
		Health: telemetry.HealthConfig{Listen: "127.0.0.1:8765"},
	}
}

// DefaultStorage is what each cache.storage entry starts from.
func DefaultStorage() blobtier.Config {
	return blobtier.Config{Credential: defaultCredential()}
}

// DefaultUpstream is what each cache.upstreams entry starts from, and the
// settings of a registry the file does not list.
func DefaultUpstream() upstream.Config { return upstream.DefaultConfig() }

// defaultCredential is what engine.releases and each cache.storage entry
// authenticate with when the file says nothing.
func defaultCredential() azstore.Credential {
	return azstore.Credential{Auth: azstore.AuthManagedIdentity}
}

// StateDir returns agent.stateDir, or the platform's state folder when it
// is empty.
func (c Config) StateDir() string {
	if c.Agent.StateDir != "" {
		return c.Agent.StateDir
	}
	return paths.StateDir()
}

// EngineEndpoint returns engine.endpoint, or when it is empty the
// platform's default API address of engine.flavor: Docker's socket or
// pipe, or containerd's.
func (c Config) EngineEndpoint() string { return c.Engine.APIEndpoint() }

// CacheDir returns cache.local.dir, or <stateDir>/cache when it is empty.
func (c Config) CacheDir() string {
	if c.Cache.Local.Dir != "" {
		return c.Cache.Local.Dir
	}
	return filepath.Join(c.StateDir(), paths.CacheDir)
}

// Effective returns c with every key whose empty value stands for a
// default filled in with what the agent uses on this platform: what
// `berth-agent config show` prints. It resolves agent.stateDir,
// engine.endpoint, cache.local.dir, each cache.upstreams entry's endpoint,
// and an empty auth (which engine.releases and cache.storage[] read as
// managed-identity, control and cache.upstreams as none). Keys only known
// at run time stay empty: agent.id (IMDS or the machine id),
// engine.version (control or the channel's newest) and engine.dataRoot
// (the engine's own default). c itself is not changed.
func (c Config) Effective() Config {
	e := c
	e.Agent.StateDir = c.StateDir()
	e.Engine.Endpoint = c.EngineEndpoint()
	e.Cache.Local.Dir = c.CacheDir()
	e.Control.Auth = orDefault(c.Control.Auth, report.AuthNone)
	e.Engine.Releases.Auth = orDefault(c.Engine.Releases.Auth, azstore.AuthManagedIdentity)
	if c.Cache.Storage != nil {
		e.Cache.Storage = make([]blobtier.Config, len(c.Cache.Storage))
		for i, s := range c.Cache.Storage {
			s.Auth = orDefault(s.Auth, azstore.AuthManagedIdentity)
			e.Cache.Storage[i] = s
		}
	}
	if c.Cache.Upstreams != nil {
		e.Cache.Upstreams = make(map[string]upstream.Config, len(c.Cache.Upstreams))
		for name, u := range c.Cache.Upstreams {
			u.Auth = orDefault(u.Auth, upstream.AuthNone)
			if u.Endpoint == "" {
				// A name Validate refuses has no endpoint to show; the
				// empty value lets that show too.
				u.Endpoint, _ = u.EndpointFor(name)
			}
			e.Cache.Upstreams[name] = u
		}
	}
	return e
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
