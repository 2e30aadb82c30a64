// Package agentconfig holds the schema of agent.yaml, its defaults, and the
// strict loader that turns a file (YAML, or the same schema as JSON) into a
// Config or into a list of errors that name the key, the line and what is
// allowed.
package agentconfig

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Config is the whole of agent.yaml. Each section is owned by the package
// that acts on it; the types live here so that one loader checks them all.
type Config struct {
	Agent     Agent     `yaml:"agent"`
	Control   Control   `yaml:"control"`
	Engine    Engine    `yaml:"engine"`
	Cache     Cache     `yaml:"cache"`
	Health    Health    `yaml:"health"`
	Provision Provision `yaml:"provision"`
}

// Agent identifies the host and says where its state lives.
type Agent struct {
	// ID defaults to the Azure VM's vmId from IMDS, else the machine id.
	ID string `yaml:"id"`
	// StateDir defaults to the platform's state folder (see internal/paths).
	StateDir string `yaml:"stateDir"`
	// Labels are free key/values reported to control (pool, region, ring).
	Labels map[string]string `yaml:"labels"`
}

// Control names the control endpoint and how the agent authenticates to it.
type Control struct {
	URL            string   `yaml:"url"`
	Auth           string   `yaml:"auth"` // managed-identity | token | none
	Audience       string   `yaml:"audience"`
	ClientID       string   `yaml:"clientId"`
	TokenFile      string   `yaml:"tokenFile"`
	ReportInterval Duration `yaml:"reportInterval"`
}

// Engine is the container engine the agent installs, configures and watches.
type Engine struct {
	// Managed false means: never install or change the engine, only watch it.
	Managed  bool     `yaml:"managed"`
	Flavor   string   `yaml:"flavor"` // docker | containerd
	Version  string   `yaml:"version"`
	Channel  string   `yaml:"channel"`
	Releases Releases `yaml:"releases"`
	// Endpoint is the engine API address, unix:// or npipe://.
	Endpoint string `yaml:"endpoint"`
	DataRoot string `yaml:"dataRoot"`
	// Settings pass through into daemon.json / containerd config, merged
	// under Berth's own keys.
	Settings map[string]any `yaml:"settings"`
	Upgrade  Upgrade        `yaml:"upgrade"`
}

// Releases says where signed release metadata and packages come from.
type Releases struct {
	// URL is an https base (Azure Blob container or any server) or a folder.
	URL        string `yaml:"url"`
	Credential `yaml:",inline"`
	// RootFile is the trusted initial TUF root shipped with the agent.
	RootFile string `yaml:"rootFile"`
}

// Credential says how to authenticate to Azure Blob Storage. Secrets live in
// files or the environment, never in the YAML.
type Credential struct {
	Auth     string `yaml:"auth"` // managed-identity | shared-key | sas | none
	ClientID string `yaml:"clientId"`
	KeyFile  string `yaml:"keyFile"`
	SASFile  string `yaml:"sasFile"`
}

// Upgrade tunes engine upgrades.
type Upgrade struct {
	// HealthTimeout is how long a new version has to become healthy before
	// the agent rolls back.
	HealthTimeout Duration `yaml:"healthTimeout"`
}

// Cache configures the pull-through registry mirror.
type Cache struct {
	Enabled   bool                `yaml:"enabled"`
	Listen    string              `yaml:"listen"`
	Local     LocalCache          `yaml:"local"`
	Storage   []Storage           `yaml:"storage"`
	Upstreams map[string]Upstream `yaml:"upstreams"`
	Prewarm   []string            `yaml:"prewarm"`
}

// LocalCache is the on-disk blob tier.
type LocalCache struct {
	Dir     string `yaml:"dir"`
	MaxSize Size   `yaml:"maxSize"`
}

// Storage is one Azure Blob tier of the cache.
type Storage struct {
	URL        string `yaml:"url"`
	Credential `yaml:",inline"`
}

// Upstream holds per-registry settings, keyed by the registry's name.
type Upstream struct {
	Endpoint string `yaml:"endpoint"`
	Auth     string `yaml:"auth"` // none | basic | managed-identity
	ClientID string `yaml:"clientId"`
	// UsernameFile and PasswordFile hold basic credentials.
	UsernameFile string `yaml:"usernameFile"`
	PasswordFile string `yaml:"passwordFile"`
}

// Health configures the local health endpoint.
type Health struct {
	Listen string `yaml:"listen"`
}

// Provision tunes the one-shot converge.
type Provision struct {
	AllowReboot bool `yaml:"allowReboot"`
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
			Upstreams: map[string]Upstream{},
			Prewarm:   []string{},
		},
		Health: Health{Listen: "127.0.0.1:8765"},
	}
}

// Duration is a time.Duration written as a Go duration string ("90s").
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalText writes the Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText parses a Go duration string; negative durations are refused.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration; write a Go duration such as 90s, 5m or 1h30m", string(b))
	}
	if v < 0 {
		return fmt.Errorf("%q is negative; a duration must be zero or more", string(b))
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
			return 0, fmt.Errorf("%q is too large", s)
		}
		return Size(v), nil
	}
	return 0, fmt.Errorf("%q is not a size; write a number and a unit such as 512MiB, 50GiB or 2TB", s)
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
