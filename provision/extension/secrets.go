package extension

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// Protected is the decrypted protectedSettings: the secrets agent.yaml
// keeps in files, in the same shape with the value instead of the file
// (token for tokenFile, key for keyFile, sas for sasFile, username and
// password for usernameFile and passwordFile). cache.storage entries are
// matched to the public ones by url, registries by name.
type Protected struct {
	Control *struct {
		Token string `json:"token"`
	} `json:"control"`
	Engine *struct {
		Releases *StorageSecret `json:"releases"`
	} `json:"engine"`
	Cache *struct {
		Storage   []StorageSecret           `json:"storage"`
		Upstreams map[string]RegistrySecret `json:"upstreams"`
	} `json:"cache"`
}

// StorageSecret is a storage account key or a SAS token.
type StorageSecret struct {
	URL string `json:"url"`
	Key string `json:"key"`
	SAS string `json:"sas"`
}

// RegistrySecret is a registry's basic credentials.
type RegistrySecret struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// ParseProtected parses decrypted protected settings strictly: unknown keys
// are refused by name. Messages never quote a value.
func ParseProtected(data []byte) (Protected, error) {
	var p Protected
	if len(bytes.TrimSpace(data)) == 0 {
		return p, nil
	}
	if !isObject(data) {
		return Protected{}, failf(CodeProtectedInvalid, "decrypted protectedSettings are not a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return Protected{}, failf(CodeProtectedInvalid, "decrypted protectedSettings: %s; allowed: control.token, engine.releases.{key,sas}, cache.storage[].{url,key,sas}, cache.upstreams[NAME].{username,password}", protectedError(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Protected{}, failf(CodeProtectedInvalid, "decrypted protectedSettings: more data after the object")
	}
	return p, nil
}

// protectedError describes a decoding error without the data it was about.
func protectedError(err error) string {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		return fmt.Sprintf("%s is a JSON %s, want %s", te.Field, te.Value, te.Type)
	case errors.As(err, &se):
		return fmt.Sprintf("not valid JSON at byte %d", se.Offset)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "unknown key " + strings.TrimPrefix(err.Error(), "json: unknown field ")
	}
	return "not the secrets object"
}

// Secret is one secret file to write: its name under <stateDir>/secrets
// and its value.
type Secret struct {
	Name  string
	Value []byte
}

// tree is a JSON object decoded generically, numbers kept as written.
type tree = map[string]any

// ComposeConfig builds the agent config from public settings and the
// secrets: each secret goes to a file under secretsDir, its file key is
// set in the config, and an empty auth becomes the one the secret is for.
// A secret the config already names a file for, or one whose auth says
// otherwise, or a storage url the config does not list, is an error: a
// secret that would silently not be used is a mistake to report.
func ComposeConfig(public json.RawMessage, p Protected, secretsDir string) ([]byte, []Secret, error) {
	root := tree{}
	if !isNull(public) {
		dec := json.NewDecoder(bytes.NewReader(public))
		dec.UseNumber()
		if err := dec.Decode(&root); err != nil {
			return nil, nil, failf(CodeConfigInvalid, "publicSettings: %v", err)
		}
	}
	c := composer{root: root, dir: secretsDir}
	if p.Control != nil && p.Control.Token != "" {
		c.put("control", c.object(root, "control"), "token", "tokenFile", "control.token", p.Control.Token)
	}
	if p.Engine != nil && p.Engine.Releases != nil {
		c.storage(c.object(c.object(root, "engine"), "releases"), "engine.releases", "engine.releases", *p.Engine.Releases)
	}
	if p.Cache != nil {
		c.cacheSecrets(p)
	}
	if len(c.errs) > 0 {
		return nil, nil, &Error{Code: CodeSecretConflict, Err: errors.New(strings.Join(c.errs, "; "))}
	}
	out, err := json.MarshalIndent(root, "", "  ")
	if err != nil {
		return nil, nil, failf(CodeConfigInvalid, "publicSettings: %v", err)
	}
	sort.Slice(c.secrets, func(i, j int) bool { return c.secrets[i].Name < c.secrets[j].Name })
	return append(out, '\n'), c.secrets, nil
}

type composer struct {
	root    tree
	dir     string
	secrets []Secret
	errs    []string
}

