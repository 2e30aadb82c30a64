package report

import "github.com/berthhq/berth/internal/units"

// Config is the control block of agent.yaml: the control endpoint reports
// go to and how the agent authenticates to it.
type Config struct {
	// URL is the control endpoint's https base; empty runs without one.
	URL  string `yaml:"url" json:"url"`
	Auth string `yaml:"auth" json:"auth"` // managed-identity | token | none
	// Audience is the scope of the managed-identity token.
	Audience string `yaml:"audience" json:"audience"`
	// ClientID picks a user-assigned managed identity.
	ClientID string `yaml:"clientId" json:"clientId"`
	// TokenFile holds the bearer token for auth: token.
	TokenFile      string         `yaml:"tokenFile" json:"tokenFile"`
	ReportInterval units.Duration `yaml:"reportInterval" json:"reportInterval"`
}

// Auth modes of Config.Auth.
const (
	AuthManagedIdentity = "managed-identity"
	AuthToken           = "token"
	AuthNone            = "none"
)

// Auths lists the values Config.Auth may take.
var Auths = []string{AuthManagedIdentity, AuthToken, AuthNone}
