package configedit

import (
	"errors"
	"strings"
	"testing"

	"github.com/berthhq/berth/agent/config"
)

const existing = `# Written by hand; keep this comment.
agent:
  stateDir: /var/lib/berth-test # and this one
engine:
  managed: false
control:
  reportInterval: 30s
`

func TestApply(t *testing.T) {
	out, err := Apply("agent.yaml", []byte(existing), Settings{
		ControlURL: "https://control.example/", Audience: "api://berth-control", Labels: "ring=canary, pool=build",
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse("agent.yaml", out)
	if err != nil {
		t.Fatalf("result does not load: %v\n%s", err, out)
	}
	if cfg.Control.URL != "https://control.example/" || cfg.Control.Audience != "api://berth-control" {
		t.Errorf("control: %+v", cfg.Control)
	}
	if cfg.Agent.Labels["ring"] != "canary" || cfg.Agent.Labels["pool"] != "build" || len(cfg.Agent.Labels) != 2 {
		t.Errorf("labels: %v", cfg.Agent.Labels)
	}
	if cfg.Engine.Managed || cfg.Agent.StateDir != "/var/lib/berth-test" || cfg.Control.ReportInterval.String() != "30s" {
		t.Errorf("other keys lost:\n%s", out)
	}
	for _, c := range []string{"# Written by hand; keep this comment.", "# and this one"} {
		if !strings.Contains(string(out), c) {
			t.Errorf("comment %q lost:\n%s", c, out)
		}
	}
	// Empty settings leave everything, an empty file gets only what is set.
	again, err := Apply("agent.yaml", out, Settings{})
	if err != nil || string(again) != string(out) {
		t.Errorf("empty settings changed the file: %v\n%s", err, again)
	}
	fresh, err := Apply("agent.yaml", nil, Settings{ControlURL: "http://127.0.0.1:9/"})
	if err != nil || !strings.HasSuffix(string(fresh), "\ncontrol:\n  url: http://127.0.0.1:9/\n") {
		t.Errorf("new file: %v\n%s", err, fresh)
	}
}

// TestApplyRefuses: bad input gives a config error (exit 2) and no data.
func TestApplyRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		data string
		s    Settings
		want string
	}{
		{"not a URL", "", Settings{ControlURL: "control.example"}, "control.url"},
		{"plain http off loopback", "", Settings{ControlURL: "http://control.example/"}, "plain http"},
		{"query string", "", Settings{ControlURL: "https://c.example/?sig=abc"}, "query string"},
		{"label without =", "", Settings{Labels: "ring=a,canary"}, `"canary" has no '='`},
		{"empty label key", "", Settings{Labels: "=x"}, "empty key"},
		{"duplicate label", "", Settings{Labels: "ring=a,ring=b"}, `"ring" is given twice`},
		{"huge value", "", Settings{Audience: strings.Repeat("a", MaxValue+1)}, "at most 4096"},
		{"control character", "", Settings{Audience: "api://x\x07"}, "control.audience"},
		{"duplicate key in file", "agent:\n  id: a\nagent:\n  id: b\n", Settings{ControlURL: "https://c.example/"}, "not valid"},
		{"broken file", "agent: [", Settings{ControlURL: "https://c.example/"}, "not valid"},
		{"not a mapping", "- a\n- b\n", Settings{ControlURL: "https://c.example/"}, "not valid"},
	} {
		out, err := Apply("agent.yaml", []byte(tc.data), tc.s)
		if err == nil || out != nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v (%d bytes), want an error with %q", tc.name, err, len(out), tc.want)
			continue
		}
		var ce config.Errors
		if !errors.As(err, &ce) {
			t.Errorf("%s: %v is not a config error (exit 2)", tc.name, err)
		}
	}
}

func FuzzApply(f *testing.F) {
	f.Add(existing, "https://c.example/", "a=b")
	f.Add("", "", "x")
	f.Fuzz(func(t *testing.T, data, url, labels string) {
		out, err := Apply("agent.yaml", []byte(data), Settings{ControlURL: url, Labels: labels})
		if err == nil {
			if _, err := config.Parse("agent.yaml", out); err != nil {
				t.Fatalf("Apply returned a config that does not load: %v", err)
			}
		}
	})
}
