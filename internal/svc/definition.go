package svc

import (
	"encoding/json"
	"strings"
	"time"
)

// WindowsDefinition is the agent's Windows service as the SCM holds it: the
// platform-neutral half of Install on Windows, so that what Berth asks of
// the SCM is rendered and checked (golden file, drift) on any machine.
type WindowsDefinition struct {
	Name        string `json:"name"`
	DisplayName string `json:"displayName"`
	Description string `json:"description"`
	// BinaryPathName is the service's command line, quoted the way
	// x/sys/windows/svc/mgr.CreateService quotes it (syscall.EscapeArg), so
	// that it compares equal to what the SCM reports back.
	BinaryPathName string `json:"binaryPathName"`
	// StartType is "automatic": started at boot.
	StartType string `json:"startType"`
	// DelayedAutoStart starts the agent shortly after the boot's automatic
	// services, once the network and the engine's own service are up, and
	// keeps it off the boot's critical path.
	DelayedAutoStart bool `json:"delayedAutoStart"`
	// Account is "LocalSystem": the agent installs Windows features, writes
	// under Program Files and drives the engine's service.
	Account string `json:"account"`
	// Recovery restarts the service after each delay in turn, the last one
	// repeating, and forgets past failures after RecoveryResetSeconds.
	Recovery             []RecoveryStep `json:"recovery"`
	RecoveryResetSeconds uint32         `json:"recoveryResetSeconds"`
	// RecoveryOnNonCrashFailures applies the recovery actions also when the
	// agent stops with a non-zero exit code, not only when its process dies.
	RecoveryOnNonCrashFailures bool `json:"recoveryOnNonCrashFailures"`
}

// RecoveryStep is one SCM recovery action.
type RecoveryStep struct {
	Action string        // "restart"
	Delay  time.Duration // the SCM keeps milliseconds
}

// MarshalJSON writes the delay as a duration string ("5s"), as every
// duration in Berth's JSON.
func (r RecoveryStep) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Action string `json:"action"`
		Delay  string `json:"delay"`
	}{r.Action, r.Delay.String()})
}

// LocalSystem is the account the agent's Windows service runs as.
const LocalSystem = "LocalSystem"

// WindowsService returns the Windows service definition of cfg.
func WindowsService(cfg Config) WindowsDefinition {
	cfg = cfg.withDefaults()
	steps := make([]RecoveryStep, len(recoveryDelays))
	for i, d := range recoveryDelays {
		steps[i] = RecoveryStep{Action: "restart", Delay: d}
	}
	return WindowsDefinition{
		Name:                       cfg.Name,
		DisplayName:                cfg.DisplayName,
		Description:                cfg.Description,
		BinaryPathName:             windowsCommandLine(cfg.Executable, cfg.Arguments),
		StartType:                  "automatic",
		DelayedAutoStart:           true,
		Account:                    LocalSystem,
		Recovery:                   steps,
		RecoveryResetSeconds:       uint32(recoveryResetPeriod / time.Second),
		RecoveryOnNonCrashFailures: true,
	}
}

// Drift names the fields of the definition got that differ from d (nil when
// none do). The account compares without case and with the ".\" prefix the
// SCM may report.
func (d WindowsDefinition) Drift(got WindowsDefinition) []string {
	var out []string
	add := func(name string, same bool) {
		if !same {
			out = append(out, name)
		}
	}
	add("displayName", d.DisplayName == got.DisplayName)
	add("description", d.Description == got.Description)
	add("binaryPathName", d.BinaryPathName == got.BinaryPathName)
	add("startType", d.StartType == got.StartType)
	add("delayedAutoStart", d.DelayedAutoStart == got.DelayedAutoStart)
	add("account", strings.EqualFold(strings.TrimPrefix(d.Account, `.\`), strings.TrimPrefix(got.Account, `.\`)))
	add("recovery", sameRecovery(d.Recovery, got.Recovery))
	add("recoveryResetSeconds", d.RecoveryResetSeconds == got.RecoveryResetSeconds)
	add("recoveryOnNonCrashFailures", d.RecoveryOnNonCrashFailures == got.RecoveryOnNonCrashFailures)
	return out
}

func sameRecovery(a, b []RecoveryStep) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// windowsCommandLine joins exe and args as mgr.CreateService does.
func windowsCommandLine(exe string, args []string) string {
	parts := make([]string, 0, 1+len(args))
	for _, a := range append([]string{exe}, args...) {
		parts = append(parts, escapeArg(a))
	}
	return strings.Join(parts, " ")
}

// escapeArg is syscall.EscapeArg of Windows, here so that neutral code and
// tests on Linux quote exactly as the SCM's command line will be.
func escapeArg(s string) string {
	if s == "" {
		return `""`
	}
	if !strings.ContainsAny(s, "\"\\ \t") {
		return s
	}
	var b strings.Builder
	quote := strings.ContainsAny(s, " \t")
	if quote {
		b.WriteByte('"')
	}
	slashes := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '\\':
			slashes++
		case '"':
			for ; slashes > 0; slashes-- {
				b.WriteByte('\\')
			}
			b.WriteByte('\\')
		default:
			slashes = 0
		}
		b.WriteByte(c)
	}
	if quote {
		for ; slashes > 0; slashes-- {
			b.WriteByte('\\')
		}
		b.WriteByte('"')
	}
	return b.String()
}
