package azstore

// Credential says how to authenticate to Azure Blob Storage: the auth,
// clientId, keyFile and sasFile keys of cache.storage[] and
// engine.releases in agent.yaml, and of `berth-control`'s and
// packaging's publish targets. Secrets live in files or the environment,
// never in the YAML.
//
// With auth shared-key the account key is read from KeyFile, or from
// EnvAccountKey when KeyFile is empty; with auth sas the token is read
// from SASFile, else EnvSASToken. New reads them; the config loader does
// not look at the environment (its answer must not depend on the shell it
// runs in), and a tier that finds neither reports itself unhealthy.
type Credential struct {
	Auth     string `yaml:"auth" json:"auth"` // managed-identity | shared-key | sas | none
	ClientID string `yaml:"clientId" json:"clientId"`
	KeyFile  string `yaml:"keyFile" json:"keyFile"`
	SASFile  string `yaml:"sasFile" json:"sasFile"`
}

// Auths lists the values Credential.Auth may take.
var Auths = []string{AuthManagedIdentity, AuthSharedKey, AuthSAS, AuthNone}
