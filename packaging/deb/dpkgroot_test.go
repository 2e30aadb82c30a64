package deb_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berthhq/berth/internal/testenv"
)

// hostPaths are where an install on the host itself would leave traces;
// the test installs into a temporary root only and checks none appear.
var hostPaths = []string{
	"/usr/bin/berth-agent",
	"/lib/systemd/system/berth-agent.service",
	"/etc/systemd/system/multi-user.target.wants/berth-agent.service",
	"/var/lib/systemd/deb-systemd-helper-enabled/berth-agent.service.dsh-also",
	"/var/lib/systemd/deb-systemd-helper-enabled/multi-user.target.wants/berth-agent.service",
}

// Under the temporary root: what install and the operator create.
const (
	wantsLink = "etc/systemd/system/multi-user.target.wants/berth-agent.service"
	dshState  = "var/lib/systemd/deb-systemd-helper-enabled/multi-user.target.wants/berth-agent.service"
	config    = "etc/berth/agent.yaml"
	stateDB   = "var/lib/berth/agent.db"
)

// dpkgRoot is an empty dpkg database under a temporary root: dpkg --root
// needs the status file and the info and updates folders to exist.
func dpkgRoot(t *testing.T) string {
	t.Helper()
	r := t.TempDir()
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates"} {
		if err := os.MkdirAll(filepath.Join(r, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(r, "var/lib/dpkg/status"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return r
}

// dpkg runs dpkg on the temporary root r: the maintainer scripts run on
// this machine with DPKG_ROOT=r (--force-script-chrootless), as in an image
// build, and must touch nothing outside r.
func dpkg(t *testing.T, r string, args ...string) string {
	t.Helper()
	base := []string{"--root=" + r, "--force-script-chrootless", "--force-not-root", "--log=" + filepath.Join(r, "dpkg.log")}
	return run(t, "dpkg", append(base, args...)...)
}

func exists(r, p string) bool {
	_, err := os.Lstat(filepath.Join(r, p))
	return err == nil
}

func checkPaths(t *testing.T, step, r string, want map[string]bool) {
	t.Helper()
	for p, present := range want {
		if got := exists(r, p); got != present {
			t.Errorf("after %s: %s present = %v, want %v", step, p, got, present)
		}
	}
}

func TestDpkgRootLifecycle(t *testing.T) {
	testenv.NeedBinary(t, "deb-systemd-helper")
	for _, p := range hostPaths {
		if _, err := os.Lstat(p); err == nil {
			t.Fatalf("%s exists on this machine already; the test could not tell its own traces apart", p)
		}
	}
	dir := t.TempDir()
	v1, v2 := build(t, dir, "1.2.3"), build(t, dir, "1.2.4")
	r := dpkgRoot(t)

	dpkg(t, r, "-i", v1)
	checkPaths(t, "install", r, map[string]bool{
		"usr/bin/berth-agent": true, "lib/systemd/system/berth-agent.service": true,
		"usr/share/berth/agent.yaml.sample": true, wantsLink: true, dshState: true,
		config: false, // no conffile: the config is the operator's
	})
	if target, err := os.Readlink(filepath.Join(r, wantsLink)); err != nil || target != "/lib/systemd/system/berth-agent.service" {
		t.Errorf("wants link = %q, %v; want /lib/systemd/system/berth-agent.service", target, err)
	}
	seed(t, r)

	dpkg(t, r, "-i", v2)
	if got := strings.TrimSpace(run(t, "dpkg-query", "--admindir="+filepath.Join(r, "var/lib/dpkg"), "-W", "-f=${Version}", "berth-agent")); got != "1.2.4" {
		t.Errorf("after upgrade the installed version is %q, want 1.2.4", got)
	}
	checkPaths(t, "upgrade", r, map[string]bool{config: true, stateDB: true, wantsLink: true})
	checkSeed(t, "upgrade", r)

	dpkg(t, r, "-r", "berth-agent")
	checkPaths(t, "remove", r, map[string]bool{"usr/bin/berth-agent": false, config: true, stateDB: true})
	checkSeed(t, "remove", r)

	dpkg(t, r, "-P", "berth-agent")
	checkPaths(t, "purge", r, map[string]bool{"etc/berth": false, "var/lib/berth": false, wantsLink: false, dshState: false,
		"var/lib/systemd/deb-systemd-helper-enabled/berth-agent.service.dsh-also": false})

	for _, p := range hostPaths {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("the install into %s left %s on this machine", r, p)
		}
	}
	log, _ := os.ReadFile(filepath.Join(r, "dpkg.log"))
	for _, step := range []string{"install berth-agent:amd64 <none> 1.2.3", "upgrade berth-agent:amd64 1.2.3 1.2.4", "remove berth-agent:amd64 1.2.4", "purge berth-agent:amd64 1.2.4"} {
		if !strings.Contains(string(log), step) {
			t.Errorf("dpkg.log lacks %q:\n%s", step, log)
		}
	}
}

// seed writes what an operator and the agent would: the config and the
// state database.
func seed(t *testing.T, r string) {
	t.Helper()
	for _, p := range []string{config, stateDB} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(r, p)), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(r, p), []byte("seeded "+p), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func checkSeed(t *testing.T, step, r string) {
	t.Helper()
	for _, p := range []string{config, stateDB} {
		if b, err := os.ReadFile(filepath.Join(r, p)); err != nil || string(b) != "seeded "+p {
			t.Errorf("after %s: %s = %q, %v; want it kept as seeded", step, p, b, err)
		}
	}
}
