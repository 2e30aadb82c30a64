package config

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/berthhq/berth/imagecache/blobtier"
	"github.com/berthhq/berth/imagecache/upstream"
	"github.com/berthhq/berth/internal/azstore"
	"github.com/berthhq/berth/internal/paths"
)

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"":                                  "",
		"https://a.blob.core.windows.net/c": "https://a.blob.core.windows.net/c",
		"https://a.blob.core.windows.net/c?sv=1&sig=2": "https://a.blob.core.windows.net/c?REDACTED",
		"https://a/c?sig=2#frag":                       "https://a/c?REDACTED",
		"http://user:pw@proxy:3128":                    "http://user:REDACTED@proxy:3128",
		"http://user:pw@proxy:3128/p?q=1":              "http://user:REDACTED@proxy:3128/p?REDACTED",
		"http://user@proxy:3128":                       "http://user@proxy:3128",
		"https://host/path@with-at":                    "https://host/path@with-at",
		"/srv/releases":                                "/srv/releases",
		"not a url ?x":                                 "not a url ?x",
	} {
		if got := redactURL(in); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLooksSecret(t *testing.T) {
	for _, name := range []string{"password", "registry-password", "token", "identitytoken", "secret", "clientSecret", "key", "apiKey", "tlskey", "sas", "sasToken", "sig", "credentials", "connectionString"} {
		if !looksSecret(name) {
			t.Errorf("looksSecret(%q) = false", name)
		}
	}
	for _, name := range []string{"keyFile", "tokenFile", "passwordPath", "log-level", "debug", "registry-mirrors", "hosts", "auth", "keys-dir"} {
		if looksSecret(name) {
			t.Errorf("looksSecret(%q) = true", name)
		}
	}
	if !secretSetting("auth") {
		t.Error(`secretSetting("auth") = false`)
	}
}

func TestRedacted(t *testing.T) {
	c := Default()
	c.Control.URL = "https://control/?code=1"
	c.Engine.Releases.URL = "https://r.blob.core.windows.net/r?sig=1"
	c.Engine.Settings = map[string]any{
		"log-level": "warn",
		"proxies":   map[string]any{"https-proxy": "http://u:p@proxy:3128"},
		"auths":     []any{map[string]any{"auth": "dTpw", "server": "https://r?x=y"}},
		"apiKey":    map[string]any{"nested": "everything under it"},
		"n":         float64(3),
	}
	c.Cache.Storage = []blobtier.Config{{URL: "https://s.blob.core.windows.net/c?sv=1", Credential: azstore.Credential{Auth: "none"}}}
	c.Cache.Upstreams["docker.io"] = upstream.Config{Endpoint: "https://m/?t=1", Auth: "none"}
	before, err := marshalJSON(c)
	if err != nil {
		t.Fatal(err)
	}

	got := c.Redacted()
	want := Default()
	want.Control.URL = "https://control/?REDACTED"
	want.Engine.Releases.URL = "https://r.blob.core.windows.net/r?REDACTED"
	want.Engine.Settings = map[string]any{
		"log-level": "warn",
		"proxies":   map[string]any{"https-proxy": "http://u:REDACTED@proxy:3128"},
		"auths":     []any{map[string]any{"auth": "REDACTED", "server": "https://r?REDACTED"}},
		"apiKey":    "REDACTED",
		"n":         float64(3),
	}
	want.Cache.Storage = []blobtier.Config{{URL: "https://s.blob.core.windows.net/c?REDACTED", Credential: azstore.Credential{Auth: "none"}}}
	want.Cache.Upstreams["docker.io"] = upstream.Config{Endpoint: "https://m/?REDACTED", Auth: "none"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Redacted (-want +got):\n%s", diff)
	}
	after, err := marshalJSON(c)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(before), string(after)); diff != "" {
		t.Errorf("Redacted changed its receiver:\n%s", diff)
	}
}

// TestTagsMatch checks that every field has the same name in YAML and in
// JSON, so that ShowJSON prints the keys a file uses, down through the
// subsystems' block types.
func TestTagsMatch(t *testing.T) {
	var walk func(t reflect.Type, path string)
	walk = func(typ reflect.Type, path string) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			y, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			j, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if !(f.Anonymous && y == "" && j == "") && y != j {
				t.Errorf("%s%s: yaml %q, json %q", path, f.Name, y, j)
			}
			ft := f.Type
			for ft.Kind() == reflect.Slice || ft.Kind() == reflect.Map {
				ft = ft.Elem()
			}
			// The blocks' types live in the subsystems' packages: walk every
			// struct of this module (units.Duration and units.Size are not
			// structs).
			if ft.Kind() == reflect.Struct && strings.HasPrefix(ft.PkgPath(), "github.com/berthhq/berth/") && y != "-" {
				walk(ft, path+f.Name+".")
			}
		}
	}
	walk(reflect.TypeFor[Config](), "")
}

func TestDirs(t *testing.T) {
	c := Default()
	if got, want := c.StateDir(), paths.StateDir(); got != want {
		t.Errorf("StateDir = %q, want %q", got, want)
	}
	if got, want := c.EngineEndpoint(), paths.EngineEndpoint(); got != want {
		t.Errorf("EngineEndpoint = %q, want %q", got, want)
	}
	if got, want := c.CacheDir(), filepath.Join(paths.StateDir(), paths.CacheDir); got != want {
		t.Errorf("CacheDir = %q, want %q", got, want)
	}
	c.Engine.Flavor = "containerd"
	if got, want := c.EngineEndpoint(), paths.ContainerdEndpoint(); got != want {
		t.Errorf("containerd EngineEndpoint = %q, want %q", got, want)
	}
	c.Agent.StateDir = "/srv/berth"
	c.Engine.Endpoint = "unix:///srv/containerd.sock"
	if got, want := c.CacheDir(), filepath.Join("/srv/berth", paths.CacheDir); got != want {
		t.Errorf("CacheDir = %q, want %q", got, want)
	}
	if got := c.EngineEndpoint(); got != c.Engine.Endpoint {
		t.Errorf("EngineEndpoint = %q", got)
	}
	c.Cache.Local.Dir = "/mnt/cache"
	if got := c.CacheDir(); got != "/mnt/cache" {
		t.Errorf("CacheDir = %q", got)
	}
}
