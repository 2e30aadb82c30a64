package blobtier

import "github.com/berthhq/berth/internal/azstore"

// Config is one entry of cache.storage in agent.yaml: an Azure Blob
// container and how to authenticate to it. The agent copies it into
// Options.
type Config struct {
	URL                string `yaml:"url" json:"url"`
	azstore.Credential `yaml:",inline"`
}
