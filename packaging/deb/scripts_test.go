package deb_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestMaintainerScripts runs each script as dpkg would call it, with the
// init-system-helpers and systemctl replaced by stubs that record their
// calls. "systemd runs" and "the config exists" are folders the test
// controls: the scripts' /run/systemd/system and /etc/berth/agent.yaml are
// pointed at them, nothing else in the scripts changes.
func TestMaintainerScripts(t *testing.T) {
	const (
		enable  = "deb-systemd-helper enable berth-agent.service"
		state   = "deb-systemd-helper update-state berth-agent.service"
		wasEn   = "deb-systemd-helper --quiet was-enabled berth-agent.service"
		reload  = "systemctl --system daemon-reload"
		start   = "deb-systemd-invoke start berth-agent.service"
		restart = "deb-systemd-invoke restart berth-agent.service"
		stop    = "deb-systemd-invoke stop berth-agent.service"
		purge   = "deb-systemd-helper purge berth-agent.service"
	)
	for _, tc := range []struct {
		name             string
		script           string
		args             []string
		systemd, config  bool
		dpkgRoot         bool
		want             []string
		wantStateRemoved bool
	}{
		{"install, systemd, config", "postinst", []string{"configure"}, true, true, false, []string{wasEn, enable, reload, start}, false},
		{"install, systemd, no config", "postinst", []string{"configure"}, true, false, false, []string{wasEn, enable, reload}, false},
		{"install, no systemd", "postinst", []string{"configure"}, false, true, false, []string{wasEn, enable}, false},
		{"install, DPKG_ROOT", "postinst", []string{"configure"}, true, true, true, []string{wasEn, enable}, false},
		{"upgrade, systemd, config", "postinst", []string{"configure", "1.2.3"}, true, true, false, []string{wasEn, enable, reload, restart}, false},
		{"upgrade, no systemd", "postinst", []string{"configure", "1.2.3"}, false, true, false, []string{wasEn, enable}, false},
		{"prerm remove, systemd", "prerm", []string{"remove"}, true, true, false, []string{stop}, false},
		{"prerm upgrade, systemd", "prerm", []string{"upgrade", "1.2.4"}, true, true, false, nil, false},
		{"prerm remove, no systemd", "prerm", []string{"remove"}, false, true, false, nil, false},
		{"prerm remove, DPKG_ROOT", "prerm", []string{"remove"}, true, true, true, nil, false},
		{"postrm remove, systemd", "postrm", []string{"remove"}, true, true, false, []string{reload}, false},
		{"postrm remove, no systemd", "postrm", []string{"remove"}, false, true, false, nil, false},
		{"postrm upgrade", "postrm", []string{"upgrade", "1.2.4"}, true, true, false, nil, false},
		{"postrm purge, systemd", "postrm", []string{"purge"}, true, true, false, []string{purge}, true},
		{"postrm purge, DPKG_ROOT", "postrm", []string{"purge"}, false, true, true, []string{purge}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls, root := runScript(t, tc.script, tc.args, tc.systemd, tc.config, tc.dpkgRoot)
			if diff := cmp.Diff(tc.want, calls); diff != "" {
				t.Errorf("%s %s: calls (-want +got):\n%s", tc.script, strings.Join(tc.args, " "), diff)
			}
			kept := []string{"var/lib/berth/agent.db"}
			if tc.config {
				kept = append(kept, "etc/berth/agent.yaml")
			}
			for _, p := range kept {
				_, err := os.Stat(filepath.Join(root, p))
				if removed := os.IsNotExist(err); removed != tc.wantStateRemoved {
					t.Errorf("%s %s: %s removed = %v, want %v", tc.script, strings.Join(tc.args, " "), p, removed, tc.wantStateRemoved)
				}
			}
		})
	}
}

// runScript runs the packaged script with stubbed tools; it returns the
// tools' calls and the root whose /etc/berth and /var/lib/berth a purge
// may delete (DPKG_ROOT, or a stand-in for / when DPKG_ROOT is unset).
func runScript(t *testing.T, name string, args []string, systemd, config, dpkgRoot bool) ([]string, string) {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	bin := filepath.Join(dir, "bin")
	log := filepath.Join(dir, "calls")
	for _, d := range []string{bin, filepath.Join(root, "etc/berth"), filepath.Join(root, "var/lib/berth")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p, s string, mode os.FileMode) {
		if err := os.WriteFile(p, []byte(s), mode); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(root, "var/lib/berth/agent.db"), "state", 0o600)
	if config {
		write(filepath.Join(root, "etc/berth/agent.yaml"), "{}", 0o600)
	}
	if systemd {
		if err := os.MkdirAll(filepath.Join(dir, "run/systemd/system"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// was-enabled answers "yes", as it does for a unit never seen before.
	for _, tool := range []string{"deb-systemd-helper", "deb-systemd-invoke", "systemctl"} {
		write(filepath.Join(bin, tool), "#!/bin/sh\necho \"$(basename \"$0\") $*\" >> "+log+"\nexit 0\n", 0o755)
	}
	b, err := os.ReadFile(filepath.Join("files", name))
	if err != nil {
		t.Fatal(err)
	}
	script := strings.NewReplacer(
		"/run/systemd/system", filepath.Join(dir, "run/systemd/system"),
		"[ -f /etc/berth/agent.yaml ]", "[ -f "+filepath.Join(root, "etc/berth/agent.yaml")+" ]",
	).Replace(string(b))
	if !dpkgRoot {
		// Without DPKG_ROOT the script's paths are the host's: point the
		// purge at the stand-in root instead of this machine's /etc/berth.
		script = strings.ReplaceAll(script, `"${DPKG_ROOT:-}/`, `"`+root+`/`)
	}
	path := filepath.Join(dir, name)
	write(path, script, 0o755)
	cmd := exec.Command(path, args...)
	cmd.Env = []string{"PATH=" + bin + ":/usr/bin:/bin"}
	if dpkgRoot {
		cmd.Env = append(cmd.Env, "DPKG_ROOT="+root)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	out, _ := os.ReadFile(log)
	var calls []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l != "" {
			calls = append(calls, l)
		}
	}
	return calls, root
}
