// Package msi builds the Windows installer of berth-agent,
// berth-agent-<version>-x64.msi, with wixl from msitools 0.101 on Linux.
//
// The MSI installs berth-agent.exe under Program Files\Berth, creates
// C:\ProgramData\Berth, registers and starts the service berth-agent,
// replaces an older version in place (one fixed UpgradeCode, a major
// upgrade that removes the old product first) and leaves config and state
// behind on uninstall. CONTROL_URL, CONTROL_AUDIENCE and LABELS are public
// properties for silent installs; a deferred custom action runs the
// installed `berth-agent service configure` to write them into agent.yaml
// and to do what wixl 0.101 cannot express (recovery actions, the ACL of
// the state folder, the Event Log source). The template is berth-agent.wxs;
// docs/msi.md says why each part is as it is.
//
// Build is reproducible: the inputs are staged with SourceDate as their
// modification time, wixl and msibuild run under faketime at SourceDate,
// and the ProductCode and PackageCode, which wixl would draw at random,
// are name-based UUIDs.
package msi

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/berthhq/berth/internal/atomicfile"
)

//go:embed berth-agent.wxs
var wxs []byte

// UpgradeCode ties every version of the Berth agent's MSI together: an MSI
// with a higher ProductVersion replaces any installed one that has it. It
// must never change (berth-agent.wxs holds the same value).
const UpgradeCode = "{3C1B2A90-5E4D-4C3B-8A29-0F1E2D3C4B5A}"

// Arch is the only architecture built: Windows Installer's x64.
const Arch = "x64"

// PublicProperties are the properties a silent install may set on the
// msiexec command line (SPEC "Packaging"). They are made secure, so that
// Windows Installer passes them to the elevated part of a per-machine
// install however it was started.
var PublicProperties = []string{"CONTROL_AUDIENCE", "CONTROL_URL", "LABELS"}

// Options say what one Build makes.
type Options struct {
	// Version is the agent's version as file names show it, such as 1.2.3
	// or 1.2.3+4.gabc1234. The ProductCode derives from it.
	Version string
	// ProductVersion is the MSI ProductVersion, N.N.N[.N]; Windows
	// Installer orders upgrades by its first three fields.
	ProductVersion string
	// AgentExe is the path of berth-agent.exe, signed or not.
	AgentExe string
	// Out is the path of the .msi to write.
	Out string
	// SourceDate is every time recorded inside the MSI.
	SourceDate time.Time
	// WorkDir is scratch space; "" means a temporary folder removed after.
	WorkDir string
}

// check validates o and says what to give instead.
func (o Options) check() error {
	switch {
	case o.Version == "":
		return errors.New("build MSI: Options.Version is empty; give the agent's version, such as 1.2.3")
	case o.AgentExe == "":
		return errors.New("build MSI: Options.AgentExe is empty; give the path of berth-agent.exe (GOOS=windows)")
	case o.Out == "":
		return errors.New("build MSI: Options.Out is empty; give the path of the .msi to write")
	case o.SourceDate.IsZero():
		return errors.New("build MSI: Options.SourceDate is zero; give SOURCE_DATE_EPOCH as a time")
	}
	if o.SourceDate.Year() < 1980 || o.SourceDate.Year() > 2099 {
		return fmt.Errorf("build MSI: SourceDate %s is outside 1980–2099, which MSI summary times cannot hold", o.SourceDate.UTC().Format(time.RFC3339))
	}
	return CheckProductVersion(o.ProductVersion)
}

