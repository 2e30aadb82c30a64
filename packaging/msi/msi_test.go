package msi

import (
	"bytes"
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

var sourceDate = time.Date(2026, 12, 1, 10, 30, 0, 0, time.UTC)

// needTools gates on the real msitools: a skip locally, a failure under
// CI=true.
func needTools(t *testing.T) {
	t.Helper()
	for _, name := range []string{"wixl", "msibuild", "msiinfo", "msiextract", "faketime"} {
		testenv.NeedBinary(t, name)
	}
}

var agentExe = struct {
	once sync.Once
	path string
	err  error
}{}

// realAgentExe builds the real berth-agent.exe once per test binary, as
// make package does (GOOS=windows, -trimpath, no build id).
func realAgentExe(t *testing.T) string {
	t.Helper()
	agentExe.once.Do(func() {
		dir, err := os.MkdirTemp("", "berth-msi-test-")
		if err != nil {
			agentExe.err = err
			return
		}
		agentExe.path = filepath.Join(dir, "berth-agent.exe")
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -buildid=", "-o", agentExe.path, "./cmd/agent")
		cmd.Dir = testenv.RepoRoot(t)
		cmd.Env = append(os.Environ(), "GOOS=windows", "GOARCH=amd64", "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			agentExe.err = &buildError{err: err, out: string(out)}
		}
	})
	if agentExe.err != nil {
		t.Fatalf("GOOS=windows go build ./cmd/agent: %v", agentExe.err)
	}
	return agentExe.path
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return e.err.Error() + ": " + e.out }

func TestMain(m *testing.M) {
	code := m.Run()
	if agentExe.path != "" {
		os.RemoveAll(filepath.Dir(agentExe.path))
	}
	os.Exit(code)
}

// build builds an MSI of version into a new temp folder and returns its path.
func build(t *testing.T, version, productVersion string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "berth-agent-"+version+"-x64.msi")
	start := time.Now()
	err := Build(context.Background(), Options{
		Version: version, ProductVersion: productVersion, AgentExe: realAgentExe(t),
		Out: out, SourceDate: sourceDate,
	})
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	if fi, err := os.Stat(out); err == nil {
		t.Logf("built %s: %d bytes in %s", filepath.Base(out), fi.Size(), time.Since(start).Round(time.Millisecond))
	}
	return out
}

// table is one table as msiinfo export prints it: column names, then rows
// of tab-separated fields (the two header lines of types and keys dropped).
type table struct {
	cols []string
	rows [][]string
}

func export(t *testing.T, msi, name string) table {
	t.Helper()
	out, err := exec.Command("msiinfo", "export", msi, name).CombinedOutput()
	if err != nil {
		t.Fatalf("msiinfo export %s: %v: %s", name, err, out)
	}
	lines := strings.Split(strings.TrimRight(strings.ReplaceAll(string(out), "\r\n", "\n"), "\n"), "\n")
	if len(lines) < 3 {
		t.Fatalf("msiinfo export %s: no header: %q", name, out)
	}
	tb := table{cols: strings.Split(lines[0], "\t")}
	for _, l := range lines[3:] {
		tb.rows = append(tb.rows, strings.Split(l, "\t"))
	}
	return tb
}

// col returns the value of column c in row r.
func (tb table) col(r []string, c string) string {
	for i, name := range tb.cols {
		if name == c && i < len(r) {
			return r[i]
		}
	}
	return ""
}

// find returns the row whose column c is v.
func (tb table) find(t *testing.T, c, v string) []string {
	t.Helper()
	for _, r := range tb.rows {
		if tb.col(r, c) == v {
			return r
		}
	}
	t.Fatalf("no row with %s = %q in %v", c, v, tb.rows)
	return nil
}

func (tb table) String() string {
	var b strings.Builder
	b.WriteString(strings.Join(tb.cols, "\t") + "\n")
	for _, r := range tb.rows {
		b.WriteString(strings.Join(r, "\t") + "\n")
	}
	return b.String()
}

// goldenTables are compared whole with testdata/<name>.golden.
var goldenTables = []string{
	"File", "Component", "Directory", "CreateFolder", "Feature", "FeatureComponents",
	"ServiceInstall", "ServiceControl", "Property", "Upgrade", "LaunchCondition",
	"CustomAction", "InstallExecuteSequence",
}

