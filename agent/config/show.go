package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/berthhq/berth/imagecache/blobtier"
	"github.com/berthhq/berth/imagecache/upstream"
)

// redacted is what a hidden value shows as.
const redacted = "REDACTED"

// Redacted returns a copy of c that is safe to print or log.
//
// agent.yaml holds no secrets of its own (Parse refuses them), but two kinds
// of value can still carry one, and Redacted shows them as "REDACTED":
//   - the query string of a URL (a SAS token: ?sv=...&sig=...) and the
//     password in user:password@, in control.url, engine.releases.url,
//     cache.storage[].url, cache.upstreams[].endpoint and in every string of
//     engine.settings (a proxy URL, a mirror with a token);
//   - the whole value of any engine.settings key, at any depth, whose name
//     looks secret: password, passwd, secret, token, key (apiKey, tlskey),
//     sas, sig, auth, credential, connectionString, signature.
//
// Only the plain values Parse produces (map[string]any, []any, string…)
// are walked inside engine.settings. c itself is not changed.
func (c Config) Redacted() Config {
	r := c
	r.Control.URL = redactURL(c.Control.URL)
	r.Engine.Releases.URL = redactURL(c.Engine.Releases.URL)
	if c.Engine.Settings != nil {
		r.Engine.Settings, _ = redactValue(c.Engine.Settings).(map[string]any)
	}
	if c.Cache.Storage != nil {
		r.Cache.Storage = make([]blobtier.Config, len(c.Cache.Storage))
		for i, s := range c.Cache.Storage {
			s.URL = redactURL(s.URL)
			r.Cache.Storage[i] = s
		}
	}
	if c.Cache.Upstreams != nil {
		r.Cache.Upstreams = make(map[string]upstream.Config, len(c.Cache.Upstreams))
		for name, u := range c.Cache.Upstreams {
			u.Endpoint = redactURL(u.Endpoint)
			r.Cache.Upstreams[name] = u
		}
	}
	return r
}

// ShowYAML renders c.Redacted() as YAML with the keys of agent.yaml: what
// `berth-agent config show` prints.
func (c Config) ShowYAML() ([]byte, error) { return marshalYAML(c.Redacted()) }

// ShowJSON renders c.Redacted() as indented JSON with the same camelCase
// keys as the YAML: what `berth-agent config show --output json` prints.
func (c Config) ShowJSON() ([]byte, error) { return marshalJSON(c.Redacted()) }

func marshalYAML(c Config) ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(c); err != nil {
		return nil, fmt.Errorf("render config as YAML: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("render config as YAML: %w", err)
	}
	return b.Bytes(), nil
}

func marshalJSON(c Config) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(c); err != nil {
		return nil, fmt.Errorf("render config as JSON: %w", err)
	}
	return b.Bytes(), nil
}

func redactValue(v any) any {
	switch t := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(t))
		for k, x := range t {
			if secretSetting(k) {
				m[k] = redacted
			} else {
				m[k] = redactValue(x)
			}
		}
		return m
	case []any:
		s := make([]any, len(t))
		for i, x := range t {
			s[i] = redactValue(x)
		}
		return s
	case string:
		return redactURL(t)
	}
	return v
}

// redactURL hides the query string and the password of a URL; strings
// that are not URLs come back unchanged.
func redactURL(s string) string {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok || scheme == "" {
		return s
	}
	if i := strings.IndexByte(rest, '?'); i >= 0 {
		rest = rest[:i] + "?" + redacted
	}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	if at := strings.LastIndexByte(rest[:end], '@'); at >= 0 {
		if user, _, hasPassword := strings.Cut(rest[:at], ":"); hasPassword {
			rest = user + ":" + redacted + rest[at:]
		}
	}
	return scheme + "://" + rest
}

// looksSecret reports whether a key's name says its value is a secret.
// Names of files and paths (keyFile, tokenPath) are not secrets.
func looksSecret(name string) bool {
	n := strings.ToLower(strings.NewReplacer("-", "", "_", "", ".", "", " ", "").Replace(name))
	if strings.HasSuffix(n, "file") || strings.HasSuffix(n, "path") {
		return false
	}
	switch n {
	case "sas", "sig", "pwd", "pass":
		return true
	}
	if strings.HasPrefix(n, "sas") || strings.HasSuffix(n, "key") {
		return true
	}
	for _, w := range []string{"password", "passwd", "secret", "token", "credential", "connectionstring", "signature"} {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// secretSetting is looksSecret plus "auth", which in registry settings
// holds base64 user:password.
func secretSetting(name string) bool {
	return looksSecret(name) || strings.EqualFold(name, "auth")
}
