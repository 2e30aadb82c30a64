package tufrepo

import (
	"encoding/json"
	"fmt"
	"path"
	"strings"
)

// Package kinds, engine flavours, operating systems and architectures a
// release repository knows.
const (
	KindEngine = "engine"
	KindAgent  = "agent"

	FlavorDocker     = "docker"
	FlavorContainerd = "containerd"

	DefaultChannel = "stable"
)

var (
	knownOS   = []string{"linux", "windows"}
	knownArch = []string{"amd64", "arm64"}
)

// Package says what a signed file is. It is stored as the target's custom
// metadata, which agents match when they look for a package.
type Package struct {
	// Kind is engine or agent.
	Kind string `json:"kind"`
	// Flavor is docker or containerd for an engine, empty for the agent.
	Flavor string `json:"flavor,omitempty"`
	// Version is the package's version, e.g. 27.3.1 or v2.0.0-rc.1.
	Version string `json:"version"`
	// OS is linux or windows.
	OS string `json:"os"`
	// Arch is amd64 (arm64 is accepted for later).
	Arch string `json:"arch"`
	// Channel is the release channel; empty means stable.
	Channel string `json:"channel"`
}

// Validate checks p as Add will, so a command line can tell a bad flag
// (a usage error) from a failed signing.
func (p Package) Validate() error {
	_, err := p.normalize()
	return err
}

// normalize fills defaults and checks every field, naming the flag to fix.
func (p Package) normalize() (Package, error) {
	if p.Channel == "" {
		p.Channel = DefaultChannel
	}
	switch p.Kind {
	case KindEngine:
		if p.Flavor != FlavorDocker && p.Flavor != FlavorContainerd {
			return p, fmt.Errorf("--flavor %q: an engine package needs docker or containerd", p.Flavor)
		}
	case KindAgent:
		if p.Flavor != "" {
			return p, fmt.Errorf("--flavor %q: an agent package has no flavor", p.Flavor)
		}
	default:
		return p, fmt.Errorf("--kind %q: want engine or agent", p.Kind)
	}
	if err := checkName("--version", p.Version, 64, true); err != nil {
		return p, err
	}
	if !contains(knownOS, p.OS) {
		return p, fmt.Errorf("--os %q: want %s", p.OS, strings.Join(knownOS, " or "))
	}
	if !contains(knownArch, p.Arch) {
		return p, fmt.Errorf("--arch %q: want %s", p.Arch, strings.Join(knownArch, " or "))
	}
	if err := checkName("--channel", p.Channel, 32, false); err != nil {
		return p, err
	}
	return p, nil
}

// dir is the target folder the package's files live in:
// engine/<flavor>/<os>-<arch>/<version> or agent/<os>-<arch>/<version>.
func (p Package) dir() string {
	if p.Kind == KindEngine {
		return path.Join(p.Kind, p.Flavor, p.OS+"-"+p.Arch, p.Version)
	}
	return path.Join(p.Kind, p.OS+"-"+p.Arch, p.Version)
}

// sameRelease reports whether p and q name the same release of the same
// package, whatever their channel.
func (p Package) sameRelease(q Package) bool {
	return p.Kind == q.Kind && p.Flavor == q.Flavor && p.Version == q.Version && p.OS == q.OS && p.Arch == q.Arch
}

func (p Package) custom() (*json.RawMessage, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	raw := json.RawMessage(b)
	return &raw, nil
}

func packageFromCustom(raw *json.RawMessage) Package {
	var p Package
	if raw != nil {
		_ = json.Unmarshal(*raw, &p)
	}
	return p
}

// checkName allows letters, digits and . _ + - (upper case only where
// mixed is true), starting with a letter or digit.
func checkName(flag, s string, max int, mixed bool) error {
	if s == "" {
		return fmt.Errorf("%s is required", flag)
	}
	if len(s) > max {
		return fmt.Errorf("%s %q: longer than %d characters", flag, s, max)
	}
	for i, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || mixed && r >= 'A' && r <= 'Z'
		if !ok && i > 0 {
			ok = r == '.' || r == '_' || r == '-' || r == '+'
		}
		if !ok {
			return fmt.Errorf("%s %q: use letters, digits and . _ + - only, starting with a letter or digit", flag, s)
		}
	}
	return nil
}

// checkFileName keeps target file names portable and URL-safe.
func checkFileName(name string) error {
	if name == "" || name == "." || name == ".." || len(name) > 128 {
		return fmt.Errorf("file name %q is not allowed", name)
	}
	for i, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
		if !ok && i > 0 {
			ok = r == '.' || r == '_' || r == '-' || r == '+'
		}
		if !ok {
			return fmt.Errorf("file name %q: rename it to letters, digits and . _ + - only", name)
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
