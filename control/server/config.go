package server

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/berthhq/berth/control/auth"
	"github.com/berthhq/berth/control/store"
	"github.com/berthhq/berth/internal/paths"
)

// DefaultListen is where berth-control serve listens without --listen:
// loopback only, so that a server started without thought is not open to
// the network. Behind a load balancer or on a VM, pass --listen :8080.
const DefaultListen = "127.0.0.1:8080"

// DefaultAuth is the --auth of berth-control serve: issued tokens only.
const DefaultAuth = "token"

// Config is berth-control serve's settings, from DefaultConfig, then the
// --config file, then flags.
type Config struct {
	// Listen is host:port (--listen).
	Listen string `yaml:"listen" json:"listen"`
	// DB is sqlite://PATH or postgres://… (--db). It may carry a
	// password; it is never logged whole.
	DB string `yaml:"db" json:"db"`
	// Auth is entra, token, entra,token or none (--auth).
	Auth  string      `yaml:"auth" json:"auth"`
	Entra EntraConfig `yaml:"entra" json:"entra"`
	TLS   TLSConfig   `yaml:"tls" json:"tls"`
	Log   LogConfig   `yaml:"log" json:"log"`
	// Retention is what the store keeps of each host's records
	// (--retention, store.ParseRetention's syntax); the keys not given
	// keep store.DefaultRetention's values.
	Retention string `yaml:"retention" json:"retention"`
	// Quota is what one agent may send a minute.
	Quota QuotaConfig `yaml:"quota" json:"quota"`
	// Releases is the signed release metadata rollouts and pins are
	// checked against.
	Releases ReleasesConfig `yaml:"releases" json:"releases"`
}

// ReleasesConfig is where the release metadata the agents trust is
// (--releases, an Azure Blob container, an https base or a folder) and
// the root it is verified with (--releases-root). Both or neither.
type ReleasesConfig struct {
	URL  string `yaml:"url" json:"url"`
	Root string `yaml:"root" json:"root"`
}

// QuotaConfig is what one agent may send a minute, past which its reports
// are answered 429 with Retry-After; 0 is no bound.
type QuotaConfig struct {
	RecordsPerMinute int64 `yaml:"recordsPerMinute" json:"recordsPerMinute"`
	BytesPerMinute   int64 `yaml:"bytesPerMinute" json:"bytesPerMinute"`
}

// TLSConfig is how the endpoint is reached over https: its own
// certificate (--tls-cert, --tls-key; see LoadTLS), or a TLS-terminating
// proxy in front whose X-Forwarded-Proto is believed (--trusted-proxies,
// addresses or CIDR prefixes, comma-separated).
type TLSConfig struct {
	Cert           string `yaml:"cert" json:"cert"`
	Key            string `yaml:"key" json:"key"`
	TrustedProxies string `yaml:"trustedProxies" json:"trustedProxies"`
}

// EntraConfig is the Entra ID settings (--entra-*); see auth.Entra.
type EntraConfig struct {
	Tenant       string `yaml:"tenant" json:"tenant"`
	Audience     string `yaml:"audience" json:"audience"`
	Authority    string `yaml:"authority" json:"authority"`
	OperatorRole string `yaml:"operatorRole" json:"operatorRole"`
	// AgentScope is --entra-agent-scope: /subscriptions/SUB or
	// /subscriptions/SUB/resourceGroups/RG.
	AgentScope string `yaml:"agentScope" json:"agentScope"`
}

// LogConfig is the server's log (--log-level, --log-format).
type LogConfig struct {
	Level  string `yaml:"level" json:"level"`
	Format string `yaml:"format" json:"format"`
}

// DefaultConfig is the settings without a file or flags.
func DefaultConfig() Config {
	return Config{
		Listen: DefaultListen,
		DB:     "sqlite://" + paths.ControlDB(),
		Auth:   DefaultAuth,
		Log:    LogConfig{Level: "info", Format: "text"},
		Quota:  QuotaConfig{RecordsPerMinute: DefaultQuotaRecords, BytesPerMinute: DefaultQuotaBytes},
	}
}

// maxConfigBytes bounds the config file.
const maxConfigBytes = 1 << 20

// LoadConfig reads path, YAML or JSON, on top of base. Decoding is strict:
// unknown keys and wrong types are errors that name the line.
func LoadConfig(path string, base Config) (Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return base, fmt.Errorf("read config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigBytes+1))
	if err != nil {
		return base, fmt.Errorf("read config %s: %w", path, err)
	}
	if len(data) > maxConfigBytes {
		return base, fmt.Errorf("config %s is over %d bytes", path, maxConfigBytes)
	}
	return ParseConfig(path, data, base)
}

// ParseConfig is LoadConfig of data; name is used in messages only.
func ParseConfig(name string, data []byte, base Config) (Config, error) {
	cfg := base
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		if errors.Is(err, io.EOF) {
			return base, nil
		}
		return base, fmt.Errorf("config %s: %s", name, yamlError(err))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return base, fmt.Errorf("config %s: more than one document; keep the settings in one", name)
	}
	return cfg, nil
}

