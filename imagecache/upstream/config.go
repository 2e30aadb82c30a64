package upstream

import "strings"

// Config is one entry of cache.upstreams in agent.yaml: how to reach and
// authenticate to one registry. The zero value, like auth: none, reaches
// the registry at its own address without credentials.
type Config struct {
	// Endpoint overrides the registry's address; plain http only to loopback.
	Endpoint string `yaml:"endpoint" json:"endpoint"`
	Auth     string `yaml:"auth" json:"auth"` // none | basic | managed-identity
	ClientID string `yaml:"clientId" json:"clientId"`
	// UsernameFile and PasswordFile hold basic credentials.
	UsernameFile string `yaml:"usernameFile" json:"usernameFile"`
	PasswordFile string `yaml:"passwordFile" json:"passwordFile"`
}

// Auth modes of Config.Auth.
const (
	AuthNone            = "none"
	AuthBasic           = "basic"
	AuthManagedIdentity = "managed-identity"
)

// Auths lists the values Config.Auth may take.
var Auths = []string{AuthNone, AuthBasic, AuthManagedIdentity}

// EndpointFor returns the base URL a Client for registry with c sends its
// requests to, as New picks it: c.Endpoint, else Docker Hub's API host for
// docker.io, else https://<registry> (http for a loopback name).
func (c Config) EndpointFor(registry string) (string, error) {
	u, err := endpoint(canonicalName(registry), c.Endpoint)
	if err != nil {
		return "", err
	}
	return u.String(), nil
}

// canonicalName is the registry's name as the cache keys it: lower case,
// with Docker Hub's aliases folded into docker.io.
func canonicalName(registry string) string {
	name := strings.ToLower(strings.TrimSpace(registry))
	if name == "index.docker.io" || name == "registry-1.docker.io" {
		name = "docker.io"
	}
	return name
}

// DefaultConfig is the settings of a registry that cache.upstreams does not
// list: anonymous, at the registry's own address.
func DefaultConfig() Config { return Config{Auth: AuthNone} }
