package deb_test

import (
	"bytes"
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/berthhq/berth/internal/svc"
	"github.com/berthhq/berth/internal/testenv"
	"github.com/berthhq/berth/packaging/deb"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// sourceDate is the fixed time every test package carries.
var sourceDate = time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)

// anyELF returns a linux/amd64 executable that is quick to get: this test
// binary, for tests that never look inside the package.
func anyELF(t *testing.T) string {
	t.Helper()
	p, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var agent struct {
	once sync.Once
	path string
	err  error
	out  []byte
}

// agentBinary builds the real linux/amd64 agent once per test run, the way
// make package does (static, stripped, trimmed paths).
func agentBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: builds the agent and runs the Debian tools")
	}
	agent.once.Do(func() {
		dir, err := os.MkdirTemp("", "berth-deb-agent-")
		if err != nil {
			agent.err = err
			return
		}
		agent.path = filepath.Join(dir, "berth-agent")
		start := time.Now()
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w -buildid=", "-o", agent.path, "./cmd/agent")
		cmd.Dir = testenv.RepoRoot(t)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
		agent.out, agent.err = cmd.CombinedOutput()
		t.Logf("go build ./cmd/agent: %s", time.Since(start).Round(time.Millisecond))
	})
	if agent.err != nil {
		t.Fatalf("build the agent: %v\n%s", agent.err, agent.out)
	}
	return agent.path
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if agent.path != "" {
		os.RemoveAll(filepath.Dir(agent.path))
	}
	os.Exit(code)
}

// build writes the .deb of version into dir and returns its path.
func build(t *testing.T, dir, version string) string {
	t.Helper()
	out := filepath.Join(dir, "berth-agent_"+version+"_amd64.deb")
	start := time.Now()
	if err := deb.Build(context.Background(), deb.Options{Version: version, Binary: agentBinary(t), Out: out, SourceDate: sourceDate}); err != nil {
		t.Fatalf("build %s: %v", version, err)
	}
	fi, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("deb.Build %s: %s, %d bytes", version, time.Since(start).Round(time.Millisecond), fi.Size())
	return out
}

// run runs a tool and returns its stdout, failing the test with its output.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(testenv.NeedBinary(t, name), args...)
	cmd.Env = append(os.Environ(), "TZ=UTC", "LC_ALL=C")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// golden compares got with testdata/name, rewriting it under -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run with -update to create it): %v", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("differs from %s (-want +got):\n%s", path, diff)
	}
}

func TestInfoFields(t *testing.T) {
	p := build(t, t.TempDir(), "1.2.3+4.gabc1234")
	info := run(t, "dpkg-deb", "--info", p)
	fields := map[string]string{}
	for _, name := range []string{"Package", "Version", "Architecture", "Maintainer", "Section", "Priority", "Homepage", "Description"} {
		fields[name] = strings.TrimSpace(run(t, "dpkg-deb", "--field", p, name))
	}
	want := map[string]string{
		"Package":      "berth-agent",
		"Version":      "1.2.3+4.gabc1234",
		"Architecture": "amd64",
		"Maintainer":   deb.Maintainer,
		"Section":      "admin",
		"Priority":     "optional",
		"Homepage":     deb.Homepage,
	}
	desc := fields["Description"]
	delete(fields, "Description")
	if diff := cmp.Diff(want, fields); diff != "" {
		t.Errorf("control fields (-want +got):\n%s\n%s", diff, info)
	}
	lines := strings.Split(desc, "\n")
	if len(lines) < 2 || lines[0] != "Berth container-host agent" || !strings.Contains(desc, "/usr/share/berth/agent.yaml.sample") {
		t.Errorf("Description wants a synopsis and an extended description naming the sample, got:\n%s", desc)
	}
	for _, script := range []string{"postinst", "prerm", "postrm"} {
		if !strings.Contains(info, script) {
			t.Errorf("control archive lacks %s:\n%s", script, info)
		}
	}
	if strings.Contains(info, "conffiles") {
		t.Errorf("the package declares conffiles; it must ship none (the config under /etc is the operator's):\n%s", info)
	}
}