// object returns parent[key] as an object, creating it when absent. A
// non-object leaves an error (the config parse would refuse it anyway).
func (c *composer) object(parent tree, key string) tree {
	if parent == nil {
		return nil
	}
	switch v := parent[key].(type) {
	case tree:
		return v
	case nil:
		t := tree{}
		parent[key] = t
		return t
	}
	c.errs = append(c.errs, fmt.Sprintf("publicSettings key %q is not an object, so the secret for it cannot be placed", key))
	return nil
}

// authFor is the auth each secret key stands for.
var authFor = map[string]string{"token": "token", "key": "shared-key", "sas": "sas", "username": "basic", "password": "basic"}

// put records one secret: the file, the file key, the auth.
func (c *composer) put(where string, obj tree, key, fileKey, name, value string) {
	if obj == nil {
		return
	}
	if _, ok := obj[fileKey]; ok {
		c.errs = append(c.errs, fmt.Sprintf("%s.%s is given in protectedSettings and %s.%s in publicSettings; give one", where, key, where, fileKey))
		return
	}
	if auth, _ := obj["auth"].(string); auth != "" && auth != authFor[key] {
		c.errs = append(c.errs, fmt.Sprintf("%s.%s is given but %s.auth is %q, which does not use it; set auth to %q or drop the secret", where, key, where, auth, authFor[key]))
		return
	}
	obj["auth"] = authFor[key]
	obj[fileKey] = filepath.Join(c.dir, name)
	c.secrets = append(c.secrets, Secret{Name: name, Value: []byte(value)})
}

func (c *composer) storage(obj tree, where, name string, s StorageSecret) {
	switch {
	case s.Key != "" && s.SAS != "":
		c.errs = append(c.errs, where+": give key or sas, not both")
	case s.Key != "":
		c.put(where, obj, "key", "keyFile", name+".key", s.Key)
	case s.SAS != "":
		c.put(where, obj, "sas", "sasFile", name+".sas", strings.TrimPrefix(s.SAS, "?"))
	}
}

func (c *composer) cacheSecrets(p Protected) {
	cache := c.object(c.root, "cache")
	if cache == nil {
		return
	}
	if len(p.Cache.Storage) > 0 {
		list, _ := cache["storage"].([]any)
		for _, s := range p.Cache.Storage {
			i := storageIndex(list, s.URL)
			if i < 0 {
				c.errs = append(c.errs, fmt.Sprintf("protectedSettings cache.storage url %q is not one of publicSettings cache.storage[].url", clip(stripQuery(s.URL), 200)))
				continue
			}
			obj, _ := list[i].(tree)
			c.storage(obj, fmt.Sprintf("cache.storage[%d]", i), fmt.Sprintf("cache.storage.%d", i), s)
		}
	}
	names := make([]string, 0, len(p.Cache.Upstreams))
	for n := range p.Cache.Upstreams {
		names = append(names, n)
	}
	sort.Strings(names)
	ups := c.object(cache, "upstreams")
	for _, n := range names {
		r := p.Cache.Upstreams[n]
		obj := c.object(ups, n)
		where, file := fmt.Sprintf("cache.upstreams[%q]", n), "cache.upstreams."+safeName(n)
		if r.Username != "" {
			c.put(where, obj, "username", "usernameFile", file+".username", r.Username)
		}
		if r.Password != "" {
			c.put(where, obj, "password", "passwordFile", file+".password", r.Password)
		}
	}
}

// storageIndex finds the public cache.storage entry with url.
func storageIndex(list []any, url string) int {
	for i, e := range list {
		if obj, ok := e.(tree); ok {
			if u, _ := obj["url"].(string); u != "" && strings.EqualFold(strings.TrimRight(u, "/"), strings.TrimRight(url, "/")) {
				return i
			}
		}
	}
	return -1
}

func stripQuery(u string) string {
	if i := strings.IndexByte(u, '?'); i >= 0 {
		return u[:i]
	}
	return u
}

var unsafeRune = regexp.MustCompile(`[^A-Za-z0-9.-]`)

// safeName turns a registry name into a file name part valid everywhere
// (myreg.azurecr.io:443 has a colon Windows refuses); the hash keeps two
// names that clean to the same text apart.
func safeName(n string) string {
	sum := sha256.Sum256([]byte(n))
	return clip(unsafeRune.ReplaceAllString(n, "_"), 64) + "-" + hex.EncodeToString(sum[:4])
}
