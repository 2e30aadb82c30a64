package svc

// systemdUnit is the unit kardianos/service writes on Linux (its
// SystemdScript option), rendered with text/template over kardianos'
// data: .Name, .Description, .Path, .Arguments, .EnvVars, and the cmd and
// cmdEscape quoting functions. It departs from kardianos' own template:
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
//     alone, so engine processes it supervises keep running.
//   - TimeoutStopSec=30, above the agent's own 25 s stop timeout.
const systemdUnit = `[Unit]
Description={{.Description}}
Documentation=https://github.com/berthhq/berth
ConditionFileIsExecutable={{.Path|cmdEscape}}
After=network-online.target
Wants=network-online.target
StartLimitIntervalSec=60
StartLimitBurst=20

[Service]
Type=simple
ExecStart={{.Path|cmdEscape}}{{range .Arguments}} {{.|cmd}}{{end}}
Restart=always
RestartSec=5
KillMode=process
TimeoutStopSec=30
EnvironmentFile=-/etc/default/{{.Name}}
{{range $k, $v := .EnvVars}}Environment={{$k}}={{$v}}
{{end}}
[Install]
WantedBy=multi-user.target
`
