package config

import (
	"errors"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/berthhq/berth/imagecache/blobtier"
	"github.com/berthhq/berth/imagecache/upstream"
	"github.com/berthhq/berth/internal/azstore"
	"github.com/berthhq/berth/internal/units"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// golden compares got with the file at path, or rewrites it under -update.
func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs (-want +got); run go test -update if the change is right:\n%s", path, diff)
	}
}

func TestGoldenShow(t *testing.T) {
	cfg, err := Load("testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	y, err := cfg.ShowYAML()
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "testdata/full.show.yaml.golden", y)
	j, err := cfg.ShowJSON()
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "testdata/full.show.json.golden", j)

	// The JSON form of the same settings (VM extension publicSettings)
	// gives the same Config.
	fromJSON, err := Load("testdata/full.json")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(cfg, fromJSON); diff != "" {
		t.Errorf("full.json differs from full.yaml (-yaml +json):\n%s", diff)
	}
	checkRoundTrip(t, cfg)
}

func TestGoldenErrors(t *testing.T) {
	for _, name := range []string{"bad.yaml", "bad.json"} {
		t.Run(name, func(t *testing.T) {
			_, err := Load(filepath.Join("testdata", name))
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("Load: got %v, want Errors", err)
			}
			golden(t, filepath.Join("testdata", name+".golden"), []byte(err.Error()+"\n"))
		})
	}
}

