package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/berthhq/berth/imagecache/blobtier"
	"github.com/berthhq/berth/imagecache/upstream"
	"github.com/berthhq/berth/internal/azstore"
)

func TestDefaultIsValid(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Errorf("Default().Validate() = %v", err)
	}
}

// TestValidate checks Configs built in code: no Source, so no lines.
func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*Config)
		want   []string
	}{
		{
			name:   "shared-key without keyFile reads the environment at run time",
			change: func(c *Config) { c.Engine.Releases.Auth = "shared-key" },
		},
		{
			name: "sas without sasFile reads the environment at run time",
			change: func(c *Config) {
				c.Cache.Storage = []blobtier.Config{{URL: "https://a.blob.core.windows.net/c", Credential: azstore.Credential{Auth: "sas"}}}
			},
		},
		{
			name:   "empty auth",
			change: func(c *Config) { c.Cache.Storage = []blobtier.Config{{URL: "https://a.blob.core.windows.net/c"}} },
			want:   []string{"cache.storage[0].auth: is empty; use one of managed-identity, shared-key, sas, none"},
		},
		{
			name: "files that go with another auth",
			change: func(c *Config) {
				c.Control.ClientID = "id"
				c.Control.Auth = "none"
				c.Engine.Releases.SASFile = "/s"
				c.Cache.Upstreams["ghcr.io"] = upstream.Config{Auth: "none", PasswordFile: "/p", ClientID: "id"}
			},
			want: []string{
				"control.clientId: is set but auth is none; it is used only with auth: managed-identity",
				"engine.releases.sasFile: is set but auth is managed-identity; it is used only with auth: sas",
				`cache.upstreams["ghcr.io"].passwordFile: is set but auth is none; it is used only with auth: basic`,
				`cache.upstreams["ghcr.io"].clientId: is set but auth is none; it is used only with auth: managed-identity`,
			},
		},
		{
			name: "relative paths",
			change: func(c *Config) {
				c.Control.Auth, c.Control.TokenFile = "token", "token.txt"
				c.Engine.DataRoot = `data\docker`
				c.Cache.Local.Dir = "C:cache"
			},
			want: []string{
				`control.tokenFile: "token.txt" is not an absolute path; write the full path`,
				`engine.dataRoot: "data\\docker" is not an absolute path; write the full path`,
				`cache.local.dir: "C:cache" is not an absolute path; write the full path`,
			},
		},
		{
			name: "bad ports and names",
			change: func(c *Config) {
				c.Cache.Listen = "127.0.0.1:0"
				c.Health.Listen = "127.0.0.1:http"
				c.Engine.Channel = ""
				c.Cache.Upstreams[""] = DefaultUpstream()
				c.Cache.Prewarm = []string{" "}
			},
			want: []string{
				"engine.channel: is empty; name a release channel such as stable",
				`cache.listen: the port "0" is not a number from 1 to 65535`,
				`cache.upstreams[""]: "" is not a registry name; write it as images use it, such as docker.io or myregistry.azurecr.io`,
				"cache.prewarm[0]: is empty; write an image reference such as mcr.microsoft.com/windows/nanoserver:ltsc2022",
				`health.listen: the port "http" is not a number from 1 to 65535`,
			},
		},
		{
			name: "two keys for one registry",
			change: func(c *Config) {
				c.Cache.Upstreams["Registry.Example:5000"] = DefaultUpstream()
				c.Cache.Upstreams["registry.example:5000"] = DefaultUpstream()
				c.Cache.Upstreams["docker.io"] = DefaultUpstream()
				c.Cache.Upstreams["index.docker.io"] = DefaultUpstream()
			},
			want: []string{
				`cache.upstreams["index.docker.io"]: names the same registry as cache.upstreams["docker.io"] (docker.io: host names ignore case, and Docker Hub's aliases are docker.io); keep one of them`,
				`cache.upstreams["registry.example:5000"]: names the same registry as cache.upstreams["Registry.Example:5000"] (registry.example:5000: host names ignore case, and Docker Hub's aliases are docker.io); keep one of them`,
			},
		},
		{
			name: "windows and loopback forms are accepted",
			change: func(c *Config) {
				c.Agent.StateDir = `\\server\share\berth`
				c.Engine.Endpoint = "npipe:////./pipe/docker_engine"
				c.Engine.Releases.URL = `C:\releases`
				c.Cache.Listen = "localhost:5050"
				c.Control.URL = "http://127.0.0.1:8080"
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.change(&c)
			var got []string
			if err := c.Validate(); err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Validate (-want +got):\n%s", diff)
			}
		})
	}
}

// TestValidateAfterChange checks that a Config from a file keeps naming
// lines when it is changed and validated again.
func TestValidateAfterChange(t *testing.T) {
	cfg, err := Parse("agent.yaml", []byte("engine:\n  flavor: docker\n"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Engine.Flavor = "podman"
	want := `agent.yaml:2:3: engine.flavor: "podman" is not allowed; use one of docker, containerd`
	if err := cfg.Validate(); err == nil || err.Error() != want {
		t.Errorf("Validate = %v, want %s", err, want)
	}
}
