package release

import "github.com/berthhq/berth/internal/azstore"

// Config is the engine.releases block of agent.yaml: where signed release
// metadata and packages come from. The agent copies it into Options.
type Config struct {
	// URL is an https base (Azure Blob container or any server) or a folder.
	URL                string `yaml:"url" json:"url"`
	azstore.Credential `yaml:",inline"`
	// RootFile is the trusted initial TUF root shipped with the agent.
	RootFile string `yaml:"rootFile" json:"rootFile"`
}