// parseCases are valid inputs and how they change Default().
var parseCases = []struct {
	name string
	in   string
	want func(*Config)
}{
	{name: "empty", in: ""},
	{name: "only comments", in: "# nothing here\n\n"},
	{name: "document marker", in: "---\n"},
	{name: "null file", in: "null\n"},
	{name: "empty JSON object", in: " {}\n"},
	{name: "null sections keep defaults", in: "agent:\ncontrol: ~\ncache: null\n"},
	{name: "null value keeps default", in: "control:\n  auth:\n  reportInterval: ~\n"},
	{
		name: "byte order mark",
		in:   "\uFEFFengine:\n  flavor: containerd\n",
		want: func(c *Config) { c.Engine.Flavor = "containerd" },
	},
	{
		name: "numbers in string keys stay as written",
		in:   "engine:\n  version: 1.10\nagent:\n  id: 0x1F\n  labels:\n    ring: 1\n    canary: true\n",
		want: func(c *Config) {
			c.Engine.Version = "1.10"
			c.Agent.ID = "0x1F"
			c.Agent.Labels = map[string]string{"ring": "1", "canary": "true"}
		},
	},
	{
		name: "booleans",
		in:   "engine:\n  managed: false\ncache:\n  enabled: false\nprovision:\n  allowReboot: true\n",
		want: func(c *Config) {
			c.Engine.Managed = false
			c.Cache.Enabled = false
			c.Provision.AllowReboot = true
		},
	},
	{
		name: "durations and sizes",
		in:   "control:\n  reportInterval: 1h30m\nengine:\n  upgrade:\n    healthTimeout: 90s\ncache:\n  local:\n    maxSize: 1.5GB\n",
		want: func(c *Config) {
			c.Control.ReportInterval = units.Duration(90 * time.Minute)
			c.Engine.Upgrade.HealthTimeout = units.Duration(90 * time.Second)
			c.Cache.Local.MaxSize = 1500 * 1000 * 1000
		},
	},
	{
		name: "settings become plain JSON values",
		in: `engine:
  settings:
    a: 1
    b: [x, 2.5, true, null]
    c: {d: 0x1F, e: yes}
    f: 2001-12-14
    g: "multi
      word"
    h: |
      line one
      line two
`,
		want: func(c *Config) {
			c.Engine.Settings = map[string]any{
				"a": float64(1),
				"b": []any{"x", 2.5, true, nil},
				"c": map[string]any{"d": float64(31), "e": "yes"},
				"f": "2001-12-14",
				"g": "multi word",
				"h": "line one\nline two\n",
			}
		},
	},
	{
		name: "storage entries start from their defaults",
		in:   "cache:\n  storage:\n    - url: https://a.blob.core.windows.net/c\n    - url: https://b.blob.core.windows.net/c\n      auth: none\n",
		want: func(c *Config) {
			c.Cache.Storage = []blobtier.Config{
				{URL: "https://a.blob.core.windows.net/c", Credential: azstore.Credential{Auth: "managed-identity"}},
				{URL: "https://b.blob.core.windows.net/c", Credential: azstore.Credential{Auth: "none"}},
			}
		},
	},
	{
		name: "upstream written with no value gets the defaults",
		in:   "cache:\n  upstreams:\n    ghcr.io:\n    docker.io: {endpoint: https://registry-1.docker.io}\n",
		want: func(c *Config) {
			c.Cache.Upstreams = map[string]upstream.Config{
				"ghcr.io":   {Auth: "none"},
				"docker.io": {Endpoint: "https://registry-1.docker.io", Auth: "none"},
			}
		},
	},
	{
		name: "windows paths",
		in:   "agent:\n  stateDir: 'C:\\ProgramData\\Berth'\ncache:\n  local:\n    dir: D:/cache\n",
		want: func(c *Config) {
			c.Agent.StateDir = `C:\ProgramData\Berth`
			c.Cache.Local.Dir = "D:/cache"
		},
	},
	{
		name: "JSON with tabs and a surrogate pair",
		in:   "{\n\t\"engine\": {\n\t\t\"managed\": false,\n\t\t\"settings\": {\"emoji\": \"\\ud83d\\ude00\", \"big\": 12345678901234567890}\n\t}\n}",
		want: func(c *Config) {
			c.Engine.Managed = false
			c.Engine.Settings = map[string]any{"emoji": "😀", "big": 12345678901234567890.0}
		},
	},
	{
		name: "loopback listeners and http to loopback",
		in:   "cache:\n  listen: '[::1]:5050'\n  upstreams:\n    registry.internal: {endpoint: 'http://localhost:5000'}\nhealth:\n  listen: :8765\n",
		want: func(c *Config) {
			c.Cache.Listen = "[::1]:5050"
			c.Cache.Upstreams = map[string]upstream.Config{"registry.internal": {Endpoint: "http://localhost:5000", Auth: "none"}}
			c.Health.Listen = ":8765"
		},
	},
	{
		name: "releases from a folder",
		in:   "engine:\n  releases:\n    url: /srv/releases\n    auth: none\n",
		want: func(c *Config) {
			c.Engine.Releases.URL = "/srv/releases"
			c.Engine.Releases.Auth = "none"
		},
	},
}

func TestParse(t *testing.T) {
	for _, tc := range parseCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse("agent.yaml", []byte(tc.in))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			want := Default()
			if tc.want != nil {
				tc.want(&want)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Parse (-want +got):\n%s", diff)
			}
			checkRoundTrip(t, got)
		})
	}
}

const (
	topKeys    = "agent, control, engine, update, cache, health, provision"
	engineKeys = "managed, flavor, version, channel, releases, endpoint, dataRoot, settings, upgrade"
)

