package svc

import (
	"bytes"
	"fmt"
	"strings"
	"text/template"
	"unicode"
)

// UnitDir is where the agent's systemd unit is written: the administrator's
// folder, which wins over units that packages put in /usr/lib/systemd.
const UnitDir = "/etc/systemd/system"

// systemdUnit is the agent's unit. Berth renders and writes it itself
// (kardianos/service refuses to install over an existing unit, so it could
// neither repair a drifted unit nor rewrite one after an upgrade). Where it
// departs from kardianos' own template, and why:
//
//   - Restart=always with RestartSec=5, not 120 s: a crashed agent is back
//     in seconds.
//   - StartLimitIntervalSec and StartLimitBurst sit in [Unit], where systemd
//     reads them (in [Service] the *Sec name is ignored). 20 starts a
//     minute is more than Restart can make with RestartSec=5, so a crash
//     loop keeps retrying; only a storm of manual starts is held back.
//   - After= and Wants=network-online.target: the agent's first act is to
//     reach IMDS, Azure Storage and the control endpoint.
//   - KillMode=process: stopping or restarting the agent signals the agent
//     alone, so engine processes it supervises (and a provisioning step's
//     children, such as a package download it hands to the engine) keep
//     running.
//   - TimeoutStopSec=30, above the agent's own 25 s stop timeout.
const systemdUnit = `[Unit]
Description={{.Description}}
Documentation=https://github.com/berthhq/berth
ConditionFileIsExecutable={{.Executable|path}}
After=network-online.target
Wants=network-online.target
StartLimitIntervalSec=60
StartLimitBurst=20

[Service]
Type=simple
ExecStart={{.Executable|path}}{{range .Arguments}} {{.|arg}}{{end}}
Restart=always
RestartSec=5
KillMode=process
TimeoutStopSec=30
EnvironmentFile=-/etc/default/{{.Name}}

[Install]
WantedBy=multi-user.target
`

var unitTemplate = template.Must(template.New("unit").Funcs(template.FuncMap{
	"path": unitPath,
	"arg":  unitArg,
}).Parse(systemdUnit))

// unitPath escapes a path for a unit file: a space would split the
// command line, and systemd reads % as a specifier.
func unitPath(p string) string {
	return strings.NewReplacer(" ", `\x20`, `%`, `%%`, `\`, `\\`).Replace(p)
}

// unitArg quotes one argument of ExecStart: inside double quotes systemd
// reads C escapes, % specifiers and $ variables, so each is escaped.
func unitArg(a string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, `%`, `%%`, `$`, `$$`).Replace(a) + `"`
}

// UnitFile is the name of the agent's unit file for service name.
func UnitFile(name string) string { return name + ".service" }

// RenderUnit returns the systemd unit of the service cfg describes. A field
// holding a control character is refused: a newline in a description or an
// argument (from --config, say) would add a directive of its own choosing,
// such as ExecStartPre=, to a unit that runs as root.
func RenderUnit(cfg Config) ([]byte, error) {
	cfg = cfg.withDefaults()
	fields := append([]string{cfg.Name, cfg.Description, cfg.Executable}, cfg.Arguments...)
	for _, f := range fields {
		if i := strings.IndexFunc(f, unicode.IsControl); i >= 0 {
			return nil, fmt.Errorf("render unit %s: %q holds a control character at byte %d; unit files are line-based", cfg.Name, f, i)
		}
	}
	if !strings.HasPrefix(cfg.Executable, "/") {
		return nil, fmt.Errorf("render unit %s: executable %q is not an absolute path; systemd needs one", cfg.Name, cfg.Executable)
	}
	if strings.ContainsAny(cfg.Name, `/\ `) || cfg.Name == "" {
		return nil, fmt.Errorf("render unit: service name %q is not a unit name", cfg.Name)
	}
	var buf bytes.Buffer
	if err := unitTemplate.Execute(&buf, cfg); err != nil {
		return nil, fmt.Errorf("render unit %s: %w", cfg.Name, err)
	}
	return buf.Bytes(), nil
}

// InstallChange is what Install did, or would do, to a service definition.
type InstallChange string

// The changes Install reports.
const (
	Created   InstallChange = "created"   // nothing was installed
	Repaired  InstallChange = "repaired"  // a definition that drifted was rewritten
	Unchanged InstallChange = "unchanged" // the definition was already as wanted
)

// unitChange decides what Install does to a unit file: exists says whether
// a file is there, current is its content.
func unitChange(exists bool, current, want []byte) InstallChange {
	switch {
	case !exists:
		return Created
	case !bytes.Equal(current, want):
		return Repaired
	}
	return Unchanged
}
