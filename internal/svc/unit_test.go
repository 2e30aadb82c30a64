package svc

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"text/template"

	"github.com/google/go-cmp/cmp"
	"github.com/kardianos/service"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// unitData mirrors the data kardianos/service v1.2.4 executes a
// SystemdScript with (service_systemd_linux.go, Install).
type unitData struct {
	*service.Config
	Path                 string
	HasOutputFileSupport bool
	ReloadSignal         string
	PIDFile              string
	LimitNOFILE          int
	Restart              string
	SuccessExitStatus    string
	LogOutput            bool
	LogDirectory         string
}

// unitFuncs are kardianos/service's template functions (service_linux.go).
var unitFuncs = template.FuncMap{
	"cmd":       func(s string) string { return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"` },
	"cmdEscape": func(s string) string { return strings.ReplaceAll(s, " ", `\x20`) },
}

func TestSystemdUnitGolden(t *testing.T) {
	cfg := Config{}.withDefaults()
	data := unitData{
		Config: &service.Config{
			Name:        cfg.Name,
			DisplayName: cfg.DisplayName,
			Description: cfg.Description,
			Arguments:   []string{"run", "--config", "/etc/berth/agent.yaml"},
		},
		Path:         "/usr/bin/berth-agent",
		LimitNOFILE:  -1,
		Restart:      "always",
		LogDirectory: "/var/log",
	}
	tmpl, err := template.New("").Funcs(unitFuncs).Parse(systemdUnit)
	if err != nil {
		t.Fatalf("parse unit template: %v", err)
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, data); err != nil {
		t.Fatalf("render unit: %v", err)
	}
	golden := filepath.Join("testdata", "berth-agent.service")
	if *update {
		if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("read golden file (run with -update to create it): %v", err)
	}
	if diff := cmp.Diff(string(want), buf.String()); diff != "" {
		t.Errorf("rendered unit differs from %s (-want +got):\n%s", golden, diff)
	}
}

func TestSystemdUnitSections(t *testing.T) {
	// Keys systemd ignores when misplaced: check each is in its section.
	want := map[string]string{
		"StartLimitIntervalSec": "[Unit]",
		"StartLimitBurst":       "[Unit]",
		"After":                 "[Unit]",
		"Wants":                 "[Unit]",
		"Restart":               "[Service]",
		"RestartSec":            "[Service]",
		"KillMode":              "[Service]",
		"WantedBy":              "[Install]",
	}
	section := ""
	got := map[string]string{}
	for _, line := range strings.Split(systemdUnit, "\n") {
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = line
			continue
		}
		if k, _, ok := strings.Cut(line, "="); ok {
			if _, asked := want[k]; asked {
				got[k] = section
			}
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("sections (-want +got):\n%s", diff)
	}
}
