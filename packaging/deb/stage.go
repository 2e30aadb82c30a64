package deb

import (
	"bytes"
	"compress/gzip"
	"embed"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/files"

	"github.com/berthhq/berth/internal/svc"
)

//go:embed files
var embedded embed.FS

// Where the package puts its files.
const (
	BinaryPath    = "/usr/bin/berth-agent"
	UnitPath      = "/lib/systemd/system/berth-agent.service"
	SamplePath    = "/usr/share/berth/agent.yaml.sample"
	DocDir        = "/usr/share/doc/berth-agent"
	OverridesPath = "/usr/share/lintian/overrides/berth-agent"
	ConfigPath    = "/etc/berth/agent.yaml"
)

// stageFiles writes the package's generated and embedded files under stage
// (nfpm reads every source from a path) and returns the package contents
// and maintainer scripts.
func stageFiles(stage string, o Options) (files.Contents, nfpm.Scripts, error) {
	unit, err := Unit()
	if err != nil {
		return nil, nfpm.Scripts{}, err
	}
	changelog, err := Changelog(o.Version, o.SourceDate)
	if err != nil {
		return nil, nfpm.Scripts{}, err
	}
	generated := map[string][]byte{"berth-agent.service": unit, "changelog.gz": changelog}
	for _, name := range []string{"postinst", "prerm", "postrm", "copyright", "lintian-overrides", "agent.yaml.sample"} {
		b, err := embedded.ReadFile("files/" + name)
		if err != nil {
			return nil, nfpm.Scripts{}, fmt.Errorf("deb: read embedded %s: %w", name, err)
		}
		generated[name] = b
	}
	for name, b := range generated {
		if err := os.WriteFile(filepath.Join(stage, name), b, 0o644); err != nil {
			return nil, nfpm.Scripts{}, fmt.Errorf("deb: stage %s: %w", name, err)
		}
	}
	at := func(name string) string { return filepath.Join(stage, name) }
	contents := files.Contents{
		file(o.Binary, BinaryPath, 0o755),
		file(at("berth-agent.service"), UnitPath, 0o644),
		file(at("agent.yaml.sample"), SamplePath, 0o644),
		file(at("copyright"), DocDir+"/copyright", 0o644),
		file(at("changelog.gz"), DocDir+"/changelog.gz", 0o644),
		file(at("lintian-overrides"), OverridesPath, 0o644),
	}
	scripts := nfpm.Scripts{PostInstall: at("postinst"), PreRemove: at("prerm"), PostRemove: at("postrm")}
	return contents, scripts, nil
}

// Unit is the package's systemd unit: the one `berth-agent service
// install` renders for /usr/bin/berth-agent (internal/svc), so the two
// cannot drift, with what a package needs on top. ConditionPathExists keeps
// the enabled unit from crash-looping at boot before an operator has written
// the config; StateDirectory makes systemd create /var/lib/berth (0700, as
// the agent itself creates it).
func Unit() ([]byte, error) {
	base, err := svc.RenderUnit(svc.Config{Executable: BinaryPath, Arguments: []string{"run", "--config", ConfigPath}})
	if err != nil {
		return nil, fmt.Errorf("deb: render the unit: %w", err)
	}
	unit, err := addDirectives(string(base), "[Unit]", "ConditionPathExists="+ConfigPath)
	if err != nil {
		return nil, err
	}
	unit, err = addDirectives(unit, "[Service]", "StateDirectory=berth", "StateDirectoryMode=0700")
	if err != nil {
		return nil, err
	}
	header := "# Installed by the berth-agent package. `berth-agent service install`\n" +
		"# writes /etc/systemd/system/berth-agent.service, which takes precedence.\n"
	return []byte(header + unit), nil
}

// PackageDirectives are the lines Unit adds to the rendered unit.
var PackageDirectives = []string{"ConditionPathExists=" + ConfigPath, "StateDirectory=berth", "StateDirectoryMode=0700"}

// addDirectives appends lines at the end of a unit's section.
func addDirectives(unit, section string, lines ...string) (string, error) {
	start := strings.Index(unit, section+"\n")
	if start < 0 {
		return "", fmt.Errorf("deb: the rendered unit has no %s section; internal/svc's template changed", section)
	}
	end := len(unit)
	if next := strings.Index(unit[start+len(section):], "\n\n["); next >= 0 {
		end = start + len(section) + next + 1
	}
	body := strings.TrimRight(unit[:end], "\n") + "\n" + strings.Join(lines, "\n") + "\n"
	return body + unit[end:], nil
}

// Changelog is /usr/share/doc/berth-agent/changelog.gz, which Debian wants
// in a native package: one entry for version, dated date, compressed as
// `gzip -9n` does (no name, no time in the header) so it is reproducible.
func Changelog(version string, date time.Time) ([]byte, error) {
	text := fmt.Sprintf("%s (%s) unstable; urgency=medium\n\n"+
		"  * Release %s. Changes: %s/releases\n\n"+
		" -- %s  %s\n", Name, version, version, Homepage, Maintainer, date.UTC().Format("Mon, 02 Jan 2006 15:04:05 -0700"))
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, fmt.Errorf("deb: changelog: %w", err)
	}
	if _, err := zw.Write([]byte(text)); err != nil {
		return nil, fmt.Errorf("deb: changelog: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("deb: changelog: %w", err)
	}
	return buf.Bytes(), nil
}