// TestTables builds the MSI from the real agent exe and reads its tables
// back with msiinfo: what Windows Installer will do with it.
func TestTables(t *testing.T) {
	needTools(t)
	msi := build(t, "1.2.3", "1.2.3")
	exe := realAgentExe(t)
	fi, err := os.Stat(exe)
	if err != nil {
		t.Fatal(err)
	}
	tables := map[string]table{}
	for _, name := range goldenTables {
		tb := export(t, msi, name)
		tables[name] = tb
		got := tb.String()
		if name == "File" {
			// The exe's size changes with every commit; it is checked below.
			got = strings.Replace(got, "\t"+strconv.FormatInt(fi.Size(), 10)+"\t", "\tSIZE\t", 1)
		}
		golden(t, name, got)
	}
	checkTables(t, tables)
	checkPayload(t, msi, exe)
}

// checkTables asserts the parts that matter most one by one, so a failure
// says which promise broke, not only that a golden file differs.
func checkTables(t *testing.T, tb map[string]table) {
	t.Helper()
	comp := tb["Component"]
	for _, r := range comp.rows {
		if a, _ := strconv.Atoi(comp.col(r, "Attributes")); a&256 == 0 {
			t.Errorf("component %s is not 64-bit (Attributes %d): it would install under Program Files (x86)", r[0], a)
		}
	}
	if g := comp.col(comp.find(t, "Component", "DataDir"), "ComponentId"); g != "{6F0C2B7E-1D3A-4E59-A2B8-C4D6E8F0A1B2}" {
		t.Errorf("the state folder's component GUID is %s; it must stay fixed", g)
	}
	si := tb["ServiceInstall"]
	svc := si.find(t, "Name", "berth-agent")
	if a := si.col(svc, "Arguments"); a != "run --config [DATADIR]agent.yaml" {
		t.Errorf("service arguments %q", a)
	}
	if si.col(svc, "StartName") != "LocalSystem" || si.col(svc, "StartType") != "2" {
		t.Errorf("service account/start: %v", svc)
	}
	sc := tb["ServiceControl"]
	if ev := sc.col(sc.find(t, "Name", "berth-agent"), "Event"); ev != "163" {
		t.Errorf("ServiceControl event %s, want 163 (start on install, stop on both, remove on uninstall)", ev)
	}
	prop := tb["Property"]
	for k, want := range map[string]string{"UpgradeCode": UpgradeCode, "ProductVersion": "1.2.3", "ProductCode": ProductCode("1.2.3"), "ALLUSERS": "1"} {
		if got := prop.col(prop.find(t, "Property", k), "Value"); got != want {
			t.Errorf("property %s = %q, want %q", k, got, want)
		}
	}
	secure := ";" + prop.col(prop.find(t, "Property", "SecureCustomProperties"), "Value") + ";"
	for _, p := range append(PublicProperties, "WIX_UPGRADE_DETECTED", "WIX_DOWNGRADE_DETECTED") {
		if !strings.Contains(secure, ";"+p+";") {
			t.Errorf("SecureCustomProperties %s lacks %s", secure, p)
		}
	}
	checkUpgrade(t, tb["Upgrade"])
	checkCustomAction(t, tb["CustomAction"], tb["InstallExecuteSequence"])
}

func checkUpgrade(t *testing.T, up table) {
	t.Helper()
	r := up.find(t, "ActionProperty", "WIX_UPGRADE_DETECTED")
	if up.col(r, "UpgradeCode") != UpgradeCode || up.col(r, "VersionMax") != "1.2.3" {
		t.Errorf("upgrade row %v", r)
	}
	if a, _ := strconv.Atoi(up.col(r, "Attributes")); a&512 == 0 || a&2 != 0 {
		t.Errorf("upgrade row attributes %d: want IncludeMaximum (512), not OnlyDetect", a)
	}
	d := up.find(t, "ActionProperty", "WIX_DOWNGRADE_DETECTED")
	if a, _ := strconv.Atoi(up.col(d, "Attributes")); a&2 == 0 || up.col(d, "VersionMin") != "1.2.3" {
		t.Errorf("downgrade row %v: want OnlyDetect from 1.2.3", d)
	}
}