// errorCases are inputs that must fail, with every line of the error.
var errorCases = []struct {
	name string
	in   string
	want []string
}{
	{
		name: "unknown key at the top level",
		in:   "foo: 1\n",
		want: []string{`agent.yaml:1:1: foo: unknown key "foo" at the top level; allowed: ` + topKeys},
	},
	{
		name: "misspelled key",
		in:   "engine:\n  dataroot: /x\n",
		want: []string{`agent.yaml:2:3: engine.dataroot: unknown key "dataroot" in engine (did you mean "dataRoot"?); allowed: ` + engineKeys},
	},
	{
		name: "look-alike key",
		in:   "\u0435ngine:\n  flavor: docker\n",
		want: []string{`agent.yaml:1:1: ["\u0435ngine"]: unknown key "\u0435ngine" at the top level (did you mean "engine"?); allowed: ` + topKeys},
	},
	{
		name: "bad duration",
		in:   "engine:\n  upgrade:\n    healthTimeout: 5 minutes\n",
		want: []string{`agent.yaml:3:5: engine.upgrade.healthTimeout: "5 minutes" is not a duration; write a Go duration such as 90s, 5m or 1h30m`},
	},
	{
		name: "negative duration",
		in:   "control:\n  reportInterval: -5s\n",
		want: []string{`agent.yaml:2:3: control.reportInterval: "-5s" is negative; a duration must be zero or more`},
	},
	{
		name: "duration too short",
		in:   "control:\n  reportInterval: 10ms\nengine:\n  upgrade:\n    healthTimeout: 0s\nupdate:\n  healthTimeout: 500ms\n",
		want: []string{
			`agent.yaml:2:3: control.reportInterval: is 10ms; it must be at least 1s`,
			`agent.yaml:5:5: engine.upgrade.healthTimeout: is 0s; it must be at least 1s`,
			`agent.yaml:7:3: update.healthTimeout: is 500ms; it must be at least 1s`,
		},
	},
	{
		name: "duration as a list",
		in:   "control:\n  reportInterval: [60s]\n",
		want: []string{`agent.yaml:2:3: control.reportInterval: is a list; want a duration such as 90s, 5m or 1h30m`},
	},
	{
		name: "yes is not a boolean",
		in:   "engine:\n  managed: yes\n",
		want: []string{`agent.yaml:2:3: engine.managed: "yes" is not a boolean; write true or false`},
	},
	{
		name: "quoted boolean",
		in:   "engine:\n  managed: \"true\"\n",
		want: []string{`agent.yaml:2:3: engine.managed: "true" is quoted, so it is a string; write true or false without quotes`},
	},
	{
		name: "capitalised boolean",
		in:   "cache:\n  enabled: True\n",
		want: []string{`agent.yaml:2:3: cache.enabled: "True" is not a boolean; write true or false`},
	},
	{
		name: "list where a mapping is wanted",
		in:   "engine: [docker]\n",
		want: []string{`agent.yaml:1:1: engine: is a list; want a mapping with the keys ` + engineKeys},
	},
	{
		name: "the file is a list",
		in:   "- agent\n",
		want: []string{`agent.yaml:1:1: the file holds a list; want a mapping with the keys ` + topKeys},
	},
	{
		name: "string where a list is wanted",
		in:   "cache:\n  prewarm: busybox\n",
		want: []string{`agent.yaml:2:3: cache.prewarm: is the string "busybox"; want a list`},
	},
	{
		name: "mapping where a string is wanted",
		in:   "agent:\n  id: {a: 1}\n",
		want: []string{`agent.yaml:2:3: agent.id: is a mapping; want a string`},
	},
	{
		name: "null list item",
		in:   "cache:\n  prewarm:\n    - busybox\n    - \n",
		want: []string{`agent.yaml:4:6: cache.prewarm[1]: is empty (null); want a string (write "" for an empty one)`},
	},
	{
		name: "null label",
		in:   "agent:\n  labels:\n    pool: ~\n",
		want: []string{`agent.yaml:3:5: agent.labels.pool: is empty (null); want a string (write "" for an empty one)`},
	},
	{
		name: "duplicate keys",
		in:   "engine:\n  flavor: docker\n  flavor: containerd\nagent:\n  labels: {a: x, a: y}\n",
		want: []string{
			`agent.yaml:3:3: engine.flavor: duplicate key; it is first written at line 2`,
			`agent.yaml:5:18: agent.labels.a: duplicate key; it is first written at line 5`,
		},
	},
	{
		name: "anchor and alias",
		in:   "agent:\n  id: &x a\n  stateDir: *x\n",
		want: []string{
			`agent.yaml:2:7: agent.id: anchors (&x) are not allowed; write each value out`,
			`agent.yaml:3:13: agent.stateDir: aliases (*x) are not allowed; write the value out`,
		},
	},
	{
		name: "merge key",
		in:   "engine:\n  <<: {flavor: docker}\n",
		want: []string{`agent.yaml:2:3: engine: merge keys (<<) are not allowed; write the keys out`},
	},
	{
		name: "custom tag",
		in:   "agent:\n  id: !vault secret/x\n",
		want: []string{`agent.yaml:2:7: agent.id: the tag "!vault" is not allowed; remove it`},
	},
	{
		name: "number as key",
		in:   "agent:\n  labels:\n    1: x\n",
		want: []string{`agent.yaml:3:5: agent.labels: a key is the number 1; keys must be strings (quote it)`},
	},
	{
		name: "NaN in settings",
		in:   "engine:\n  settings:\n    x: .nan\n    y: [-.inf]\n",
		want: []string{
			`agent.yaml:3:8: engine.settings.x: ".nan" is not a number JSON can hold`,
			`agent.yaml:4:9: engine.settings.y[0]: "-.inf" is not a number JSON can hold`,
		},
	},
	{
		name: "two documents",
		in:   "agent: {}\n---\nagent: {}\n",
		want: []string{`agent.yaml:2:1: a second YAML document starts here; the file must hold exactly one`},
	},
	{
		name: "tab indentation",
		in:   "agent:\n\tid: x\n",
		want: []string{`agent.yaml:2: not valid YAML: found character that cannot start any token; indent with spaces: YAML does not allow tabs`},
	},
	{
		name: "inline account key",
		in:   "engine:\n  releases:\n    key: c2VjcmV0\n",
		want: []string{`agent.yaml:3:5: engine.releases.key: unknown key "key" in engine.releases; secrets never go in the config: put it in a file and set keyFile to its path, or set AZURE_STORAGE_KEY`},
	},
	{
		name: "inline SAS token",
		in:   "cache:\n  storage:\n    - url: https://a.blob.core.windows.net/c\n      sasToken: sv=1&sig=2\n",
		want: []string{`agent.yaml:4:7: cache.storage[0].sasToken: unknown key "sasToken" in cache.storage[0]; secrets never go in the config: put it in a file and set sasFile to its path, or set AZURE_STORAGE_SAS_TOKEN`},
	},
	{
		name: "inline password and user name",
		in:   "cache:\n  upstreams:\n    ghcr.io:\n      username: me\n      password: hunter2\n",
		want: []string{
			`agent.yaml:4:7: cache.upstreams["ghcr.io"].username: unknown key "username" in cache.upstreams["ghcr.io"]; put the value in a file and set usernameFile to its path`,
			`agent.yaml:5:7: cache.upstreams["ghcr.io"].password: unknown key "password" in cache.upstreams["ghcr.io"]; secrets never go in the config: put it in a file and set passwordFile to its path`,
		},
	},
	{
		name: "inline control token",
		in:   "control:\n  token: abc\n  clientSecret: def\n",
		want: []string{
			`agent.yaml:2:3: control.token: unknown key "token" in control; secrets never go in the config: put it in a file and set tokenFile to its path`,
			`agent.yaml:3:3: control.clientSecret: unknown key "clientSecret" in control; secrets never go in the config: keep it in a file or the environment`,
		},
	},
	{
		name: "enums",
		in:   "control:\n  auth: msi\nengine:\n  flavor: moby\ncache:\n  upstreams:\n    ghcr.io: {auth: bearer}\n",
		want: []string{
			`agent.yaml:2:3: control.auth: "msi" is not allowed; use one of managed-identity, token, none`,
			`agent.yaml:4:3: engine.flavor: "moby" is not allowed; use one of docker, containerd`,
			`agent.yaml:7:15: cache.upstreams["ghcr.io"].auth: "bearer" is not allowed; use one of none, basic, managed-identity`,
		},
	},
	{
		name: "auth and the keys that go with it",
		in: `control:
  auth: token
engine:
  releases:
    auth: managed-identity
    keyFile: /etc/berth/key
cache:
  upstreams:
    ghcr.io: {auth: basic, usernameFile: /u}
`,
		want: []string{
			`agent.yaml:2:3: control.auth: token needs tokenFile: the path of the file that holds the token`,
			`agent.yaml:6:5: engine.releases.keyFile: is set but auth is managed-identity; it is used only with auth: shared-key`,
			`agent.yaml:9:15: cache.upstreams["ghcr.io"].auth: basic needs usernameFile and passwordFile: the paths of the files that hold them`,
		},
	},
	{
		name: "URLs",
		in: `control:
  url: ftp://control
engine:
  releases:
    url: releases/
cache:
  storage:
    - url: https://a.blob.core.windows.net/c?sv=2022&sig=abc
    - url: https://b.blob.core.windows.net/
    - auth: none
  upstreams:
    registry.internal: {endpoint: "http://10.0.0.5:5000"}
    mirror.example: {endpoint: "https://user:pw@mirror.example"}
`,
		want: []string{
			`agent.yaml:2:3: control.url: "ftp://control" is not an https URL; write it like https://host/path`,
			`agent.yaml:5:5: engine.releases.url: "releases/" is neither an https URL nor an absolute folder path`,
			`agent.yaml:8:7: cache.storage[0].url: must not have a query string (?...); a SAS token goes in sasFile or AZURE_STORAGE_SAS_TOKEN, with auth: sas`,
			`agent.yaml:9:7: cache.storage[1].url: "https://b.blob.core.windows.net/" names no container; write https://<account>.blob.core.windows.net/<container>`,
			`agent.yaml:10:7: cache.storage[2].url: is missing; write the container's URL: https://<account>.blob.core.windows.net/<container>`,
			`agent.yaml:12:25: cache.upstreams["registry.internal"].endpoint: "http://10.0.0.5:5000" uses plain http to a host that is not loopback; use https (plain http is allowed only to 127.0.0.1, ::1 or localhost)`,
			`agent.yaml:13:22: cache.upstreams["mirror.example"].endpoint: must not carry a user name or password; credentials go in files or the environment`,
		},
	},
	{
		name: "listen addresses",
		in:   "cache:\n  listen: 0.0.0.0:5050\nhealth:\n  listen: 8765\n",
		want: []string{
			`agent.yaml:2:3: cache.listen: "0.0.0.0:5050" is not a loopback address; the cache has no TLS or authentication yet, so it listens only on 127.0.0.1, ::1 or localhost`,
			`agent.yaml:4:3: health.listen: "8765" is not host:port; write it like 127.0.0.1:5050`,
		},
	},
	{
		name: "paths and endpoint",
		in:   "agent:\n  stateDir: berth\nengine:\n  endpoint: tcp://127.0.0.1:2375\n",
		want: []string{
			`agent.yaml:2:3: agent.stateDir: "berth" is not an absolute path; write the full path`,
			`agent.yaml:4:3: engine.endpoint: "tcp://127.0.0.1:2375" is not an engine address; write it like unix:///var/run/docker.sock or npipe:////./pipe/docker_engine`,
		},
	},
	{
		name: "sizes",
		in:   "cache:\n  local:\n    maxSize: 0B\n",
		want: []string{`agent.yaml:3:5: cache.local.maxSize: is 0B; it must be more than zero`},
	},
	{
		name: "NaN size",
		in:   "cache:\n  local:\n    maxSize: NaNGiB\n",
		want: []string{`agent.yaml:3:5: cache.local.maxSize: "NaNGiB" is not a size; write a number and a unit such as 512MiB, 50GiB or 2TB`},
	},
	{
		name: "empty label key and registry names",
		in:   "agent:\n  labels:\n    \"\": x\ncache:\n  allow: [docker.io/library]\n",
		want: []string{
			`agent.yaml:3:5: agent.labels[""]: a label key is empty`,
			`agent.yaml:5:11: cache.allow[0]: "docker.io/library" is not a registry name; write it as images use it, such as docker.io or myregistry.azurecr.io`,
		},
	},
	{
		name: "a type error hides the checks of the same key",
		in:   "cache:\n  storage:\n    - url: [x]\n",
		want: []string{`agent.yaml:3:7: cache.storage[0].url: is a list; want a string`},
	},
	{
		name: "invisible character",
		in:   "agent:\n  id: \"vm\\u200b1\"\n",
		want: []string{`agent.yaml:2:3: agent.id: contains the invisible character U+200B; retype the value`},
	},
	{
		name: "JSON syntax error",
		in:   "{\"agent\": {\"id\": \"x\",}}",
		want: []string{`agent.yaml:1:22: not valid JSON: invalid character '}' looking for beginning of object key string`},
	},
	{
		name: "JSON string for a boolean",
		in:   "{\n  \"engine\": {\"managed\": \"false\"}\n}",
		want: []string{`agent.yaml:2:14: engine.managed: "false" is quoted, so it is a string; write true or false without quotes`},
	},
	{
		name: "JSON duplicate keys",
		in:   `{"agent": {}, "agent": {}}`,
		want: []string{`agent.yaml:1:15: agent: duplicate key; it is first written at line 1`},
	},
	{
		name: "JSON trailing data",
		in:   "{}\n{}",
		want: []string{`agent.yaml:2:1: not valid JSON: more data after the end of the top-level value`},
	},
	{
		name: "JSON cut short",
		in:   `{"agent": {"id": `,
		want: []string{`agent.yaml:1:18: not valid JSON: the file ends inside a value`},
	},
}

