package engine

import (
	"fmt"
	"strings"
)

// SystemdUnit renders the unit that runs d. KillMode=process stops only the
// daemon, so that container shims outlive an engine restart (live-restore);
// Delegate lets the engine manage its containers' cgroups.
func SystemdUnit(d Daemon) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by berth-agent; changes are overwritten.\n")
	fmt.Fprintf(&b, "[Unit]\nDescription=Container engine %s (managed by Berth)\n", d.Name)
	b.WriteString("After=network-online.target\nWants=network-online.target\n")
	b.WriteString("StartLimitIntervalSec=60\nStartLimitBurst=5\n\n")
	b.WriteString("[Service]\nType=simple\n")
	for _, e := range d.Env {
		fmt.Fprintf(&b, "Environment=%s\n", systemdQuote(e))
	}
	args := make([]string, 0, len(d.Args)+1)
	args = append(args, systemdQuote(d.Path))
	for _, a := range d.Args {
		args = append(args, systemdQuote(a))
	}
	fmt.Fprintf(&b, "ExecStart=%s\n", strings.Join(args, " "))
	b.WriteString("ExecReload=/bin/kill -s HUP $MAINPID\n")
	b.WriteString("Restart=always\nRestartSec=2\nTimeoutStartSec=0\nTimeoutStopSec=60\n")
	b.WriteString("KillMode=process\nDelegate=yes\nLimitNOFILE=infinity\nLimitNPROC=infinity\nLimitCORE=infinity\nTasksMax=infinity\nOOMScoreAdjust=-500\n\n")
	b.WriteString("[Install]\nWantedBy=multi-user.target\n")
	return b.String()
}

// systemdQuote quotes a word for a unit file when it needs it.
func systemdQuote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\"'\\$%;") {
		return s
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, `$`, `$$`, `%`, `%%`)
	return `"` + r.Replace(s) + `"`
}