func checkCustomAction(t *testing.T, ca, seq table) {
	t.Helper()
	r := ca.find(t, "Action", "AgentConfigure")
	typ, _ := strconv.Atoi(ca.col(r, "Type"))
	const exeFromFile, inScript, noImpersonate = 18, 0x400, 0x800
	if typ&0x3f != exeFromFile || typ&inScript == 0 || typ&noImpersonate == 0 {
		t.Errorf("AgentConfigure type %d: want an exe from the installed file (18), deferred (0x400), not impersonated (0x800)", typ)
	}
	if s := ca.col(r, "Source"); s != "AgentExeFile" {
		t.Errorf("AgentConfigure runs %q, want the installed AgentExeFile", s)
	}
	target := ca.col(r, "Target")
	for _, want := range []string{"service configure", `--config "[DATADIR]agent.yaml"`, `--control-url="[CONTROL_URL]"`, `--audience="[CONTROL_AUDIENCE]"`, `--labels="[LABELS]"`} {
		if !strings.Contains(target, want) {
			t.Errorf("AgentConfigure command %q lacks %q", target, want)
		}
	}
	at := func(action string) int {
		n, _ := strconv.Atoi(seq.col(seq.find(t, "Action", action), "Sequence"))
		return n
	}
	if !(at("InstallFiles") < at("InstallServices") && at("InstallServices") < at("AgentConfigure") && at("AgentConfigure") < at("StartServices")) {
		t.Errorf("sequence InstallFiles %d, InstallServices %d, AgentConfigure %d, StartServices %d: configure must run between installing and starting the service",
			at("InstallFiles"), at("InstallServices"), at("AgentConfigure"), at("StartServices"))
	}
	if n := at("RemoveExistingProducts"); n != 1401 {
		t.Errorf("RemoveExistingProducts at %d, want 1401 (old version removed before the new one installs)", n)
	}
	if c := seq.col(seq.find(t, "Action", "AgentConfigure"), "Condition"); c != "NOT REMOVE" {
		t.Errorf("AgentConfigure condition %q, want NOT REMOVE (never on uninstall)", c)
	}
	for _, a := range []string{"InstallServices", "StartServices", "StopServices", "DeleteServices"} {
		if c := seq.col(seq.find(t, "Action", a), "Condition"); c != "VersionNT" {
			t.Errorf("%s lost its standard condition: %q", a, c)
		}
	}
}

// checkPayload extracts the MSI and compares the exe with the input.
func checkPayload(t *testing.T, msi, exe string) {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("msiextract", "-C", dir, msi).CombinedOutput(); err != nil {
		t.Fatalf("msiextract: %v: %s", err, out)
	}
	var got []byte
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Name() == "berth-agent.exe" {
			got, _ = os.ReadFile(p)
		}
		return nil
	})
	want, _ := os.ReadFile(exe)
	if got == nil || !bytes.Equal(got, want) {
		t.Errorf("the exe inside the MSI (%d bytes) is not the one given (%d bytes)", len(got), len(want))
	}
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update once)", err)
	}
	if string(want) != got {
		t.Errorf("table %s differs from %s:\n--- got\n%s--- want\n%s", name, path, got, want)
	}
}

// TestReproducible builds twice from the same inputs, in different work
// folders and a second apart: the bytes must be the same.
func TestReproducible(t *testing.T) {
	needTools(t)
	a := build(t, "1.2.3", "1.2.3")
	time.Sleep(1100 * time.Millisecond)
	b := build(t, "1.2.3", "1.2.3")
	da, _ := os.ReadFile(a)
	db, _ := os.ReadFile(b)
	if len(da) == 0 || !bytes.Equal(da, db) {
		t.Fatalf("two builds differ (%d and %d bytes)", len(da), len(db))
	}
	sum := suminfo(t, a)
	if !strings.Contains(sum, "Revision number (UUID): "+PackageCode("1.2.3", exeSum(t))) {
		t.Errorf("the PackageCode is not the name-based one:\n%s", sum)
	}
	if !strings.Contains(sum, "Created: Tue Dec  1 10:30:00 2026") || !strings.Contains(sum, "Last saved: Tue Dec  1 10:30:00 2026") {
		t.Errorf("summary times are not SourceDate:\n%s", sum)
	}
}