func TestParseErrors(t *testing.T) {
	for _, tc := range errorCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse("agent.yaml", []byte(tc.in))
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("Parse: got error %v, want Errors", err)
			}
			if diff := cmp.Diff(tc.want, strings.Split(err.Error(), "\n")); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(Config{}, got); diff != "" {
				t.Errorf("a failed Parse returned a Config:\n%s", diff)
			}
		})
	}
}

func TestFieldError(t *testing.T) {
	for _, tc := range []struct {
		err  FieldError
		want string
	}{
		{FieldError{File: "a.yaml", Key: "k", Line: 3, Column: 5, Msg: "m"}, "a.yaml:3:5: k: m"},
		{FieldError{File: "a.yaml", Key: "k", Line: 3, Msg: "m"}, "a.yaml:3: k: m"},
		{FieldError{File: "a.yaml", Key: "k", Msg: "m"}, "a.yaml: k: m"},
		{FieldError{Key: "k", Msg: "m"}, "k: m"},
		{FieldError{Msg: "m"}, "m"},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
	var fe FieldError
	if err := (Errors{{Key: "a", Msg: "m"}}).err(); !errors.As(err, &fe) || fe.Key != "a" {
		t.Errorf("errors.As(Errors, *FieldError) = %v", fe)
	}
	if err := (Errors{}).err(); err != nil {
		t.Errorf("no errors gave %#v, want nil", err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(filepath.Join(dir, "missing.yaml")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: got %v, want fs.ErrNotExist", err)
	}
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, []byte("#"+strings.Repeat("x", MaxFileSize)), 0o644); err != nil {
		t.Fatal(err)
	}
	want := big + ": the file is larger than 1048576 bytes (1 MiB); that is not an agent configuration"
	if _, err := Load(big); err == nil || err.Error() != want {
		t.Errorf("big file: got %v, want %s", err, want)
	}
	cfg, err := Load("testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Source == nil || cfg.Source.Name != "testdata/full.yaml" {
		t.Errorf("Source = %+v, want the path", cfg.Source)
	}
}
