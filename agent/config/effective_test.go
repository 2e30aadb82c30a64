package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/berthhq/berth/imagecache/blobtier"
	"github.com/berthhq/berth/imagecache/upstream"
	"github.com/berthhq/berth/internal/azstore"
	"github.com/berthhq/berth/internal/paths"
)

func TestEffective(t *testing.T) {
	stateDir := paths.StateDir()
	for _, tc := range []struct {
		name   string
		change func(*Config) // applied to Default()
		want   func(*Config) // applied to Default() and then to change
	}{
		{
			name: "defaults: platform state folder, Docker's endpoint, cache under the state folder",
			want: func(c *Config) {
				c.Agent.StateDir = stateDir
				c.Engine.Endpoint = paths.EngineEndpoint()
				c.Cache.Local.Dir = filepath.Join(stateDir, paths.CacheDir)
			},
		},
		{
			name:   "containerd: containerd's endpoint",
			change: func(c *Config) { c.Engine.Flavor = "containerd" },
			want: func(c *Config) {
				c.Engine.Flavor = "containerd"
				c.Agent.StateDir = stateDir
				c.Engine.Endpoint = paths.ContainerdEndpoint()
				c.Cache.Local.Dir = filepath.Join(stateDir, paths.CacheDir)
			},
		},
		{
			name:   "stateDir set: the cache follows it",
			change: func(c *Config) { c.Agent.StateDir = "/srv/berth" },
			want: func(c *Config) {
				c.Agent.StateDir = "/srv/berth"
				c.Engine.Endpoint = paths.EngineEndpoint()
				c.Cache.Local.Dir = filepath.Join("/srv/berth", paths.CacheDir)
			},
		},
		{
			name: "set values are kept; run-time keys stay empty",
			change: func(c *Config) {
				c.Agent.StateDir = "/srv/berth"
				c.Engine.Endpoint = "unix:///srv/docker.sock"
				c.Cache.Local.Dir = "/mnt/cache"
			},
			want: func(c *Config) {
				c.Agent.StateDir = "/srv/berth"
				c.Engine.Endpoint = "unix:///srv/docker.sock"
				c.Cache.Local.Dir = "/mnt/cache"
			},
		},
		{
			name: "upstreams: each registry's address as the client picks it",
			change: func(c *Config) {
				c.Agent.StateDir, c.Engine.Endpoint, c.Cache.Local.Dir = "/s", "unix:///e", "/c"
				c.Cache.Upstreams = map[string]upstream.Config{
					"docker.io":             {Auth: "none"},
					"myregistry.azurecr.io": {Auth: "managed-identity"},
					"127.0.0.1:5000":        {},
					"registry.internal":     {Endpoint: "http://127.0.0.1:5001", Auth: "none"},
				}
			},
			want: func(c *Config) {
				c.Agent.StateDir, c.Engine.Endpoint, c.Cache.Local.Dir = "/s", "unix:///e", "/c"
				c.Cache.Upstreams = map[string]upstream.Config{
					"docker.io":             {Endpoint: "https://registry-1.docker.io", Auth: "none"},
					"myregistry.azurecr.io": {Endpoint: "https://myregistry.azurecr.io", Auth: "managed-identity"},
					"127.0.0.1:5000":        {Endpoint: "http://127.0.0.1:5000", Auth: "none"},
					"registry.internal":     {Endpoint: "http://127.0.0.1:5001", Auth: "none"},
				}
			},
		},
		{
			name: "empty auths: what the clients read them as",
			change: func(c *Config) {
				c.Agent.StateDir, c.Engine.Endpoint, c.Cache.Local.Dir = "/s", "unix:///e", "/c"
				c.Control.Auth = ""
				c.Engine.Releases.Auth = ""
				c.Cache.Storage = []blobtier.Config{{URL: "https://a.blob.core.windows.net/c"}}
			},
			want: func(c *Config) {
				c.Agent.StateDir, c.Engine.Endpoint, c.Cache.Local.Dir = "/s", "unix:///e", "/c"
				c.Control.Auth = "none"
				c.Engine.Releases.Auth = "managed-identity"
				c.Cache.Storage = []blobtier.Config{{URL: "https://a.blob.core.windows.net/c", Credential: azstore.Credential{Auth: "managed-identity"}}}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := Default()
			if tc.change != nil {
				tc.change(&in)
			}
			before := Default()
			if tc.change != nil {
				tc.change(&before)
			}
			want := Default()
			tc.want(&want)
			if diff := cmp.Diff(want, in.Effective()); diff != "" {
				t.Errorf("Effective (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(before, in); diff != "" {
				t.Errorf("Effective changed its receiver (-before +after):\n%s", diff)
			}
			if err := in.Effective().Validate(); err != nil {
				t.Errorf("the effective config does not validate: %v", err)
			}
		})
	}
}

// A config file that cannot be read is a config error like a bad key: it
// is Errors (the CLI exits 2), names the path and says what to do, and
// still wraps the os error.
func TestLoadUnreadable(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name   string
		path   string
		want   string
		wantIs error
	}{
		{
			name:   "missing",
			path:   filepath.Join(dir, "nope.yaml"),
			want:   filepath.Join(dir, "nope.yaml") + ": the config file does not exist; write it (see docs/configuration.md), or give its path with --config or BERTH_CONFIG",
			wantIs: fs.ErrNotExist,
		},
		{
			name: "a folder",
			path: dir,
			want: dir + ": cannot read the config file: is a directory; give the path of a readable file with --config or BERTH_CONFIG",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "a folder" && runtime.GOOS == "windows" {
				t.Skip("Windows refuses to open a folder with another message")
			}
			_, err := Load(tc.path)
			var errs Errors
			if !errors.As(err, &errs) || len(errs) != 1 {
				t.Fatalf("Load = %#v, want Errors with one problem", err)
			}
			if got := err.Error(); got != tc.want {
				t.Errorf("Load error\n got %s\nwant %s", got, tc.want)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("errors.Is(err, %v) = false", tc.wantIs)
			}
		})
	}
	if os.Getuid() != 0 && os.Getuid() != -1 {
		locked := filepath.Join(dir, "locked.yaml")
		if err := os.WriteFile(locked, nil, 0o000); err != nil {
			t.Fatal(err)
		}
		_, err := Load(locked)
		if !errors.Is(err, fs.ErrPermission) || !strings.Contains(err.Error(), "run as a user that may read it") {
			t.Errorf("unreadable file: got %v", err)
		}
	}
}
