// Package agentconfig holds the schema of agent.yaml, its defaults, and the
// strict loader that turns a file (YAML, or the same schema as JSON) into a
// Config or into a list of errors that name the key, the line and what is
// allowed.
package agentconfig

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/berthhq/berth/internal/paths"
)

// Config is the whole of agent.yaml. Each section is owned by the package
// that acts on it; the types live here so that one loader checks them all.
//
// The yaml and json tags carry the same camelCase names: the file may be
// written in either form, and ShowYAML and ShowJSON print those names.
type Config struct {
	Agent     Agent     `yaml:"agent" json:"agent"`
	Control   Control   `yaml:"control" json:"control"`
	Engine    Engine    `yaml:"engine" json:"engine"`
	Cache     Cache     `yaml:"cache" json:"cache"`
	Health    Health    `yaml:"health" json:"health"`
	Provision Provision `yaml:"provision" json:"provision"`

	// Source says where the config was read from, so that Validate can name
	// the line of a bad value. See Source.
	Source *Source `yaml:"-" json:"-"`
}

// Agent identifies the host and says where its state lives.
type Agent struct {
	// ID defaults to the Azure VM's vmId from IMDS, else the machine id.
	ID string `yaml:"id" json:"id"`
	// StateDir defaults to the platform's state folder (see internal/paths).
	StateDir string `yaml:"stateDir" json:"stateDir"`
	// Labels are free key/values reported to control (pool, region, ring).
	Labels map[string]string `yaml:"labels" json:"labels"`
}

// Control names the control endpoint and how the agent authenticates to it.
type Control struct {
	// URL is the control endpoint's https base; empty runs without one.
	URL  string `yaml:"url" json:"url"`
	Auth string `yaml:"auth" json:"auth"` // managed-identity | token | none
	// Audience is the scope of the managed-identity token.
	Audience string `yaml:"audience" json:"audience"`
	// ClientID picks a user-assigned managed identity.
	ClientID string `yaml:"clientId" json:"clientId"`
	// TokenFile holds the bearer token for auth: token.
	TokenFile      string   `yaml:"tokenFile" json:"tokenFile"`
	ReportInterval Duration `yaml:"reportInterval" json:"reportInterval"`
}

// Engine is the container engine the agent installs, configures and watches.
type Engine struct {
	// Managed false means: never install or change the engine, only watch it.
	Managed  bool     `yaml:"managed" json:"managed"`
	Flavor   string   `yaml:"flavor" json:"flavor"` // docker | containerd
	Version  string   `yaml:"version" json:"version"`
	Channel  string   `yaml:"channel" json:"channel"`
	Releases Releases `yaml:"releases" json:"releases"`
	// Endpoint is the engine API address, unix:// or npipe://.
	Endpoint string `yaml:"endpoint" json:"endpoint"`
	DataRoot string `yaml:"dataRoot" json:"dataRoot"`
	// Settings pass through into daemon.json / containerd config, merged
	// under Berth's own keys.
	Settings map[string]any `yaml:"settings" json:"settings"`
	Upgrade  Upgrade        `yaml:"upgrade" json:"upgrade"`
}

// Releases says where signed release metadata and packages come from.
type Releases struct {
	// URL is an https base (Azure Blob container or any server) or a folder.
	URL        string `yaml:"url" json:"url"`
	Credential `yaml:",inline"`
	// RootFile is the trusted initial TUF root shipped with the agent.
	RootFile string `yaml:"rootFile" json:"rootFile"`
}

// Credential says how to authenticate to Azure Blob Storage. Secrets live in
// files or the environment, never in the YAML.
//
// With auth shared-key the account key is read from KeyFile, or from the
// AZURE_STORAGE_KEY environment variable when KeyFile is empty; with auth
// sas the token is read from SASFile, else AZURE_STORAGE_SAS_TOKEN.
// Validate does not look at the environment (its answer must not depend on
// the shell it runs in); the tier that finds neither reports itself
// unhealthy.
type Credential struct {
	Auth     string `yaml:"auth" json:"auth"` // managed-identity | shared-key | sas | none
	ClientID string `yaml:"clientId" json:"clientId"`
	KeyFile  string `yaml:"keyFile" json:"keyFile"`
	SASFile  string `yaml:"sasFile" json:"sasFile"`
}

// Upgrade tunes engine upgrades.
type Upgrade struct {
	// HealthTimeout is how long a new version has to become healthy before
	// the agent rolls back.
	HealthTimeout Duration `yaml:"healthTimeout" json:"healthTimeout"`
}

// Cache configures the pull-through registry mirror.
type Cache struct {
	// Enabled false: no mirror is started or wired into the engine.
	Enabled   bool                `yaml:"enabled" json:"enabled"`
	Listen    string              `yaml:"listen" json:"listen"`
	Local     LocalCache          `yaml:"local" json:"local"`
	Storage   []Storage           `yaml:"storage" json:"storage"`
	Upstreams map[string]Upstream `yaml:"upstreams" json:"upstreams"`
	// Allow, when not empty, lists the only registries the cache serves
	// (names as in Upstreams); empty allows every registry.
	Allow []string `yaml:"allow" json:"allow"`
	// Prewarm lists image references pulled into the engine at provision
	// and whenever the list changes.
	Prewarm []string `yaml:"prewarm" json:"prewarm"`
}