func exeSum(t *testing.T) []byte {
	t.Helper()
	work := t.TempDir()
	sum, err := stage(work, Options{AgentExe: realAgentExe(t), SourceDate: sourceDate})
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

func suminfo(t *testing.T, msi string) string {
	t.Helper()
	out, err := exec.Command("msiinfo", "suminfo", msi).CombinedOutput()
	if err != nil {
		t.Fatalf("msiinfo suminfo: %v: %s", err, out)
	}
	return string(out)
}

// TestNewVersion: a newer version is another product of the same upgrade
// family, with a ProductVersion the old one's upgrade table recognises.
func TestNewVersion(t *testing.T) {
	needTools(t)
	old := build(t, "1.2.3", "1.2.3")
	next := build(t, "1.3.0+2.gabc1234", "1.3.0")
	prop := func(msi, name string) string {
		tb := export(t, msi, "Property")
		return tb.col(tb.find(t, "Property", name), "Value")
	}
	if prop(old, "ProductCode") == prop(next, "ProductCode") {
		t.Error("a new version kept the ProductCode")
	}
	if prop(old, "UpgradeCode") != prop(next, "UpgradeCode") {
		t.Error("a new version changed the UpgradeCode: it would install beside the old one")
	}
	if prop(next, "ProductVersion") != "1.3.0" {
		t.Errorf("ProductVersion %s", prop(next, "ProductVersion"))
	}
	if suminfo(t, old) == suminfo(t, next) {
		t.Error("two versions share their summary (PackageCode)")
	}
}

func TestCheckProductVersion(t *testing.T) {
	for _, tc := range []struct {
		v    string
		want string // part of the error; "" = valid
	}{
		{"1.2.3", ""},
		{"0.0.1", ""},
		{"255.255.65535.65535", ""},
		{"1.2", "not major.minor.build"},
		{"1.2.3.4.5", "not major.minor.build"},
		{"v1.2.3", "not major.minor.build"},
		{"1.2.3-rc1", "not major.minor.build"},
		{"1.2.3+4.gabc", "not major.minor.build"},
		{"", "not major.minor.build"},
		{"1..3", "not major.minor.build"},
		{"256.0.0", "major field 256 is above 255"},
		{"1.256.0", "minor field 256 is above 255"},
		{"1.2.65536", "build field 65536 is above 65535"},
		{"1.2.3.70000", "revision field 70000 is above 65535"},
		{"1.2.99999999999999999999", "build field"},
		{"１.2.3", "not major.minor.build"},
	} {
		err := CheckProductVersion(tc.v)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v", tc.v, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: error %v, want one with %q", tc.v, err, tc.want)
		}
	}
}

// TestOptionsErrors: Build refuses incomplete options before running
// anything, naming the field.
func TestOptionsErrors(t *testing.T) {
	ok := Options{Version: "1.2.3", ProductVersion: "1.2.3", AgentExe: "x.exe", Out: "x.msi", SourceDate: sourceDate}
	for _, tc := range []struct {
		name string
		edit func(*Options)
		want string
	}{
		{"no version", func(o *Options) { o.Version = "" }, "Options.Version is empty"},
		{"no exe", func(o *Options) { o.AgentExe = "" }, "Options.AgentExe is empty"},
		{"no out", func(o *Options) { o.Out = "" }, "Options.Out is empty"},
		{"no date", func(o *Options) { o.SourceDate = time.Time{} }, "SourceDate is zero"},
		{"epoch", func(o *Options) { o.SourceDate = time.Unix(0, 0) }, "outside 1980"},
		{"bad product version", func(o *Options) { o.ProductVersion = "1.2.3-dirty" }, "not major.minor.build"},
	} {
		o := ok
		tc.edit(&o)
		err := Build(context.Background(), o)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

// TestMissingTools: without the tools, Build names each and its package.
func TestMissingTools(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	err := Build(context.Background(), Options{Version: "1.2.3", ProductVersion: "1.2.3", AgentExe: "x.exe", Out: filepath.Join(t.TempDir(), "x.msi"), SourceDate: sourceDate})
	if err == nil {
		t.Fatal("Build succeeded with no tools on PATH")
	}
	for _, want := range []string{"wixl (Debian package wixl)", "msibuild (Debian package msitools)", "faketime (Debian package faketime)", "apt-get install"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestCodes(t *testing.T) {
	guid := regexp.MustCompile(`^\{[0-9A-F]{8}-[0-9A-F]{4}-5[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}\}$`)
	a, b := ProductCode("1.2.3"), ProductCode("1.2.4")
	p := PackageCode("1.2.3", []byte{1})
	for _, c := range []string{a, b, p} {
		if !guid.MatchString(c) {
			t.Errorf("%s is not a braced upper-case UUIDv5", c)
		}
	}
	if a == b || a == p || a != ProductCode("1.2.3") || p == PackageCode("1.2.3", []byte{2}) {
		t.Errorf("codes: %s %s %s", a, b, p)
	}
}
