package server_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/berthhq/berth/control/server"
	"github.com/berthhq/berth/control/store"
)

func TestParseConfig(t *testing.T) {
	want := server.DefaultConfig()
	want.Listen = ":9090"
	want.DB = "sqlite:///var/lib/berth-control/control.db"
	want.Auth = "entra,token"
	want.Entra = server.EntraConfig{Tenant: "t", Audience: "api://berth-control", OperatorRole: "Ops",
		AgentScope: "/subscriptions/0b1c2d3e-aaaa-4bbb-8ccc-1234567890ab/resourceGroups/fleet"}
	want.Retention = "heartbeats=7d,eventsPerHost=500"
	want.Quota.RecordsPerMinute = 1200
	want.Releases = server.ReleasesConfig{URL: "/srv/releases", Root: "/etc/berth-control/root.json"}
	tests := []struct {
		name, data string
	}{
		{"yaml", `
listen: ":9090"
db: sqlite:///var/lib/berth-control/control.db
auth: entra,token
entra:
  tenant: t
  audience: api://berth-control
  operatorRole: Ops
  agentScope: /subscriptions/0b1c2d3e-aaaa-4bbb-8ccc-1234567890ab/resourceGroups/fleet
retention: heartbeats=7d,eventsPerHost=500
quota:
  recordsPerMinute: 1200
releases:
  url: /srv/releases
  root: /etc/berth-control/root.json
`},
		{"json", `{"listen": ":9090", "db": "sqlite:///var/lib/berth-control/control.db", "auth": "entra,token",
 "entra": {"tenant": "t", "audience": "api://berth-control", "operatorRole": "Ops",
 "agentScope": "/subscriptions/0b1c2d3e-aaaa-4bbb-8ccc-1234567890ab/resourceGroups/fleet"},
 "retention": "heartbeats=7d,eventsPerHost=500", "quota": {"recordsPerMinute": 1200},
 "releases": {"url": "/srv/releases", "root": "/etc/berth-control/root.json"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := server.ParseConfig(tt.name, []byte(tt.data), server.DefaultConfig())
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if _, err := got.Methods(); err != nil {
				t.Errorf("Methods: %v", err)
			}
		})
	}
	empty, err := server.ParseConfig("empty", nil, server.DefaultConfig())
	if err != nil || empty != server.DefaultConfig() {
		t.Errorf("empty file: %+v %v", empty, err)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tt := range []struct{ name, data, want string }{
		{"unknown key", "listen: :1\ndatabase: x\n", "line 2"},
		{"wrong type", "entra: 5\n", "line 1"},
		{"two documents", "listen: :1\n---\nlisten: :2\n", "more than one document"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := server.ParseConfig("c.yaml", []byte(tt.data), server.DefaultConfig())
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "c.yaml") {
				t.Errorf("err %v, want one naming c.yaml and %q", err, tt.want)
			}
		})
	}
	for _, tt := range []struct {
		name string
		mod  func(*server.Config)
		want string
	}{
		{"no db", func(c *server.Config) { c.DB = "" }, "--db"},
		{"bad listen", func(c *server.Config) { c.DB = "sqlite://x"; c.Listen = "8080" }, "host:port"},
		{"bad auth", func(c *server.Config) { c.DB = "sqlite://x"; c.Auth = "magic" }, "magic"},
		{"entra without tenant", func(c *server.Config) { c.DB = "sqlite://x"; c.Auth = "entra" }, "--entra-tenant"},
		{"agent scope without entra", func(c *server.Config) {
			c.DB = "sqlite://x"
			c.Entra.AgentScope = "/subscriptions/0b1c2d3e-aaaa-4bbb-8ccc-1234567890ab"
		}, "--auth does not accept Entra"},
		{"tls cert alone", func(c *server.Config) { c.DB = "sqlite://x"; c.TLS.Cert = "c.pem" }, "--tls-cert and --tls-key go together"},
		{"releases without a root", func(c *server.Config) { c.Releases.URL = "/srv/releases" }, "--releases and --releases-root go together"},
		{"a root without releases", func(c *server.Config) { c.Releases.Root = "root.json" }, "--releases and --releases-root go together"},
		{"bad trusted proxies", func(c *server.Config) { c.DB = "sqlite://x"; c.TLS.TrustedProxies = "10.0.0.0/8,proxy" }, `--trusted-proxies "proxy"`},
		{"bad agent scope", func(c *server.Config) {
			c.DB, c.Auth, c.Entra = "sqlite://x", "entra", server.EntraConfig{Tenant: "t", Audience: "a", AgentScope: "/subscriptions/prod"}
		}, "--entra-agent-scope"},
		{"bad retention", func(c *server.Config) { c.Retention = "history=1d" }, `--retention: retention: unknown key "history"`},
		{"negative quota", func(c *server.Config) { c.Quota.BytesPerMinute = -1 }, "cannot be negative"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := server.DefaultConfig()
			tt.mod(&c)
			if _, err := c.Methods(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err %v, want one saying %q", err, tt.want)
			}
		})
	}
}

func TestWarnings(t *testing.T) {
	c := server.DefaultConfig()
	if w := c.Warnings(); len(w) != 0 {
		t.Errorf("warnings for token auth: %q", w)
	}
	c.Auth = "none"
	if w := c.Warnings(); len(w) != 1 || !strings.Contains(w[0], "WARNING") || strings.Contains(w[0], "beyond loopback") {
		t.Errorf("warnings for none on loopback: %q", w)
	}
	c.Listen = ":8080"
	if w := c.Warnings(); len(w) != 1 || !strings.Contains(w[0], "beyond loopback") {
		t.Errorf("warnings for none on every interface: %q", w)
	}
	c.Auth = "token"
	if w := c.Warnings(); len(w) != 1 || !strings.Contains(w[0], "plain http") {
		t.Errorf("warnings for plain http on every interface: %q", w)
	}
	c.TLS.Cert, c.TLS.Key = "c.pem", "k.pem"
	if w := c.Warnings(); len(w) != 0 {
		t.Errorf("warnings for https on every interface: %q", w)
	}
	c.TLS = server.TLSConfig{TrustedProxies: "10.0.0.0/8"}
	if w := c.Warnings(); len(w) != 0 {
		t.Errorf("warnings behind a TLS proxy: %q", w)
	}
}

func TestRedactDSN(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://berth:s3cret@db:5432/berth":      "postgres://berth:xxxxx@db:5432/berth",
		"postgres://db/berth?user=b&password=s3cret": "postgres://db/berth?password=xxxxx&user=b",
		"sqlite:///var/lib/berth-control/control.db": "sqlite:///var/lib/berth-control/control.db",
	} {
		if got := server.RedactDSN(in); got != want {
			t.Errorf("RedactDSN(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRetentionAndQuotaOptions(t *testing.T) {
	c := server.DefaultConfig()
	r, err := c.RetentionPolicy()
	if err != nil || r != store.DefaultRetention {
		t.Errorf("default retention %+v, %v; want %+v", r, err, store.DefaultRetention)
	}
	var o server.Options
	c.QuotaOptions(&o)
	if o.QuotaRecords != server.DefaultQuotaRecords || o.QuotaBytes != server.DefaultQuotaBytes {
		t.Errorf("default quota %d records, %d bytes", o.QuotaRecords, o.QuotaBytes)
	}
	c.Quota = server.QuotaConfig{RecordsPerMinute: 0, BytesPerMinute: 1 << 20}
	c.QuotaOptions(&o)
	if o.QuotaRecords != -1 || o.QuotaBytes != 1<<20 {
		t.Errorf("quota of 0 records: options %d records, %d bytes; want -1 (no bound) and 1 MiB", o.QuotaRecords, o.QuotaBytes)
	}
}