// TestContents pins the file list, modes, owners and the fixed date; the
// binary's size changes with every commit, so it is masked.
func TestContents(t *testing.T) {
	p := build(t, t.TempDir(), "1.2.3")
	var lines []string
	for _, line := range strings.Split(strings.TrimSpace(run(t, "dpkg-deb", "--contents", p)), "\n") {
		f := strings.Fields(line)
		if len(f) == 6 && f[5] == "."+deb.BinaryPath {
			f[2] = "SIZE"
		}
		lines = append(lines, strings.Join(f, " "))
	}
	golden(t, "contents.txt", strings.Join(lines, "\n")+"\n")
	if !strings.Contains(strings.Join(lines, "\n"), "2026-12-04 12:00") {
		t.Errorf("entries do not carry SourceDate 2026-12-04 12:00 UTC:\n%s", strings.Join(lines, "\n"))
	}
}

func TestLintian(t *testing.T) {
	p := build(t, t.TempDir(), "1.2.3")
	start := time.Now()
	// --fail-on error: lintian exits non-zero on any error; warnings and
	// infos are logged so a new one shows in the test output.
	out := run(t, "lintian", "--fail-on", "error", "--display-info", p)
	t.Logf("lintian (%s):\n%s", time.Since(start).Round(time.Millisecond), out)
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "W: ") || strings.HasPrefix(line, "E: ") {
			t.Errorf("lintian: %s", line)
		}
	}
}

func TestReproducible(t *testing.T) {
	a := build(t, t.TempDir(), "1.2.3")
	b := build(t, t.TempDir(), "1.2.3")
	ab, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	bb, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ab, bb) {
		t.Errorf("two builds of one version differ (%d and %d bytes)", len(ab), len(bb))
	}
}

// TestUnitIsServiceInstalls keeps the packaged unit equal to what
// `berth-agent service install` writes, plus only the package's lines.
func TestUnitIsServiceInstalls(t *testing.T) {
	got, err := deb.Unit()
	if err != nil {
		t.Fatal(err)
	}
	want, err := svc.RenderUnit(svc.Config{Executable: deb.BinaryPath, Arguments: []string{"run", "--config", deb.ConfigPath}})
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, line := range strings.SplitAfter(string(got), "\n") {
		line := line
		if strings.HasPrefix(line, "#") || contains(deb.PackageDirectives, strings.TrimSpace(line)) {
			continue
		}
		kept = append(kept, line)
	}
	if diff := cmp.Diff(string(want), strings.Join(kept, "")); diff != "" {
		t.Errorf("the packaged unit drifted from internal/svc's (-svc +package):\n%s", diff)
	}
	for _, d := range deb.PackageDirectives {
		if !strings.Contains(string(got), "\n"+d+"\n") {
			t.Errorf("the packaged unit lacks %s:\n%s", d, got)
		}
	}
	unit := string(got)
	if strings.Index(unit, "ConditionPathExists=") > strings.Index(unit, "[Service]") ||
		strings.Index(unit, "StateDirectory=") < strings.Index(unit, "[Service]") ||
		strings.Index(unit, "StateDirectory=") > strings.Index(unit, "[Install]") {
		t.Errorf("a directive sits in the wrong section, where systemd ignores it:\n%s", unit)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestSampleValidates runs the real `berth-agent config validate` on the
// sample the package ships.
func TestSampleValidates(t *testing.T) {
	dir := t.TempDir()
	p := build(t, dir, "1.2.3")
	root := filepath.Join(dir, "x")
	run(t, "dpkg-deb", "-x", p, root)
	sample := filepath.Join(root, deb.SamplePath)
	out, err := exec.Command(agentBinary(t), "config", "validate", sample).CombinedOutput()
	if err != nil {
		t.Fatalf("berth-agent config validate %s: %v\n%s", deb.SamplePath, err, out)
	}
}

func TestChangelog(t *testing.T) {
	gz, err := deb.Changelog("1.2.3", sourceDate)
	if err != nil {
		t.Fatal(err)
	}
	// gzip -n: no name, and MTIME (bytes 4-7) zero.
	if len(gz) < 10 || !bytes.Equal(gz[4:8], []byte{0, 0, 0, 0}) || gz[3]&0x08 != 0 {
		t.Errorf("changelog.gz header carries a time or a name: % x", gz[:10])
	}
	path := filepath.Join(t.TempDir(), "changelog.gz")
	if err := os.WriteFile(path, gz, 0o644); err != nil {
		t.Fatal(err)
	}
	text := run(t, "gzip", "-dc", path)
	if !strings.HasPrefix(text, "berth-agent (1.2.3) unstable; urgency=medium\n") ||
		!strings.Contains(text, " -- "+deb.Maintainer+"  Fri, 04 Dec 2026 12:00:00 +0000\n") {
		t.Errorf("changelog is not a Debian changelog entry of 1.2.3 dated SourceDate:\n%s", text)
	}
}