var productVersionRE = regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+(\.[0-9]+)?$`)

// CheckProductVersion checks v against Windows Installer's ProductVersion
// format: major.minor.build[.revision], major and minor at most 255, build
// and revision at most 65535.
func CheckProductVersion(v string) error {
	if !productVersionRE.MatchString(v) {
		return fmt.Errorf("MSI ProductVersion %q is not major.minor.build[.revision] (decimal numbers, such as 1.2.3)", v)
	}
	names := []string{"major", "minor", "build", "revision"}
	limits := []int{255, 255, 65535, 65535}
	for i, f := range strings.Split(v, ".") {
		n, err := strconv.Atoi(f)
		if err != nil || n > limits[i] {
			return fmt.Errorf("MSI ProductVersion %q: the %s field %s is above %d, the most Windows Installer allows", v, names[i], f, limits[i])
		}
	}
	return nil
}

// tool is a program Build runs and the Debian package that has it.
type tool struct{ name, pkg string }

var tools = []tool{{"wixl", "wixl"}, {"msibuild", "msitools"}, {"faketime", "faketime"}}

// lookTools finds every tool or names all that are missing.
func lookTools() error {
	var missing []string
	for _, t := range tools {
		if _, err := exec.LookPath(t.name); err != nil {
			missing = append(missing, fmt.Sprintf("%s (Debian package %s)", t.name, t.pkg))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("build MSI: not found on PATH: %s; install them (apt-get install wixl msitools faketime, or scripts/install-test-deps.sh)", strings.Join(missing, ", "))
	}
	return nil
}

// Build writes the MSI o describes to o.Out, every msibuild edit done and
// unsigned (sign it after: a later edit would break the signature).
func Build(ctx context.Context, o Options) error {
	if err := o.check(); err != nil {
		return err
	}
	if err := lookTools(); err != nil {
		return err
	}
	work, done, err := workDir(o.WorkDir)
	if err != nil {
		return err
	}
	defer done()
	exeSum, err := stage(work, o)
	if err != nil {
		return err
	}
	b := builder{work: work, date: o.SourceDate}
	msi := filepath.Join(work, "out.msi")
	product := ProductCode(o.Version)
	if err := b.run(ctx, "wixl", "-a", Arch, "-o", msi,
		"-D", "ProductCode="+strings.Trim(product, "{}"), "-D", "Version="+o.ProductVersion,
		"-D", "Exe="+stagedExe, stagedWxs); err != nil {
		return err
	}
	if err := b.run(ctx, "msibuild", msi, "-q", secureQuery); err != nil {
		return err
	}
	for _, q := range sameVersionUpgrade(o.ProductVersion) {
		if err := b.run(ctx, "msibuild", msi, "-q", q); err != nil {
			return err
		}
	}
	if err := b.run(ctx, "msibuild", msi, "-s", "Berth Agent "+o.ProductVersion, "Berth",
		Arch+";1033", PackageCode(o.Version, exeSum)); err != nil {
		return err
	}
	data, err := os.ReadFile(msi)
	if err != nil {
		return fmt.Errorf("build MSI: read the built package: %w", err)
	}
	if err := atomicfile.Write(o.Out, data, 0o644); err != nil {
		return fmt.Errorf("build MSI: %w", err)
	}
	return nil
}

// secureQuery adds the public properties to the SecureCustomProperties
// that MajorUpgrade wrote (wixl refuses a second row for it and ignores
// Property/@Secure).
var secureQuery = "UPDATE `Property` SET `Value`='" +
	strings.Join(append(append([]string{}, PublicProperties...), "WIX_DOWNGRADE_DETECTED", "WIX_UPGRADE_DETECTED"), ";") +
	"' WHERE `Property`='SecureCustomProperties'"

// sameVersionUpgrade sets IncludeMaximum (512) on the upgrade row, as
// WiX's AllowSameVersionUpgrades does (wixl ignores that attribute):
// Windows Installer compares only the first three fields of
// ProductVersion, so without it a rebuild of 1.2.3 with another
// ProductCode would install beside 1.2.3 instead of replacing it.
// Attributes is part of the table's key, so the row is replaced.
func sameVersionUpgrade(productVersion string) []string {
	return []string{
		"DELETE FROM `Upgrade` WHERE `ActionProperty`='WIX_UPGRADE_DETECTED'",
		"INSERT INTO `Upgrade` (`UpgradeCode`, `VersionMax`, `Attributes`, `ActionProperty`) VALUES ('" +
			UpgradeCode + "', '" + productVersion + "', 513, 'WIX_UPGRADE_DETECTED')",
	}
}

// The names of the staged inputs inside the work folder; wixl resolves
// File/@Source relative to it and refuses absolute paths.
const (
	stagedExe = "berth-agent.exe"
	stagedWxs = "berth-agent.wxs"
)

// stage copies the exe and the template into work with SourceDate as their
// times (the cabinet records the exe's) and returns the exe's SHA-256.
func stage(work string, o Options) ([]byte, error) {
	exe, err := os.ReadFile(o.AgentExe)
	if err != nil {
		return nil, fmt.Errorf("build MSI: read the agent exe: %w", err)
	}
	for name, data := range map[string][]byte{stagedExe: exe, stagedWxs: wxs} {
		p := filepath.Join(work, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return nil, fmt.Errorf("build MSI: stage %s: %w", name, err)
		}
		if err := os.Chtimes(p, o.SourceDate, o.SourceDate); err != nil {
			return nil, fmt.Errorf("build MSI: stage %s: %w", name, err)
		}
	}
	sum := sha256.Sum256(exe)
	return sum[:], nil
}

// workDir returns o.WorkDir, or a new temporary folder and a function that
// removes it.
func workDir(dir string) (string, func(), error) {
	if dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", nil, fmt.Errorf("build MSI: work folder: %w", err)
		}
		return dir, func() {}, nil
	}
	tmp, err := os.MkdirTemp("", "berth-msi-")
	if err != nil {
		return "", nil, fmt.Errorf("build MSI: work folder: %w", err)
	}
	return tmp, func() { os.RemoveAll(tmp) }, nil
}

// builder runs the tools in the work folder under a frozen clock.
type builder struct {
	work string
	date time.Time
}

// run runs name with args under `faketime -f` (a clock frozen at the
// source date, so that a slow run records the same times), in UTC, which
// the summary's local times then show.
func (b builder) run(ctx context.Context, name string, args ...string) error {
	fake := b.date.UTC().Format("2006-01-02 15:04:05")
	cmd := exec.CommandContext(ctx, "faketime", append([]string{"-f", fake, name}, args...)...)
	cmd.Dir = b.work
	cmd.Env = append(os.Environ(), "TZ=UTC")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build MSI: %s: %w: %s", name, err, lastLines(out.String(), 20))
	}
	// wixl exits 0 after some CRITICAL messages yet drops what they were
	// about (a custom action row, for one): treat them as failures.
	if strings.Contains(out.String(), "CRITICAL") {
		return fmt.Errorf("build MSI: %s reported a critical problem: %s", name, lastLines(out.String(), 20))
	}
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// namespace is the UUIDv5 namespace of the name-based codes: the
// UpgradeCode itself.
var namespace = mustParseUUID(UpgradeCode)

// ProductCode is the MSI ProductCode of an agent version: a UUIDv5 of the
// version and the architecture, so each version is its own product and a
// rebuild of one version keeps its code.
func ProductCode(version string) string {
	return uuidV5(namespace, "product\x00"+version+"\x00"+Arch)
}

// PackageCode is the MSI PackageCode (summary revision number): a UUIDv5
// of the version, the architecture and the exe's SHA-256, since two
// different packages must never share one.
func PackageCode(version string, exeSHA256 []byte) string {
	return uuidV5(namespace, fmt.Sprintf("package\x00%s\x00%s\x00%x", version, Arch, exeSHA256))
}

// uuidV5 is RFC 9562's name-based UUID (SHA-1), braced and upper case as
// MSI writes GUIDs.
func uuidV5(ns [16]byte, name string) string {
	h := sha1.New()
	h.Write(ns[:])
	io.WriteString(h, name)
	var u [16]byte
	copy(u[:], h.Sum(nil))
	u[6] = u[6]&0x0f | 0x50
	u[8] = u[8]&0x3f | 0x80
	return strings.ToUpper(fmt.Sprintf("{%x-%x-%x-%x-%x}", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16]))
}

func mustParseUUID(s string) [16]byte {
	var u [16]byte
	b, err := hex.DecodeString(strings.ReplaceAll(strings.Trim(s, "{}"), "-", ""))
	if err != nil || len(b) != len(u) {
		panic("msi: bad UUID " + s)
	}
	copy(u[:], b)
	return u
}