// Methods validates the settings and returns the authentication methods
// they name.
func (c Config) Methods() ([]auth.Method, error) {
	if c.DB == "" {
		return nil, errors.New("--db is required: sqlite://PATH or postgres://USER@HOST/DB")
	}
	if c.Listen == "" {
		return nil, errors.New("--listen is empty: give host:port, for example " + DefaultListen)
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return nil, fmt.Errorf("--listen %q: want host:port, for example %s or :8080", c.Listen, DefaultListen)
	}
	ms, err := auth.ParseMethods(c.Auth)
	if err != nil {
		return nil, err
	}
	if _, err := c.RetentionPolicy(); err != nil {
		return nil, err
	}
	if c.Quota.RecordsPerMinute < 0 || c.Quota.BytesPerMinute < 0 {
		return nil, errors.New("quota: recordsPerMinute and bytesPerMinute cannot be negative (0 is no bound)")
	}
	if slices.Contains(ms, auth.MethodEntra) {
		if c.Entra.Tenant == "" || c.Entra.Audience == "" {
			return nil, errors.New("--auth entra needs --entra-tenant and --entra-audience (or entra.tenant and entra.audience in the config file)")
		}
	} else if c.Entra.AgentScope != "" {
		return nil, errors.New("--entra-agent-scope limits Entra agents, but --auth does not accept Entra tokens: add entra to --auth or drop the scope")
	}
	if _, err := auth.ParseAgentScope(c.Entra.AgentScope); err != nil {
		return nil, err
	}
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		return nil, errors.New("--tls-cert and --tls-key go together: give the certificate (PEM, with its chain) and its private key, or neither")
	}
	if _, err := ParseTrustedProxies(c.TLS.TrustedProxies); err != nil {
		return nil, err
	}
	if (c.Releases.URL == "") != (c.Releases.Root == "") {
		return nil, errors.New("--releases and --releases-root go together: the release metadata's URL or folder and the root.json it is verified with (releases init wrote DIR/metadata/root.json), or neither")
	}
	return ms, nil
}

// RetentionPolicy returns the store.Retention of the settings.
func (c Config) RetentionPolicy() (store.Retention, error) {
	r, err := store.ParseRetention(c.Retention, store.DefaultRetention)
	if err != nil {
		return r, fmt.Errorf("--retention: %w", err)
	}
	return r, nil
}

// QuotaOptions sets o's quota from the settings.
func (c Config) QuotaOptions(o *Options) {
	off := func(n int64) int64 {
		if n == 0 {
			return -1
		}
		return n
	}
	o.QuotaRecords, o.QuotaBytes = off(c.Quota.RecordsPerMinute), off(c.Quota.BytesPerMinute)
}

// EntraOptions returns the auth.Entra of the settings.
func (c Config) EntraOptions() *auth.Entra {
	return &auth.Entra{
		Tenant:       c.Entra.Tenant,
		Audience:     c.Entra.Audience,
		Authority:    c.Entra.Authority,
		OperatorRole: c.Entra.OperatorRole,
		AgentScope:   c.Entra.AgentScope,
	}
}

// Warnings are what serve must say loudly before it starts, on stderr and
// in the log: that --auth none lets anyone in, or that tokens would cross
// the network in the clear.
func (c Config) Warnings() []string {
	host, _, _ := net.SplitHostPort(c.Listen)
	beyond := host != "localhost"
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		beyond = false
	}
	if strings.TrimSpace(strings.ToLower(c.Auth)) == string(auth.MethodNone) {
		w := "WARNING: --auth none: authentication is OFF. Anyone who can reach " + c.Listen +
			" can read the whole fleet and write reports as any host. Use it for a laptop demo only."
		if beyond {
			w += " This server listens beyond loopback."
		}
		return []string{w}
	}
	if beyond && c.TLS.Cert == "" && c.TLS.TrustedProxies == "" {
		return []string{"WARNING: serving plain http on " + c.Listen + ", beyond loopback: agents' tokens and operators' sessions cross the network in the clear. " +
			"Give --tls-cert and --tls-key, or put a TLS-terminating proxy in front and name it with --trusted-proxies."}
	}
	return nil
}

// RedactDSN hides the password of a database DSN for logs and messages.
func RedactDSN(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "(unparsable DSN)"
	}
	if q := u.Query(); q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

// unknownField is how yaml.v3 words an unknown key.
var unknownField = regexp.MustCompile(`field (\S+) not found in type \S+`)

// yamlError puts yaml.v3's errors on one line, in the words of a config
// file rather than of Go types.
func yamlError(err error) string {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs := make([]string, len(te.Errors))
		for i, m := range te.Errors {
			m = unknownField.ReplaceAllString(m, `unknown key "$1"`)
			msgs[i] = strings.ReplaceAll(m, "server.", "")
		}
		return strings.Join(msgs, "; ")
	}
	return strings.TrimPrefix(err.Error(), "yaml: ")
}
