// Package deb builds berth-agent's Debian package with the nfpm library:
// the static agent binary, a systemd unit rendered by internal/svc (the
// unit `berth-agent service install` writes, plus the package's
// ConditionPathExists and StateDirectory), a commented sample config under
// /usr/share/berth (never a conffile under /etc), and maintainer scripts
// that start the agent only once /etc/berth/agent.yaml exists, do nothing
// harmful without systemd or under DPKG_ROOT, and delete config and state
// only on purge. The package is native (no Debian revision) and
// reproducible: every time inside it is Options.SourceDate.
package deb

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
	"github.com/goreleaser/nfpm/v2/files"

	"github.com/berthhq/berth/internal/atomicfile"
)

// Options say what goes into one .deb.
type Options struct {
	// Version is the Debian version, e.g. 1.2.3 or 1.2.3+4.gabc1234; no
	// "-" (the package is native, it has no Debian revision).
	Version string
	// Binary is the linux/amd64 berth-agent executable.
	Binary string
	// Out is the path of the .deb to write; its folder must exist.
	Out string
	// SourceDate is every time inside the package (SOURCE_DATE_EPOCH).
	SourceDate time.Time
}

// The package's identity.
const (
	Name       = "berth-agent"
	Arch       = "amd64"
	Maintainer = "Berth maintainers <berth@example.invalid>"
	Homepage   = "https://github.com/berthhq/berth"
	Section    = "admin"
)

// description is the control file's Description: a synopsis, then the
// extended lines lintian requires.
const description = `Berth container-host agent
Keeps this host's container engine (Docker or containerd) provisioned,
current and healthy, caches its image pulls through Azure Blob Storage and
reports the host's health to a Berth control endpoint. Configure it in
/etc/berth/agent.yaml (see /usr/share/berth/agent.yaml.sample); the
service starts once that file exists.`

// Build writes the .deb o describes to o.Out, replacing it atomically.
func Build(ctx context.Context, o Options) error {
	if err := o.check(); err != nil {
		return err
	}
	stage, err := os.MkdirTemp("", "berth-deb-")
	if err != nil {
		return fmt.Errorf("deb: make a staging folder: %w", err)
	}
	defer os.RemoveAll(stage)
	contents, scripts, err := stageFiles(stage, o)
	if err != nil {
		return err
	}
	info := nfpm.WithDefaults(&nfpm.Info{
		Name:          Name,
		Arch:          Arch,
		Platform:      "linux",
		Version:       o.Version,
		VersionSchema: "none", // the version is already Debian's; no semver split
		Section:       Section,
		Priority:      "optional",
		Maintainer:    Maintainer,
		Homepage:      Homepage,
		Description:   description,
		MTime:         o.SourceDate.UTC(),
		Overridables:  nfpm.Overridables{Contents: contents, Scripts: scripts},
	})
	packager, err := nfpm.Get("deb")
	if err != nil {
		return fmt.Errorf("deb: nfpm has no deb packager: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("deb: build %s: %w", o.Out, err)
	}
	var buf bytes.Buffer
	if err := packager.Package(info, &buf); err != nil {
		return fmt.Errorf("deb: package %s %s: %w", Name, o.Version, err)
	}
	if err := atomicfile.Write(o.Out, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("deb: %w", err)
	}
	return nil
}

// debVersion is a native Debian version: an optional epoch, then an
// upstream version that starts with a digit and holds letters, digits and
// . + ~ (Debian Policy 5.6.12, without the revision).
var debVersion = regexp.MustCompile(`^([0-9]+:)?[0-9][A-Za-z0-9.+~]*$`)

// check refuses options that would build a wrong package, naming the fix.
func (o Options) check() error {
	v := o.Version
	switch {
	case v == "":
		return errors.New("deb: Options.Version is empty; pass the Debian version, e.g. 1.2.3 or 1.2.3+4.gabc1234")
	case strings.Contains(v, "-"):
		return fmt.Errorf("deb: version %q has a '-', which Debian reads as a revision of a non-native package; "+
			"map it first (1.2.3-4-gabc1234 becomes 1.2.3+4.gabc1234, packaging/pkgversion)", v)
	case strings.HasPrefix(v, "v"):
		return fmt.Errorf("deb: version %q starts with 'v'; a Debian version starts with a digit: drop the v", v)
	case !debVersion.MatchString(v):
		return fmt.Errorf("deb: version %q is not a Debian version: want a digit first, then letters, digits and . + ~ only (no spaces)", v)
	case o.SourceDate.IsZero():
		return errors.New("deb: Options.SourceDate is zero; pass the commit time (SOURCE_DATE_EPOCH) so that two builds give the same bytes")
	case o.Out == "":
		return errors.New("deb: Options.Out is empty; name the .deb to write")
	}
	if fi, err := os.Stat(filepath.Dir(o.Out)); err != nil || !fi.IsDir() {
		return fmt.Errorf("deb: the folder of %s does not exist; create it first (mkdir -p %s)", o.Out, filepath.Dir(o.Out))
	}
	return checkBinary(o.Binary)
}

// checkBinary makes sure the file to ship is a linux/amd64 executable: a
// Windows exe or an arm64 build would install and never run.
func checkBinary(path string) error {
	if path == "" {
		return errors.New("deb: Options.Binary is empty; build berth-agent for linux/amd64 first (CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build ./cmd/agent)")
	}
	f, err := elf.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("deb: agent binary %s does not exist; build berth-agent for linux/amd64 first", path)
	}
	if err != nil {
		return fmt.Errorf("deb: agent binary %s is not a Linux executable (%v); build it with GOOS=linux GOARCH=amd64", path, err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 {
		return fmt.Errorf("deb: agent binary %s is built for %s, not amd64; build it with GOARCH=amd64", path, f.Machine)
	}
	return nil
}

// file is one entry of the package.
func file(src, dst string, mode os.FileMode) *files.Content {
	return &files.Content{Source: src, Destination: dst, Type: files.TypeFile,
		FileInfo: &files.ContentFileInfo{Mode: mode, Owner: "root", Group: "root"}}
}