// LocalCache is the on-disk blob tier.
type LocalCache struct {
	Dir     string `yaml:"dir" json:"dir"`
	MaxSize Size   `yaml:"maxSize" json:"maxSize"`
}

// Storage is one Azure Blob tier of the cache.
type Storage struct {
	URL        string `yaml:"url" json:"url"`
	Credential `yaml:",inline"`
}

// Upstream holds per-registry settings, keyed by the registry's name.
type Upstream struct {
	// Endpoint overrides the registry's address; plain http only to loopback.
	Endpoint string `yaml:"endpoint" json:"endpoint"`
	Auth     string `yaml:"auth" json:"auth"` // none | basic | managed-identity
	ClientID string `yaml:"clientId" json:"clientId"`
	// UsernameFile and PasswordFile hold basic credentials.
	UsernameFile string `yaml:"usernameFile" json:"usernameFile"`
	PasswordFile string `yaml:"passwordFile" json:"passwordFile"`
}

// Health configures the local health endpoint.
type Health struct {
	// Listen is the host:port of /healthz and /metrics.
	Listen string `yaml:"listen" json:"listen"`
}

// Provision tunes the one-shot converge.
type Provision struct {
	AllowReboot bool `yaml:"allowReboot" json:"allowReboot"`
}

// Default returns the configuration used for every key a file leaves out.
func Default() Config {
	return Config{
		Agent:   Agent{Labels: map[string]string{}},
		Control: Control{Auth: "managed-identity", ReportInterval: Duration(60 * time.Second)},
		Engine: Engine{
			Managed:  true,
			Flavor:   "docker",
			Channel:  "stable",
			Releases: Releases{Credential: Credential{Auth: "managed-identity"}},
			Settings: map[string]any{},
			Upgrade:  Upgrade{HealthTimeout: Duration(120 * time.Second)},
		},
		Cache: Cache{
			Enabled:   true,
			Listen:    "127.0.0.1:5050",
			Local:     LocalCache{MaxSize: 50 * GiB},
			Storage:   []Storage{},
			Upstreams: map[string]Upstream{},
			Allow:     []string{},
			Prewarm:   []string{},
		},
		Health: Health{Listen: "127.0.0.1:8765"},
	}
}

// DefaultStorage is what each cache.storage entry starts from.
func DefaultStorage() Storage {
	return Storage{Credential: Credential{Auth: "managed-identity"}}
}

// DefaultUpstream is what each cache.upstreams entry starts from.
func DefaultUpstream() Upstream { return Upstream{Auth: "none"} }

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
func (c Config) EngineEndpoint() string {
	if c.Engine.Endpoint != "" {
		return c.Engine.Endpoint
	}
	if c.Engine.Flavor == "containerd" {
		return paths.ContainerdEndpoint()
	}
	return paths.EngineEndpoint()
}

// CacheDir returns cache.local.dir, or <stateDir>/cache when it is empty.
func (c Config) CacheDir() string {
	if c.Cache.Local.Dir != "" {
		return c.Cache.Local.Dir
	}
	return filepath.Join(c.StateDir(), paths.CacheDir)
}

// Duration is a time.Duration written as a Go duration string ("90s").
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String writes the Go duration string without zero tails: "1m", not "1m0s".
func (d Duration) String() string {
	s := time.Duration(d).String()
	if t, ok := strings.CutSuffix(s, "m0s"); ok {
		s = t + "m"
	}
	if t, ok := strings.CutSuffix(s, "h0m"); ok {
		s = t + "h"
	}
	return s
}

// MarshalText writes the Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText parses a Go duration string; negative durations are refused.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%s is not a duration; write a Go duration such as 90s, 5m or 1h30m", quote(string(b)))
	}
	if v < 0 {
		return fmt.Errorf("%s is negative; a duration must be zero or more", quote(string(b)))
	}
	*d = Duration(v)
	return nil
}

// Size is a byte count written like "50GiB" or "512MB".
type Size int64

// Binary and decimal size units accepted in Size strings.
const (
	KiB Size = 1 << 10
	MiB Size = 1 << 20
	GiB Size = 1 << 30
	TiB Size = 1 << 40
)

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	// Longest suffixes first so that "KiB" is not read as "B".
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"B", 1},
}

// ParseSize reads a size such as "50GiB", "1.5GB" or "1024B".
func ParseSize(s string) (Size, error) {
	t := strings.TrimSpace(s)
	for _, u := range sizeUnits {
		num, ok := strings.CutSuffix(t, u.suffix)
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
		if err != nil || f < 0 || f != f {
			break
		}
		v := f * float64(u.mult)
		if v >= 1<<62 {
			return 0, fmt.Errorf("%s is too large", quote(s))
		}
		return Size(v), nil
	}
	return 0, fmt.Errorf("%s is not a size; write a number and a unit such as 512MiB, 50GiB or 2TB", quote(s))
}

// String formats the size with the largest binary unit that divides it.
func (s Size) String() string {
	for _, u := range []struct {
		suffix string
		mult   Size
	}{{"TiB", TiB}, {"GiB", GiB}, {"MiB", MiB}, {"KiB", KiB}} {
		if s != 0 && s%u.mult == 0 {
			return strconv.FormatInt(int64(s/u.mult), 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(s), 10) + "B"
}

// MarshalText writes the size with a unit.
func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText parses a size with a unit.
func (s *Size) UnmarshalText(b []byte) error {
	v, err := ParseSize(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}
